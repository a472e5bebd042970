package io.segstream.flink.windows;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;

/**
 * The window job's operators, wired for jobs/windows.py (a caller on py4j):
 * {@code WindowPipeline.build(eventRecords, specsJson, parallelism)}, then {@link #aggregates()},
 * {@link #alerts()} and {@link #lateEvents()} for the three Kafka sink tables.
 *
 * <p>Operator uids {@value #EXTRACT_UID} and {@value #AGGREGATE_UID} never change: savepoints map
 * state by uid.
 */
public final class WindowPipeline {
  public static final String EXTRACT_UID = "windows-extract";
  public static final String AGGREGATE_UID = "windows-aggregate";

  /** (k STRING, v STRING): the sink tables' rows. */
  public static final TypeInformation<Row> RECORD = Types.ROW_NAMED(new String[] {"k", "v"}, Types.STRING, Types.STRING);
  public static final OutputTag<Row> ALERTS = new OutputTag<>("alerts", RECORD);
  public static final OutputTag<Row> LATE = new OutputTag<>("late-events", RECORD);

  private final SingleOutputStreamOperator<Row> aggregated;

  private WindowPipeline(SingleOutputStreamOperator<Row> aggregated) {
    this.aggregated = aggregated;
  }

  /** @param records the events source's (record_key, record_value, record_partition, record_offset) rows
   *  @param specsJson the window definitions (segstream/windows.py's JSON) */
  public static WindowPipeline build(DataStream<Row> records, String specsJson) {
    SingleOutputStreamOperator<Row> aggregated = records
        .process(new ExtractWindowInputs(specsJson), Types.POJO(WindowInput.class))
        .name("windows-extract").uid(EXTRACT_UID)
        .keyBy(in -> in.key, Types.STRING)
        .process(new WindowAggregator(specsJson), RECORD)
        .name("windows-aggregate").uid(AGGREGATE_UID);
    return new WindowPipeline(aggregated);
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
