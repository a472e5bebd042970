package io.segstream.flink.windows;

import io.segstream.engine.Event;
import io.segstream.engine.Events;
import io.segstream.engine.InvalidEvent;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The event contract (the JVM engine's {@link Events#parse}, the main job's own parser) on each
 * Kafka record, then {@link WindowInputs}: one {@link WindowInput} per window definition the event
 * matches. The first operator of the standalone window job only (jobs/windows.py); in the main job
 * ParseEvents does the same on the event it has parsed. Invalid records and tombstones are counted
 * ({@code invalidRecords}) and skipped: dead-lettering them is the main job's work. Nothing a
 * record holds makes this function throw.
 */
public class ExtractWindowInputs extends ProcessFunction<Row, WindowInput> {
  private static final long serialVersionUID = 1L;

  private final WindowInputs inputs;
  private transient Counter invalid;

  public ExtractWindowInputs(String specsJson) {
    this.inputs = new WindowInputs(specsJson);
  }

  @Override
  public void open(OpenContext openContext) {
    invalid = getRuntimeContext().getMetricGroup().counter("invalidRecords");
  }

  @Override
  public void processElement(Row row, Context ctx, Collector<WindowInput> out) {
    Event event;
    try {
      byte[] raw = (byte[]) row.getField(1);
      if (raw == null) {
        if (invalid != null) invalid.inc();
        return;
      }
      event = Events.parse(raw);
    } catch (InvalidEvent | RuntimeException | StackOverflowError e) {
      if (invalid != null) invalid.inc();
      return;
    }
    inputs.extract(event, out::collect);
  }
}
