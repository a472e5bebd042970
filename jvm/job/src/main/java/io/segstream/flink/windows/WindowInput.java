package io.segstream.flink.windows;

import java.util.Objects;

/**
 * One valid event as one window definition sees it (a Flink POJO), from {@link WindowInputs} to
 * {@link WindowPreAggregate}; or, with {@link #partial}, the events of one window of one key
 * that a {@link WindowPreAggregate} subtask saw between two watermarks, on their way to
 * {@link WindowAggregator}. Keyed by {@link #key} = (definition, tenant, dimension value).
 */
public class WindowInput {
  /** {@link #keyOf}(spec index, tenant, dimension value). */
  public String key;
  public int spec;
  public String tenant;
  /** The dimension value (null: the definition has no dimension). */
  public String value;
  public String userId;
  public String eventId;
  public long ts;
  /** The summed field's value, if it is a number. */
  public boolean hasSum;
  public boolean sumIsDouble;
  public long sumLong;
  public double sumDouble;

  /** A pre-aggregate of the window starting at {@link #start}: {@link #acc} holds its
   * {@link Accumulator} bytes, and the events' ids, users and timestamps are listed for the late
   * records, should the window have been emitted without them (the single-event fields are unset). */
  public boolean partial;
  public long start;
  public byte[] acc;
  public String[] eventIds;
  public String[] userIds;
  public long[] stamps;
  /** The Kafka partition of the event, for the per-partition watermarks of the window branch
   * (io.segstream.flink.EventTime); null for partials and tests. */
  public Integer partition;

  public WindowInput() {}

  /** {@link #spec} of a tick: a valid event no definition counts, carrying only its ts and
   * partition so that the window branch's watermark follows every valid event, as the
   * evaluator's does. {@link WindowPreAggregate} drops it after the watermark assigner. */
  public static final int TICK = -1;

  public static WindowInput tick(long ts, Integer partition) {
    WindowInput t = new WindowInput();
    t.spec = TICK;
    t.ts = ts;
    t.partition = partition;
    return t;
  }

  /** "spec:tenantLength:tenant" + value: unambiguous whatever characters tenant and value hold
   * (the contract allows any string, NUL included). */
  public static String keyOf(int spec, String tenant, String value) {
    return spec + ":" + tenant.length() + ":" + tenant + (value == null ? "" : value);
  }

  /** {@link #keyOf}'s parts: spec index, tenant, value ("" when the definition has no dimension). */
  public static Object[] parseKey(String key) {
    int a = key.indexOf(':');
    int b = key.indexOf(':', a + 1);
    int length = Integer.parseInt(key.substring(a + 1, b));
    return new Object[] {Integer.parseInt(key.substring(0, a)), key.substring(b + 1, b + 1 + length),
        key.substring(b + 1 + length)};
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof WindowInput w && Objects.equals(key, w.key) && Objects.equals(eventId, w.eventId)
        && ts == w.ts && hasSum == w.hasSum && sumLong == w.sumLong && sumDouble == w.sumDouble
        && partial == w.partial && start == w.start && java.util.Arrays.equals(acc, w.acc)
        && java.util.Arrays.equals(eventIds, w.eventIds);
  }

  @Override
  public int hashCode() {
    return Objects.hash(key, eventId, ts);
  }

  @Override
  public String toString() {
    return "WindowInput{" + key + " " + eventId + " @" + ts + "}";
  }
}
