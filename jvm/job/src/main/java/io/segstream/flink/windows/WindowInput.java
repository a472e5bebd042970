package io.segstream.flink.windows;

import java.util.Objects;

/**
 * One valid event as one window definition sees it (a Flink POJO), from {@link ExtractWindowInputs}
 * to {@link WindowAggregator}, keyed by {@link #key} = (definition, tenant, dimension value).
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

  public WindowInput() {}

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
        && ts == w.ts && hasSum == w.hasSum && sumLong == w.sumLong && sumDouble == w.sumDouble;
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
