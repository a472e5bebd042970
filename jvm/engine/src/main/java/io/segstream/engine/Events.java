package io.segstream.engine;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParseException;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.exc.InputCoercionException;
import com.fasterxml.jackson.core.exc.StreamConstraintsException;
import com.fasterxml.jackson.core.io.JsonEOFException;
import java.io.IOException;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The event contract (docs/events.md): decoding and validation of one Kafka record value, as
 * operators/events.py {@code parse_record} does it with msgspec. Reasons are Python's where the
 * cause is the same ({@code schema: Expected `int`, got `str` - at `$.ts`}, {@code user_id is
 * empty}, ...): segstream/hostile.py's corpus checks that through the job
 * (tests/integration/test_hostile_input.py). Invalid UTF-8 anywhere and nesting deeper than
 * {@link #MAX_DEPTH} are refused by both (Python checks them itself: msgspec alone would accept
 * the one in ignored fields and raise RecursionError on the other).
 *
 * <p>Values: JSON integers in the signed 64-bit range are {@code Long}, larger ones
 * {@code BigInteger} (kept, as msgspec keeps Python ints; stats skip them); other numbers
 * {@code Double} (a number out of double range, such as {@code 1e400}, is refused like msgspec
 * does); strings, booleans, null. {@link #parse} never throws anything but {@link InvalidEvent}.
 */
public final class Events {
  private Events() {}

  public static final int MAX_RECORD_BYTES = 64 * 1024;
  public static final int MAX_USER_ID_BYTES = 256;
  /** The longest event_id, tenant and name (UTF-8 bytes): with user_id's cap, a Bigtable row key
   * (docs/bigtable.md) stays far below Bigtable's 4 KiB limit even with every byte escaped. */
  public static final int MAX_FIELD_BYTES = 256;
  /** The longest integer (characters, sign included) accepted where the contract decodes one
   * ({@code ts}, {@code values}): msgspec refuses longer ones (Python's int_max_str_digits). */
  public static final int MAX_INT_CHARS = 4300;
  /** The latest event time accepted (= operators/events.py MAX_TS): 9999-12-31T23:59:59.999Z. */
  public static final long MAX_TS = 253_402_300_799_999L;
  private static final java.math.BigInteger MAX_TS_BIG = java.math.BigInteger.valueOf(MAX_TS);
  public static final String DEFAULT_TENANT = "default";
  /** Deepest nesting accepted (inside ignored fields: the contract itself nests two levels). */
  public static final int MAX_DEPTH = 256;

  private static final JsonFactory FACTORY = JsonFactory.builder()
      .streamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(MAX_DEPTH)
          .maxNumberLength(MAX_RECORD_BYTES).maxStringLength(MAX_RECORD_BYTES).build())
      .build();

  static {
    FACTORY.disable(JsonParser.Feature.AUTO_CLOSE_SOURCE);
  }

  private static final String SCALAR = "`bool | int | float | str | null`";

  /** The default of events.max_future_skew_ms (= operators/event_time.py DEFAULT_MAX_FUTURE_SKEW_MS). */
  public static final long DEFAULT_MAX_FUTURE_SKEW_MS = 60_000L;

  /**
   * Event time you can trust (operators/event_time.py, the reference): an event whose {@code ts} is
   * more than {@code maxFutureSkewMs} after its record's {@code appendTime} (the broker's append
   * time, epoch ms) is refused, with future_skew_reason's words, before it may move a watermark.
   */
  public static void checkFutureSkew(Event event, long appendTime, long maxFutureSkewMs) throws InvalidEvent {
    long ahead = event.ts() - appendTime; // both within [0, MAX_TS] or a sane clock: no overflow
    if (ahead <= maxFutureSkewMs) return;
    throw new InvalidEvent("ts is " + ahead + " ms after the record's append time " + appendTime + ", over the "
        + maxFutureSkewMs + " ms allowed (events.max_future_skew_ms)");
  }

  public static Event parse(byte[] raw) throws InvalidEvent {
    try {
      return parseUnchecked(raw);
    } catch (InvalidEvent e) {
      throw e;
    } catch (RuntimeException | StackOverflowError e) {
      // Not expected; still a dead letter rather than a failed job.
      throw new InvalidEvent("not UTF-8 JSON: " + e.getClass().getSimpleName());
    }
  }

  private static Event parseUnchecked(byte[] raw) throws InvalidEvent {
    if (raw == null) raw = new byte[0];
    if (raw.length > MAX_RECORD_BYTES) {
      throw new InvalidEvent("record is " + raw.length + " bytes, over the " + MAX_RECORD_BYTES + " byte limit");
    }
    checkUtf8(raw);
    if (raw.length >= 3 && (raw[0] & 0xff) == 0xEF && (raw[1] & 0xff) == 0xBB && (raw[2] & 0xff) == 0xBF) {
      throw malformed("invalid character", 0);  // msgspec refuses a BOM; Jackson would skip it
    }
    Fields f = new Fields();
    try (JsonParser p = FACTORY.createParser(raw)) {
      JsonToken t = p.nextToken();
      if (t == null) throw new InvalidEvent("not UTF-8 JSON: Input data was truncated");
      if (t != JsonToken.START_OBJECT) throw schema("Expected `object`, got `" + kind(p, t) + "`", null);
      while ((t = p.nextToken()) != JsonToken.END_OBJECT) {
        String key = p.currentName();
        checkSurrogates(key, p, raw, false);
        t = p.nextToken();
        switch (key) {
          case "event_id" -> f.eventId = string(p, raw, t, "$.event_id");
          case "user_id" -> f.userId = string(p, raw, t, "$.user_id");
          case "name" -> f.name = string(p, raw, t, "$.name");
          case "tenant" -> f.tenant = string(p, raw, t, "$.tenant");
          case "ts" -> f.ts = ts(p, raw, t);
          case "values" -> f.values = values(p, raw, t);
          default -> skip(p, raw, t);
        }
      }
      JsonToken after;
      try {
        after = p.nextToken();
      } catch (JsonParseException e) {
        throw malformed("trailing characters", (int) e.getLocation().getByteOffset());
      }
      if (after != null) throw malformed("trailing characters", (int) p.currentTokenLocation().getByteOffset());
    } catch (JsonEOFException e) {
      throw new InvalidEvent("not UTF-8 JSON: Input data was truncated");
    } catch (StreamConstraintsException e) {
      throw new InvalidEvent("not UTF-8 JSON: JSON is malformed: " + constraint(e));
    } catch (InputCoercionException e) {
      throw new InvalidEvent("schema: Number out of range");
    } catch (JsonParseException e) {
      throw parseError(e);
    } catch (IOException e) {
      throw new InvalidEvent("not UTF-8 JSON: " + e.getMessage());
    }
    if (f.eventId == null) throw schema("Object missing required field `event_id`", null);
    if (f.userId == null) throw schema("Object missing required field `user_id`", null);
    if (f.ts == null) throw schema("Object missing required field `ts`", null);
    if (f.name == null) throw schema("Object missing required field `name`", null);
    if (f.userId.isEmpty()) throw new InvalidEvent("user_id is empty");
    if (f.userId.getBytes(StandardCharsets.UTF_8).length > MAX_USER_ID_BYTES) {
      throw new InvalidEvent("user_id is over " + MAX_USER_ID_BYTES + " bytes");
    }
    String tenant = f.tenant == null ? DEFAULT_TENANT : f.tenant;
    if (tenant.isEmpty()) throw new InvalidEvent("tenant is empty");
    checkLength("tenant", tenant);
    if (f.eventId.isEmpty()) throw new InvalidEvent("event_id is empty");
    checkLength("event_id", f.eventId);
    if (f.name.isEmpty()) throw new InvalidEvent("name is empty");
    checkLength("name", f.name);
    if (f.ts.signum() < 0) throw new InvalidEvent("ts is negative");
    if (f.ts.compareTo(MAX_TS_BIG) > 0) {
      throw new InvalidEvent("ts is after " + MAX_TS + " (9999-12-31T23:59:59.999Z)");
    }
    Map<String, Object> values = f.values == null ? Map.of() : f.values;
    return new Event(f.eventId, tenant, f.userId, f.ts.longValue(), f.name, values);
  }

  private static void checkLength(String field, String value) throws InvalidEvent {
    // Cheap first: a string of n chars is at most 3n UTF-8 bytes (a surrogate pair: 4 for 2).
    if (value.length() * 3 > MAX_FIELD_BYTES && value.getBytes(StandardCharsets.UTF_8).length > MAX_FIELD_BYTES) {
      throw new InvalidEvent(field + " is over " + MAX_FIELD_BYTES + " bytes");
    }
  }

  private static final class Fields {
    String eventId, userId, name, tenant;
    BigInteger ts;
    Map<String, Object> values;
  }

  private static String string(JsonParser p, byte[] raw, JsonToken t, String at) throws IOException, InvalidEvent {
    if (t != JsonToken.VALUE_STRING) throw schema("Expected `str`, got `" + kind(p, t) + "`", at);
    String s = p.getText();
    checkSurrogates(s, p, raw, false);
    return s;
  }

  private static BigInteger ts(JsonParser p, byte[] raw, JsonToken t) throws IOException, InvalidEvent {
    if (t == JsonToken.VALUE_NUMBER_INT) {
      if (p.getTextLength() > MAX_INT_CHARS) throw schema("Integer value out of range", "$.ts");
      return p.getBigIntegerValue();
    }
    if (t == JsonToken.VALUE_NUMBER_FLOAT && Double.isInfinite(p.getDoubleValue())) {
      throw schema("Number out of range", "$.ts");
    }
    if (t == JsonToken.VALUE_STRING) checkSurrogates(p.getText(), p, raw, false);
    throw schema("Expected `int`, got `" + kind(p, t) + "`", "$.ts");
  }

  private static Map<String, Object> values(JsonParser p, byte[] raw, JsonToken t) throws IOException, InvalidEvent {
    if (t != JsonToken.START_OBJECT) throw schema("Expected `object`, got `" + kind(p, t) + "`", "$.values");
    Map<String, Object> values = new LinkedHashMap<>();
    while (p.nextToken() != JsonToken.END_OBJECT) {
      String key = p.currentName();
      checkSurrogates(key, p, raw, false);
      JsonToken v = p.nextToken();
      Object value = switch (v) {
        case VALUE_STRING -> {
          String s = p.getText();
          checkSurrogates(s, p, raw, false);
          yield s;
        }
        case VALUE_NUMBER_INT -> {
          if (p.getTextLength() > MAX_INT_CHARS) throw schema("Integer value out of range", "$.values[...]");
          yield switch (p.getNumberType()) {
            case INT, LONG -> p.getLongValue();
            default -> p.getBigIntegerValue();
          };
        }
        case VALUE_NUMBER_FLOAT -> {
          double d = p.getDoubleValue();
          if (Double.isInfinite(d)) throw schema("Number out of range", "$.values[...]");
          yield d;
        }
        case VALUE_TRUE -> Boolean.TRUE;
        case VALUE_FALSE -> Boolean.FALSE;
        case VALUE_NULL -> null;
        default -> throw schema("Expected " + SCALAR + ", got `" + kind(p, v) + "`", "$.values[...]");
      };
      values.put(key, value);
    }
    return values;
  }

  /** An ignored field: read to its end without recursion, still refusing lone surrogates. */
  private static void skip(JsonParser p, byte[] raw, JsonToken t) throws IOException, InvalidEvent {
    int depth = 0;
    while (true) {
      if (t == JsonToken.START_OBJECT || t == JsonToken.START_ARRAY) depth++;
      else if (t == JsonToken.END_OBJECT || t == JsonToken.END_ARRAY) depth--;
      else if (t == JsonToken.VALUE_STRING || t == JsonToken.FIELD_NAME) checkSurrogates(p.getText(), p, raw, true);
      if (depth == 0) return;
      t = p.nextToken();
      if (t == null) throw new JsonEOFException(p, null, "truncated");
    }
  }

  private static String kind(JsonParser p, JsonToken t) {
    return switch (t) {
      case START_OBJECT -> "object";
      case START_ARRAY -> "array";
      case VALUE_STRING -> "str";
      case VALUE_NUMBER_INT -> "int";
      case VALUE_NUMBER_FLOAT -> "float";
      case VALUE_TRUE, VALUE_FALSE -> "bool";
      case VALUE_NULL -> "null";
      default -> t.name();
    };
  }

  private static InvalidEvent schema(String message, String at) {
    return new InvalidEvent("schema: " + message + (at == null ? "" : " - at `" + at + "`"));
  }

  private static InvalidEvent malformed(String what, int byteOffset) {
    return new InvalidEvent("not UTF-8 JSON: JSON is malformed: " + what + " (byte " + byteOffset + ")");
  }

  /** Jackson's parse error as msgspec's reason (kind and byte offset; checked against Python for
   * the cases in the cross-check corpus). */
  private static InvalidEvent parseError(JsonParseException e) {
    String m = String.valueOf(e.getOriginalMessage());
    int at = e.getLocation() == null ? 0 : (int) e.getLocation().getByteOffset();
    if (m.contains("Leading zeroes") || m.contains("Decimal point") || m.contains("Exponent indicator")) {
      return malformed("invalid number", at);
    }
    if (m.contains("Unrecognized character escape")) return malformed("invalid escape character in string", at + 1);
    if (m.startsWith("Non-standard token '")) {
      int close = m.indexOf('\'', 20);
      // msgspec: at the token's first byte, but after a '-' (as for any '-' not followed by a digit)
      int minus = m.startsWith("Non-standard token '-") ? 1 : 0;
      return malformed("invalid character", at - (close > 20 ? close - 20 : 0) + minus);
    }
    if (m.contains("('+' (code 43))")) return malformed("invalid character", at - 1);
    if (m.contains("Unexpected character ('}'") && m.contains("start field name")) {
      return malformed("trailing comma in object", at);
    }
    if (m.contains("Unexpected character (']'") && m.contains("expecting a value")) {
      return malformed("trailing comma in array", at);
    }
    if (m.contains("was expecting double-quote to start field name")) return malformed("object keys must be strings", at);
    if (m.contains("was expecting a colon to separate field name and value")) return malformed("expected ':'", at);
    if (m.contains("was expecting comma to separate Object entries")) return malformed("expected ',' or '}'", at);
    if (m.contains("was expecting comma to separate Array entries")) return malformed("expected ',' or ']'", at);
    return malformed("invalid character", at);
  }

  private static String constraint(StreamConstraintsException e) {
    String m = String.valueOf(e.getMessage());
    if (m.contains("nesting depth")) return "nested deeper than " + MAX_DEPTH + " levels";
    return "value too long";
  }

  /** Raw bytes must be UTF-8 (no surrogate code points, no overlong forms), as msgspec requires. */
  private static void checkUtf8(byte[] raw) throws InvalidEvent {
    CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
        .onMalformedInput(CodingErrorAction.REPORT).onUnmappableCharacter(CodingErrorAction.REPORT);
    ByteBuffer in = ByteBuffer.wrap(raw);
    java.nio.CharBuffer out = java.nio.CharBuffer.allocate(raw.length + 1);
    java.nio.charset.CoderResult r = decoder.decode(in, out, true);
    if (r.isError()) throw new InvalidEvent("not UTF-8 JSON: invalid UTF-8 (byte " + in.position() + ")");
  }

  /** msgspec refuses lone surrogate escapes ({@code "\ud800"}); Jackson decodes them. The reason
   * is msgspec's: a high surrogate not followed by an escape is "Input data was truncated", any other
   * lone surrogate "invalid utf-16 surrogate pair" at the escape's last byte; a high surrogate
   * followed by six bytes or more that are no {@code \\u} escape is "unexpected end of escaped
   * utf-16 surrogate pair" in a string msgspec decodes, "unexpected end of hex escape" in one it
   * skips ({@code skipped}: inside an ignored field). */
  private static void checkSurrogates(String s, JsonParser p, byte[] raw, boolean skipped) throws InvalidEvent {
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
        i++;
      } else if (Character.isSurrogate(c)) {
        throw surrogateError(raw, (int) p.currentTokenLocation().getByteOffset(), skipped);
      }
    }
  }

  /** Find the first lone surrogate escape in the JSON string starting at or after {@code from}. */
  private static InvalidEvent surrogateError(byte[] raw, int from, boolean skipped) {
    int i = Math.max(0, from);
    while (i < raw.length && raw[i] != '"') i++;
    i++;
    while (i < raw.length && raw[i] != '"') {
      if (raw[i] != '\\') {
        i++;
        continue;
      }
      if (i + 1 < raw.length && raw[i + 1] == 'u' && i + 5 < raw.length) {
        int unit = Integer.parseInt(new String(raw, i + 2, 4, StandardCharsets.US_ASCII), 16);
        if (Character.isLowSurrogate((char) unit)) return surrogatePair(i + 6);
        if (Character.isHighSurrogate((char) unit)) {
          int j = i + 6;
          if (j + 5 >= raw.length) return new InvalidEvent("not UTF-8 JSON: Input data was truncated");
          if (raw[j] != '\\' || raw[j + 1] != 'u') {
            return malformed(skipped ? "unexpected end of hex escape" : "unexpected end of escaped utf-16 surrogate pair", j);
          }
          int next = Integer.parseInt(new String(raw, j + 2, 4, StandardCharsets.US_ASCII), 16);
          if (!Character.isLowSurrogate((char) next)) return surrogatePair(j + 6);
          i = j + 6;
          continue;
        }
        i += 6;
      } else {
        i += 2;
      }
    }
    return surrogatePair(from);
  }

  private static InvalidEvent surrogatePair(int at) {
    return new InvalidEvent("not UTF-8 JSON: JSON is malformed: invalid utf-16 surrogate pair (byte " + at + ")");
  }
}
