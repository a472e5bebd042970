package io.segstream.flink.windows;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * One window definition of conf/windows.yaml, as segstream/windows.py normalises it to JSON
 * (durations in ms): which events it counts (event name, optional tenants), the window (size,
 * slide = size for tumbling), the optional {@code values} dimension with its whitelist, the summed
 * field, and the optional surge rule.
 */
public final class WindowSpec implements Serializable {
  private static final long serialVersionUID = 1L;

  public final String id;
  public final String event;
  /** null: every tenant. */
  public final Set<String> tenants;
  public final long sizeMs;
  public final long slideMs;
  /** The {@code values} field that splits the counts (e.g. "path"), or null. */
  public final String dimension;
  /** The values counted apart; every other value (missing, not a string, not listed) is {@link #other}. */
  public final Set<String> allow;
  public final String other;
  /** The numeric {@code values} field summed, or null. */
  public final String sumField;
  public final boolean distinctUsers;
  /** Surge rule (null: none). */
  public final Surge surge;

  /** A window whose count is at least {@code minCount} and above {@code factor} times the mean
   * count of the {@code baselineWindows} windows before it (same key; empty windows count 0). */
  public record Surge(double factor, int baselineWindows, long minCount) implements Serializable {}

  public WindowSpec(String id, String event, Set<String> tenants, long sizeMs, long slideMs, String dimension,
      Set<String> allow, String other, String sumField, boolean distinctUsers, Surge surge) {
    if (sizeMs <= 0 || slideMs <= 0 || slideMs > sizeMs || sizeMs % slideMs != 0) {
      throw new IllegalArgumentException(id + ": the size must be a positive multiple of the slide");
    }
    this.id = id;
    this.event = event;
    this.tenants = tenants;
    this.sizeMs = sizeMs;
    this.slideMs = slideMs;
    this.dimension = dimension;
    this.allow = allow;
    this.other = other;
    this.sumField = sumField;
    this.distinctUsers = distinctUsers;
    this.surge = surge;
  }

  /** The dimension value an event's raw value maps to (null when there is no dimension). */
  public String dimensionValue(Object raw) {
    if (dimension == null) return null;
    return raw instanceof String s && allow.contains(s) ? s : other;
  }

  public boolean matches(String tenant, String name) {
    return event.equals(name) && (tenants == null || tenants.contains(tenant));
  }

  /** The start of the last window holding ts (windows are aligned to the epoch). */
  public long lastStart(long ts) {
    return Math.floorDiv(ts, slideMs) * slideMs;
  }

  /** The definitions in segstream/windows.py's JSON form (a list of objects). */
  public static List<WindowSpec> parseAll(String json) {
    try {
      JsonNode root = new ObjectMapper().readTree(json);
      List<WindowSpec> specs = new ArrayList<>();
      for (JsonNode n : root) {
        Set<String> tenants = null;
        if (n.hasNonNull("tenants")) {
          tenants = new HashSet<>();
          for (JsonNode t : n.get("tenants")) tenants.add(t.asText());
        }
        String dimension = null;
        Set<String> allow = new HashSet<>();
        String other = null;
        if (n.hasNonNull("values")) {
          JsonNode v = n.get("values");
          dimension = v.get("field").asText();
          for (JsonNode a : v.get("allow")) allow.add(a.asText());
          other = v.get("other").asText();
        }
        Surge surge = null;
        if (n.hasNonNull("surge")) {
          JsonNode s = n.get("surge");
          surge = new Surge(s.get("factor").asDouble(), s.get("baseline_windows").asInt(), s.get("min_count").asLong());
          if (surge.baselineWindows() < 1) throw new IllegalArgumentException("baseline_windows must be >= 1");
        }
        specs.add(new WindowSpec(n.get("id").asText(), n.get("event").asText(), tenants, n.get("size_ms").asLong(),
            n.get("slide_ms").asLong(), dimension, allow, other,
            n.hasNonNull("sum") ? n.get("sum").asText() : null,
            !n.has("distinct_users") || n.get("distinct_users").asBoolean(), surge));
      }
      return specs;
    } catch (java.io.IOException e) {
      throw new IllegalArgumentException("window definitions: " + e.getMessage(), e);
    }
  }
}
