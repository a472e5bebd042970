package io.segstream.flink.windows;

import io.segstream.engine.Event;
import io.segstream.engine.Events;
import io.segstream.engine.InvalidEvent;
import java.math.BigInteger;
import java.util.List;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The event contract (the JVM engine's {@link Events#parse}, the main job's own parser) on each
 * Kafka record, then one {@link WindowInput} per window definition the event matches. Invalid
 * records and tombstones are counted ({@code invalidRecords}) and skipped: dead-lettering them is
 * the main job's work. Nothing a record holds makes this function throw.
 */
public class ExtractWindowInputs extends ProcessFunction<Row, WindowInput> {
  private static final long serialVersionUID = 1L;

  private final String specsJson;
  private transient List<WindowSpec> specs;
  private transient Counter invalid;

  public ExtractWindowInputs(String specsJson) {
    this.specsJson = specsJson;
    WindowSpec.parseAll(specsJson); // fail on the client, not in the task
  }

  @Override
  public void open(OpenContext openContext) {
    specs = WindowSpec.parseAll(specsJson);
    invalid = getRuntimeContext().getMetricGroup().counter("invalidRecords");
  }

  List<WindowSpec> specs() {
    if (specs == null) specs = WindowSpec.parseAll(specsJson);
    return specs;
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
    List<WindowSpec> all = specs();
    for (int i = 0; i < all.size(); i++) {
      WindowSpec spec = all.get(i);
      if (!spec.matches(event.tenant(), event.name())) continue;
      WindowInput in = new WindowInput();
      in.spec = i;
      in.tenant = event.tenant();
      in.value = spec.dimension == null ? null : spec.dimensionValue(event.values().get(spec.dimension));
      in.key = WindowInput.keyOf(i, in.tenant, in.value);
      in.userId = event.userId();
      in.eventId = event.eventId();
      in.ts = event.ts();
      if (spec.sumField != null) {
        Object v = event.values().get(spec.sumField);
        if (v instanceof Long || v instanceof Integer) {
          in.hasSum = true;
          in.sumLong = ((Number) v).longValue();
        } else if (v instanceof BigInteger b && b.bitLength() < 64) {
          in.hasSum = true;
          in.sumLong = b.longValue();
        } else if (v instanceof Double d && Double.isFinite(d)) {
          in.hasSum = true;
          in.sumIsDouble = true;
          in.sumDouble = d;
        }
      }
      out.collect(in);
    }
  }
}
