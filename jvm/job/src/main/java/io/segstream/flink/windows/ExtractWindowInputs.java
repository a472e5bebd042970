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
  private final long maxFutureSkewMs;
  private transient Counter invalid;

  public ExtractWindowInputs(String specsJson) {
    this(specsJson, Events.DEFAULT_MAX_FUTURE_SKEW_MS);
  }

  /** @param maxFutureSkewMs events.max_future_skew_ms: an event too far after its record's append
   *      time (a sixth column, as the main job's ParseEvents reads it) is skipped like an invalid one */
  public ExtractWindowInputs(String specsJson, long maxFutureSkewMs) {
    this.inputs = new WindowInputs(specsJson);
    this.maxFutureSkewMs = maxFutureSkewMs;
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
      Long appended = io.segstream.flink.ParseEvents.appendTime(row);
      if (appended != null) Events.checkFutureSkew(event, appended, maxFutureSkewMs);
    } catch (InvalidEvent | RuntimeException | StackOverflowError e) {
      if (invalid != null) invalid.inc();
      return;
    }
    Integer partition = row.getField(2) instanceof Number n ? n.intValue() : null;
    inputs.extractOrTick(event, partition, out::collect);
  }
}
