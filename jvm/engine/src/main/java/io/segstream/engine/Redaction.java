package io.segstream.engine;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.Serializable;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The per-tenant PII policy (operators/pii.py, its twin: the same paths, hashes and dead-letter
 * fields; docs/security.md, "Item 6"): each {@code values.<name>} (or {@code values.*}, every value
 * not named) is dropped, hashed or kept, right after the event contract and before anything else
 * sees the event. A hash is the lowercase hex HMAC-SHA256 of the value's JSON text as {@link Json}
 * writes it ({@code "a@b.c"} with its quotes, {@code 42}, {@code true}, {@code null}).
 *
 * <p>Built from the JSON of {@code PiiConfig.policy().to_json()}: {@code {"key_hex", "default":
 * {path: action}, "tenants": {tenant: {path: action}}}}. Not thread-safe (one per operator
 * instance: it keeps one {@link Mac}).
 */
public final class Redaction implements Serializable {
  private static final long serialVersionUID = 1L;
  private static final ObjectMapper MAPPER = new ObjectMapper();
  private static final String ALL_VALUES = "values.*";
  private static final BigInteger LONG_MIN = BigInteger.valueOf(Long.MIN_VALUE);
  private static final BigInteger LONG_MAX = BigInteger.valueOf(Long.MAX_VALUE);
  /** The lenient read of a dead letter: the contract's caps, as msgspec's plain decode refuses them. */
  private static final JsonFactory LENIENT = JsonFactory.builder()
      .streamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(Events.MAX_DEPTH)
          .maxNumberLength(Events.MAX_INT_CHARS).maxStringLength(Events.MAX_RECORD_BYTES).build())
      .build();

  private final byte[] key;
  private final Fields defaults;
  private final Map<String, Fields> tenants;
  private transient Mac mac;

  private Redaction(byte[] key, Fields defaults, Map<String, Fields> tenants) {
    this.key = key;
    this.defaults = defaults;
    this.tenants = tenants;
  }

  /** The policy from its JSON; null for null or empty text (no policy). */
  public static Redaction fromJson(String json) {
    if (json == null || json.isBlank()) return null;
    try {
      JsonNode node = MAPPER.readTree(json);
      Map<String, Fields> tenants = new HashMap<>();
      for (Iterator<Map.Entry<String, JsonNode>> it = node.path("tenants").fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        tenants.put(e.getKey(), Fields.of(e.getValue()));
      }
      return new Redaction(HexFormat.of().parseHex(node.get("key_hex").asText()), Fields.of(node.path("default")),
          tenants);
    } catch (IOException | RuntimeException e) {
      throw new IllegalArgumentException("invalid PII policy: " + e.getMessage(), e);
    }
  }

  /** Whether any policy drops or hashes anything. */
  public boolean active() {
    return defaults.active || tenants.values().stream().anyMatch(f -> f.active);
  }

  private Fields forTenant(String tenant) {
    return tenant == null ? defaults : tenants.getOrDefault(tenant, defaults);
  }

  /** A redacted event and its JSON (the record value the rest of the job reads). */
  public record Redacted(Event event, byte[] json) {}

  /**
   * The event as the engine must see it: null when its tenant's policy redacts nothing (the
   * event and its original bytes go on as they are), else the event with its values dropped or
   * hashed, and that event's JSON (operators/events.py encode_event's bytes).
   *
   * @throws InvalidEvent when the redacted event's JSON is over the contract's 64 KiB (hashes can
   *     make values longer), with Python's reason
   */
  public Redacted redact(Event event) throws InvalidEvent {
    Fields fields = forTenant(event.tenant());
    if (!fields.active) return null;
    Event redacted = new Event(event.eventId(), event.tenant(), event.userId(), event.ts(), event.name(),
        values(fields, event.values()));
    byte[] json = Json.render(redacted.toJson()).getBytes(StandardCharsets.UTF_8);
    if (json.length > Events.MAX_RECORD_BYTES) {
      throw new InvalidEvent("record is " + json.length + " bytes after redaction, over the "
          + Events.MAX_RECORD_BYTES + " byte limit");
    }
    return new Redacted(redacted, json);
  }

  private Map<String, Object> values(Fields fields, Map<String, Object> values) {
    Map<String, Object> out = new LinkedHashMap<>();
    for (Map.Entry<String, Object> e : values.entrySet()) {
      String action = fields.action(e.getKey());
      if (action.equals("keep")) {
        out.put(e.getKey(), e.getValue());
      } else if (action.equals("hash")) {
        out.put(e.getKey(), hash(Json.render(e.getValue()).getBytes(StandardCharsets.UTF_8)));
      }
    }
    return out;
  }

  /** Lowercase hex HMAC-SHA256 of {@code data} under the policy's key. */
  public String hash(byte[] data) {
    try {
      if (mac == null) {
        mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(key, "HmacSHA256"));
      }
      return HexFormat.of().formatHex(mac.doFinal(data));
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
  }

  /**
   * What a dead letter keeps of a refused record (operators/pii.py {@code dead_letter_fields}):
   * null when the policy of its tenant (read leniently; unreadable: the default policy) keeps
   * everything, so the dead letter keeps the original; else {@code original_length},
   * {@code original_hmac} and, when the record is a JSON object, {@code redacted}: its string
   * event_id/tenant/user_id/name, its 64-bit integer ts and its scalar values with the policy applied.
   */
  public Map<String, Object> deadLetterFields(byte[] raw) {
    if (raw == null) raw = new byte[0];
    Map<String, Object> parsed = lenient(raw);
    Fields fields = forTenant(tenantOf(parsed));
    if (!fields.active) return null;
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("original_length", (long) raw.length);
    out.put("original_hmac", hash(raw));
    if (parsed != null) {
      Map<String, Object> readable = new LinkedHashMap<>();
      for (String k : new String[] {"event_id", "tenant", "user_id", "name"}) {
        if (parsed.get(k) instanceof String s) readable.put(k, s);
      }
      if (parsed.get("ts") instanceof Long ts) readable.put("ts", ts);
      if (parsed.get("values") instanceof Map<?, ?> v) {
        @SuppressWarnings("unchecked")
        Map<String, Object> scalars = (Map<String, Object>) v;
        readable.put("values", values(fields, scalars));
      }
      out.put("redacted", readable);
    }
    return out;
  }

  private static String tenantOf(Map<String, Object> parsed) {
    if (parsed == null) return null;
    if (!parsed.containsKey("tenant")) return Events.DEFAULT_TENANT;
    return parsed.get("tenant") instanceof String s && !s.isEmpty() ? s : null;
  }

  /**
   * The record's top-level fields as msgspec's plain {@code json.decode} reads them (values: only
   * the scalar entries; other fields: scalars, or a marker for objects and arrays), or null when
   * msgspec would refuse it: not UTF-8, a BOM, malformed, trailing data, nesting over
   * {@link Events#MAX_DEPTH}, a number out of double range, an over-long integer, a lone surrogate.
   */
  static Map<String, Object> lenient(byte[] raw) {
    if (raw.length == 0 || raw.length > Events.MAX_RECORD_BYTES) return null;
    if (raw.length >= 3 && (raw[0] & 0xff) == 0xEF && (raw[1] & 0xff) == 0xBB && (raw[2] & 0xff) == 0xBF) return null;
    try {
      StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(raw));
    } catch (java.nio.charset.CharacterCodingException e) {
      return null;
    }
    try (JsonParser p = LENIENT.createParser(raw)) {
      JsonToken t = p.nextToken();
      if (t != JsonToken.START_OBJECT) return null;  // no fields to read: as unreadable
      Map<String, Object> top = new HashMap<>();
      while ((t = p.nextToken()) != JsonToken.END_OBJECT) {
        String name = p.currentName();
        if (!wellFormed(name)) return null;
        t = p.nextToken();
        if (name.equals("values") && t == JsonToken.START_OBJECT) {
          Map<String, Object> values = new LinkedHashMap<>();
          while ((t = p.nextToken()) != JsonToken.END_OBJECT) {
            String k = p.currentName();
            if (!wellFormed(k)) return null;
            t = p.nextToken();
            Object v = scalar(p, t);
            if (v == NOT_SCALAR && !walk(p, t)) return null;
            if (v == NOT_SCALAR || v == SKIPPED) {
              values.remove(k);  // left out; a later duplicate replaces an earlier one, as in a Python dict
            } else if (v == UNREADABLE) {
              return null;
            } else {
              values.put(k, v);
            }
          }
          top.put(name, values);
        } else {
          Object v = scalar(p, t);
          if (v == UNREADABLE) return null;
          if (v == NOT_SCALAR) {
            if (!walk(p, t)) return null;
          }
          top.put(name, v);
        }
      }
      return p.nextToken() == null ? top : null;
    } catch (IOException | RuntimeException | StackOverflowError e) {
      return null;
    }
  }

  private static final Object NOT_SCALAR = new Object();
  private static final Object UNREADABLE = new Object();
  private static final Object SKIPPED = new Object();

  /** A scalar's value (out-of-long integers: {@link #SKIPPED}, as both engines leave them out). */
  private static Object scalar(JsonParser p, JsonToken t) throws IOException {
    return switch (t) {
      case VALUE_STRING -> wellFormed(p.getText()) ? p.getText() : UNREADABLE;
      case VALUE_NUMBER_INT -> {
        BigInteger b = p.getBigIntegerValue();
        yield b.compareTo(LONG_MIN) >= 0 && b.compareTo(LONG_MAX) <= 0 ? (Object) b.longValue() : SKIPPED;
      }
      case VALUE_NUMBER_FLOAT -> {
        double d = p.getDoubleValue();
        yield Double.isFinite(d) ? (Object) d : UNREADABLE;
      }
      case VALUE_TRUE -> Boolean.TRUE;
      case VALUE_FALSE -> Boolean.FALSE;
      case VALUE_NULL -> null;
      default -> NOT_SCALAR;
    };
  }

  /** Read a value to its end, checking its scalars as {@link #scalar} does; false: unreadable. */
  private static boolean walk(JsonParser p, JsonToken t) throws IOException {
    int depth = 0;
    while (true) {
      if (t == null) return false;
      if (t == JsonToken.START_OBJECT || t == JsonToken.START_ARRAY) {
        depth++;
      } else if (t == JsonToken.END_OBJECT || t == JsonToken.END_ARRAY) {
        depth--;
      } else if (t == JsonToken.FIELD_NAME) {
        if (!wellFormed(p.currentName())) return false;
      } else if (scalar(p, t) == UNREADABLE) {
        return false;
      }
      if (depth == 0) return true;
      t = p.nextToken();
    }
  }

  /** No lone surrogate (msgspec refuses {@code "\ud800"}; Jackson decodes it). */
  private static boolean wellFormed(String s) {
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
        i++;
      } else if (Character.isSurrogate(c)) {
        return false;
      }
    }
    return true;
  }

  /** One tenant's actions: named values, then {@code values.*} for the rest. */
  private static final class Fields implements Serializable {
    private static final long serialVersionUID = 1L;
    final Map<String, String> named = new HashMap<>();
    String rest = "keep";
    boolean active;

    static Fields of(JsonNode node) {
      Fields f = new Fields();
      for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        String action = e.getValue().asText();
        if (!action.equals("drop") && !action.equals("hash") && !action.equals("keep")) {
          throw new IllegalArgumentException("action " + action + " for " + e.getKey());
        }
        if (!e.getKey().startsWith("values.")) throw new IllegalArgumentException("path " + e.getKey());
        if (e.getKey().equals(ALL_VALUES)) f.rest = action;
        else f.named.put(e.getKey().substring("values.".length()), action);
        f.active |= !action.equals("keep");
      }
      return f;
    }

    String action(String name) {
      return named.getOrDefault(name, rest);
    }
  }
}
