package io.segstream.engine;

import java.util.Map;

/** One valid event of the contract (docs/events.md; operators/events.py). {@code values} holds
 * Long, Double, String, Boolean, null, List and Map values as decoded from JSON. */
public record Event(String eventId, String tenant, String userId, long ts, String name, Map<String, Object> values) {}
