package io.segstream.flink.bench;

import io.segstream.flink.Outputs;
import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The framework floor (bench/floor_job.py): the job's pipeline shape with a trivial keyed function
 * in place of the engine. Kafka source rows ({@link Outputs#RECORD_TYPE}) → keyBy(the record key,
 * i.e. the producer's user_id, as a String) → one RocksDB {@code ValueState<Long>} counter per key
 * → one (user_id, the input record's value) row per record for an evaluations-like Kafka sink
 * table ({@link Outputs#EVALUATION_TYPE}). No JSON is parsed or written: what is left is the cost
 * of Flink, Kafka and RocksDB per record, the floor any engine in this pipeline sits on. Echoing
 * the value (it carries the event_id) lets `bench/throughput.py latency --script
 * bench/floor_job.py` measure the framework's own latency.
 */
public final class FloorPipeline {
  private FloorPipeline() {}

  public static DataStream<Row> build(DataStream<Row> eventRecords) {
    return eventRecords
        .keyBy(new RecordUser(), Types.STRING)
        .process(new CountPerUser(), Outputs.EVALUATION_TYPE)
        .name("floor-count").uid("floor-count");
  }

  /** The Kafka record key (user_id) as a String; "" for a record without one. */
  public static final class RecordUser implements KeySelector<Row, String> {
    private static final long serialVersionUID = 1L;

    @Override
    public String getKey(Row row) {
      byte[] key = (byte[]) row.getField(0);
      return key == null ? "" : new String(key, StandardCharsets.UTF_8);
    }
  }

  /** One counter per user in keyed state; emits (user_id, the record's value). */
  public static final class CountPerUser extends KeyedProcessFunction<String, Row, Row> {
    private static final long serialVersionUID = 1L;
    private transient ValueState<Long> count;

    @Override
    public void open(OpenContext openContext) {
      count = getRuntimeContext().getState(new ValueStateDescriptor<>("count", Types.LONG));
    }

    @Override
    public void processElement(Row row, Context ctx, Collector<Row> out) throws Exception {
      Long n = count.value();
      long next = n == null ? 1 : n + 1;
      count.update(next);
      byte[] value = (byte[]) row.getField(1);
      out.collect(Row.of(ctx.getCurrentKey(), value == null ? Long.toString(next) : new String(value,
          StandardCharsets.UTF_8)));
    }
  }
}
