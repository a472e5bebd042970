package io.segstream.flink.windows;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;

/**
 * The window operators, wired two ways (docs/windows.md):
 * <ul>
 *   <li>in the main job (io.segstream.flink.Pipeline.attachWindows): parse-validate
 *       hands its {@link #INPUTS} side output to {@link #aggregate};</li>
 *   <li>as the standalone window job (jobs/windows.py, over py4j): {@link #build} reads and parses
 *       the events topic once more in {@value #EXTRACT_UID}, then {@link #aggregate}.</li>
 * </ul>
 * Then {@link #aggregates()}, {@link #alerts()} and {@link #lateEvents()} for the three Kafka sink
 * tables.
 *
 * <p>Operator uids {@value #EXTRACT_UID}, {@value #PREAGGREGATE_UID} (both stateless) and
 * {@value #AGGREGATE_UID} (all the window state) never change: savepoints map state by uid. The aggregate operator has the same uid in
 * both jobs, but a savepoint holds one job's operators: the window state of a standalone job's
 * savepoint does not move into the main job (docs/windows.md, "Operations").
 */
public final class WindowPipeline {
  public static final String EXTRACT_UID = "windows-extract";
  public static final String AGGREGATE_UID = "windows-aggregate";
  /** Stateless (it holds nothing across a barrier); a uid all the same, as every operator has. */
  public static final String PREAGGREGATE_UID = "windows-preaggregate";
  /** The watermark assigner of the window inputs (io.segstream.flink.EventTime; stateless). */
  public static final String EVENT_TIME_UID = "windows-event-time";

  /** (k STRING, v STRING): the sink tables' rows. */
  public static final TypeInformation<Row> RECORD = Types.ROW_NAMED(new String[] {"k", "v"}, Types.STRING, Types.STRING);
  public static final TypeInformation<WindowInput> INPUT_TYPE = Types.POJO(WindowInput.class);
  /** The main job's parse-validate side output: one input per (valid event, definition counting it). */
  public static final OutputTag<WindowInput> INPUTS = new OutputTag<>("window-inputs", INPUT_TYPE);
  public static final OutputTag<Row> ALERTS = new OutputTag<>("alerts", RECORD);
  public static final OutputTag<Row> LATE = new OutputTag<>("late-events", RECORD);

  private final SingleOutputStreamOperator<Row> aggregated;

  private WindowPipeline(SingleOutputStreamOperator<Row> aggregated) {
    this.aggregated = aggregated;
  }

  /** The standalone window job.
   *  @param records the events source's (record_key, record_value, record_partition, record_offset) rows
   *  @param specsJson the window definitions (segstream/windows.py's JSON) */
  public static WindowPipeline build(DataStream<Row> records, String specsJson) {
    return build(records, specsJson, "");
  }

  /** The standalone window job, with event time as the main job's (io.segstream.flink.EventTime).
   *  @param records the events source's rows, with the append time as their sixth column
   *      (io.segstream.flink.Outputs.EVENT_RECORD_TYPE)
   *  @param eventTimeJson as io.segstream.flink.Pipeline#build's */
  public static WindowPipeline build(DataStream<Row> records, String specsJson, String eventTimeJson) {
    io.segstream.flink.EventTimeOptions time = io.segstream.flink.EventTimeOptions.fromJson(eventTimeJson);
    return aggregate(records
        .process(new ExtractWindowInputs(specsJson, time.maxFutureSkewMs()), INPUT_TYPE)
        .name("windows-extract").uid(EXTRACT_UID)
        .assignTimestampsAndWatermarks(io.segstream.flink.EventTime.ofWindowInputs(time.outOfOrdernessMs(),
            time.idlenessMs()))
        .name("windows-event-time").uid(EVENT_TIME_UID), specsJson);
  }

  /** The windows of {@code inputs}: pre-aggregated per subtask ({@link WindowPreAggregate},
   * chained to the operator that makes the inputs), then keyed by (definition, tenant, dimension
   * value), in event time. */
  public static WindowPipeline aggregate(DataStream<WindowInput> inputs, String specsJson) {
    return new WindowPipeline(inputs
        .transform("windows-preaggregate", INPUT_TYPE, new WindowPreAggregate(specsJson)).uid(PREAGGREGATE_UID)
        .keyBy(in -> in.key, Types.STRING)
        .process(new WindowAggregator(specsJson), RECORD)
        .name("windows-aggregate").uid(AGGREGATE_UID));
  }

  public DataStream<Row> aggregates() {
    return aggregated;
  }

  public DataStream<Row> alerts() {
    return aggregated.getSideOutput(ALERTS);
  }

  public DataStream<Row> lateEvents() {
    return aggregated.getSideOutput(LATE);
  }
}
