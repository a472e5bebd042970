package io.segstream.engine;

import java.util.LinkedHashMap;
import java.util.Map;

/** One valid event of the contract (docs/events.md; operators/events.py). {@code values} holds
 * Long, Double, String, Boolean, null, List and Map values as decoded from JSON. */
public record Event(String eventId, String tenant, String userId, long ts, String name, Map<String, Object> values) {
  /** The event as operators/events.py encode_event writes it (msgspec, the Event struct's field
   * order), for {@link Json#render}. */
  public Map<String, Object> toJson() {
    Map<String, Object> e = new LinkedHashMap<>();
    e.put("event_id", eventId);
    e.put("user_id", userId);
    e.put("ts", ts);
    e.put("name", name);
    e.put("values", values);
    e.put("tenant", tenant);
    return e;
  }
}
