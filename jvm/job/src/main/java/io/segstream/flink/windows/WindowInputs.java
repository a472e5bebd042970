package io.segstream.flink.windows;

import io.segstream.engine.Event;
import java.io.Serializable;
import java.math.BigInteger;
import java.util.List;
import java.util.function.Consumer;

/**
 * The window definitions' view of one valid event: one {@link WindowInput} per definition it
 * matches. Shared by the main job (io.segstream.flink.ParseEvents, on the event it has just
 * parsed: no second parse) and the standalone window job ({@link ExtractWindowInputs}).
 */
public final class WindowInputs implements Serializable {
  private static final long serialVersionUID = 1L;

  private final String specsJson;
  private transient List<WindowSpec> specs;

  /** @param specsJson the window definitions (segstream/windows.py's JSON); checked here, so that
   *  a bad definition fails on the client that builds the job, not in a task */
  public WindowInputs(String specsJson) {
    this.specsJson = specsJson;
    this.specs = WindowSpec.parseAll(specsJson);
  }

  private List<WindowSpec> specs() {
    if (specs == null) specs = WindowSpec.parseAll(specsJson); // after deserialization in the task
    return specs;
  }

  /** As {@link #extract}, each input stamped with the event's Kafka {@code partition}; when no
   * definition counts the event, a {@link WindowInput#tick} instead (the branch's watermark
   * follows every valid event). */
  public void extractOrTick(Event event, Integer partition, Consumer<WindowInput> out) {
    int n = extract(event, in -> {
      in.partition = partition;
      out.accept(in);
    });
    if (n == 0) out.accept(WindowInput.tick(event.ts(), partition));
  }

  /** Hand {@code out} one input per definition that counts {@code event}; how many. */
  public int extract(Event event, Consumer<WindowInput> out) {
    int n = 0;
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
      out.accept(in);
      n++;
    }
    return n;
  }
}
