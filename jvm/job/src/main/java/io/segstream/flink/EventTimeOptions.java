package io.segstream.flink;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.segstream.engine.Events;
import java.io.IOException;
import java.io.Serializable;

/**
 * How the job judges and tracks event time, from jobs/user_stats.py's JSON
 * {@code {"max_future_skew_ms", "out_of_orderness_ms", "idleness_ms"}} (events.max_future_skew_ms,
 * flink.watermark_out_of_orderness_ms, flink.watermark_idleness_ms; missing keys take the defaults
 * of segstream/config.py).
 */
public record EventTimeOptions(long maxFutureSkewMs, long outOfOrdernessMs, long idlenessMs) implements Serializable {
  public static final EventTimeOptions DEFAULTS = new EventTimeOptions(Events.DEFAULT_MAX_FUTURE_SKEW_MS, 5_000, 10_000);

  /** @param json the options, or null / "" for {@link #DEFAULTS}
   *  @throws IllegalArgumentException on JSON that is not an object of non-negative integers */
  public static EventTimeOptions fromJson(String json) {
    if (json == null || json.isBlank()) return DEFAULTS;
    try {
      JsonNode node = new ObjectMapper().readTree(json);
      if (!node.isObject()) throw new IllegalArgumentException("event time options must be a JSON object: " + json);
      return new EventTimeOptions(get(node, "max_future_skew_ms", DEFAULTS.maxFutureSkewMs),
          get(node, "out_of_orderness_ms", DEFAULTS.outOfOrdernessMs), get(node, "idleness_ms", DEFAULTS.idlenessMs));
    } catch (IOException e) {
      throw new IllegalArgumentException("event time options are not JSON: " + json, e);
    }
  }

  private static long get(JsonNode node, String key, long fallback) {
    JsonNode v = node.get(key);
    if (v == null || v.isNull()) return fallback;
    if (!v.canConvertToLong() || !v.isIntegralNumber() || v.asLong() < 0) {
      throw new IllegalArgumentException("event time option " + key + " must be a non-negative integer: " + v);
    }
    return v.asLong();
  }
}
