package io.segstream.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** Events.parse never throws anything but InvalidEvent, whatever the bytes. */
class EventsHostileTest {
  static final String B = "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1,\"name\":\"n\"";

  static byte[] b(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  static String reason(byte[] raw) {
    return assertThrows(InvalidEvent.class, () -> Events.parse(raw)).reason();
  }

  @Test
  void hostileCorpusOnlyEverGivesInvalidEvent() {
    List<byte[]> corpus = new ArrayList<>();
    corpus.add(null);
    corpus.add(new byte[0]);
    corpus.add(new byte[] {(byte) 0xff});
    corpus.add(b(B + ",\"values\":{\"a\":\"") /* truncated */);
    corpus.add(b("[".repeat(10_000) + "]".repeat(10_000)));
    corpus.add(b(B + ",\"x\":" + "[".repeat(10_000) + "]".repeat(10_000) + "}"));
    corpus.add(b(B + ",\"x\":" + "{\"a\":".repeat(5_000) + "1" + "}".repeat(5_000) + "}"));
    corpus.add(b(B + ",\"values\":{\"a\":" + "9".repeat(5_000) + "}}"));
    corpus.add(b(B + ",\"values\":{\"a\":1" + "0".repeat(400) + ".0}}"));
    corpus.add(b(B + ",\"values\":{\"a\":1e99999999999}}"));
    corpus.add(b("{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":" + "9".repeat(30) + ",\"name\":\"n\"}"));
    corpus.add(b("{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":9223372036854775808,\"name\":\"n\"}"));
    corpus.add(b("{\"event_id\":[],\"user_id\":{},\"ts\":{},\"name\":null}"));
    corpus.add(b(B + ",\"values\":{\"big\":\"" + "x".repeat(70_000) + "\"}}"));
    corpus.add(b("{\"event_id\":\"e\",\"user_id\":\"" + "x".repeat(300) + "\",\"ts\":1,\"name\":\"n\"}"));
    Random rng = new Random(42);
    byte[] valid = b(B + ",\"values\":{\"a\":1.5,\"b\":\"é😀\",\"c\":true,\"d\":null}}");
    for (int i = 0; i < 3000; i++) {
      byte[] m = valid.clone();
      for (int k = 0; k <= rng.nextInt(4); k++) m[rng.nextInt(m.length)] = (byte) rng.nextInt(256);
      corpus.add(m);
      byte[] r = new byte[rng.nextInt(64)];
      rng.nextBytes(r);
      corpus.add(r);
      corpus.add(java.util.Arrays.copyOf(valid, rng.nextInt(valid.length)));
    }
    for (byte[] raw : corpus) {
      try {
        Events.parse(raw);
      } catch (InvalidEvent e) {
        assertTrue(!e.reason().isEmpty());
      } catch (Throwable t) {
        throw new AssertionError("parse threw " + t + " for " + (raw == null ? "null" : new String(raw, 0,
            Math.min(raw.length, 80), StandardCharsets.ISO_8859_1)), t);
      }
    }
  }

  @Test
  void reasons() {
    assertEquals("not UTF-8 JSON: Input data was truncated", reason(null));
    assertEquals("not UTF-8 JSON: Input data was truncated", reason(new byte[0]));
    assertEquals("not UTF-8 JSON: invalid UTF-8 (byte 63)",
        reason(concat(b(B + ",\"values\":{\"a\":\""), new byte[] {(byte) 0xED, (byte) 0xA0, (byte) 0x80}, b("\"}}"))));
    assertEquals("not UTF-8 JSON: invalid UTF-8 (byte 53)",
        reason(concat(b(B + ",\"x\":\""), new byte[] {(byte) 0xff}, b("\"}"))));  // an ignored field: both engines check every byte
    assertEquals("schema: Expected `object`, got `array`", reason(b("[".repeat(10_000))));
    assertEquals("not UTF-8 JSON: JSON is malformed: nested deeper than 256 levels",
        reason(b(B + ",\"x\":" + "[".repeat(10_000) + "]".repeat(10_000) + "}")));
    assertEquals("schema: Number out of range - at `$.values[...]`", reason(b(B + ",\"values\":{\"a\":1e400}}")));
    assertEquals("schema: Number out of range - at `$.ts`",
        reason(b("{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1e400,\"name\":\"n\"}")));
    assertEquals("ts is after 253402300799999 (9999-12-31T23:59:59.999Z)",
        reason(b("{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":9223372036854775808,\"name\":\"n\"}")));
    assertEquals("ts is negative",
        reason(b("{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":-9223372036854775809,\"name\":\"n\"}")));
    assertEquals("record is 70068 bytes, over the 65536 byte limit",
        reason(b(B + ",\"values\":{\"big\":\"" + "x".repeat(70_000) + "\"}}")));
    assertEquals("user_id is over 256 bytes",
        reason(b("{\"event_id\":\"e\",\"user_id\":\"" + "x".repeat(257) + "\",\"ts\":1,\"name\":\"n\"}")));
    assertEquals("schema: Expected `str`, got `array` - at `$.event_id`",
        reason(b("{\"event_id\":[],\"user_id\":{},\"ts\":{},\"name\":null}")));
  }

  @Test
  void valueTypes() throws InvalidEvent {
    Event e = Events.parse(b(B + ",\"values\":{\"i\":3,\"f\":3.0,\"m\":-0.0,\"big\":9223372036854775808,"
        + "\"s\":\"é\",\"t\":true,\"n\":null,\"max\":9223372036854775807}}"));
    assertEquals(3L, e.values().get("i"));
    assertEquals(3.0, e.values().get("f"));
    assertEquals(Double.doubleToRawLongBits(-0.0), Double.doubleToRawLongBits((Double) e.values().get("m")));
    assertEquals(new BigInteger("9223372036854775808"), e.values().get("big"));
    assertEquals(Long.MAX_VALUE, e.values().get("max"));
    assertInstanceOf(String.class, e.values().get("s"));
    assertEquals(true, e.values().get("t"));
    assertTrue(e.values().containsKey("n"));
    assertEquals("default", e.tenant());
  }

  /** The bounds and reasons the hostile-input corpus (segstream/hostile.py) found missing or off. */
  @Test
  void hostileCorpusReasonsAreThePythonContracts() throws InvalidEvent {
    String head = "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1,\"name\":\"n\"";
    for (String field : List.of("event_id", "tenant", "name")) {
      String fits = "é".repeat(Events.MAX_FIELD_BYTES / 2);
      Events.parse(b(head + ",\"" + field + "\":\"" + fits + "\"}"));
      assertEquals(field + " is over 256 bytes", reason(b(head + ",\"" + field + "\":\"" + fits + "x\"}")));
      assertEquals(field + " is over 256 bytes",
          reason(b(head + ",\"" + field + "\":\"" + "😀".repeat(65) + "\"}")));
    }
    // msgspec reads integers of at most 4300 characters (sign included)
    Events.parse(b(head + ",\"values\":{\"a\":" + "9".repeat(4300) + "}}"));
    assertEquals("schema: Integer value out of range - at `$.values[...]`",
        reason(b(head + ",\"values\":{\"a\":-" + "9".repeat(4300) + "}}")));
    assertEquals("schema: Integer value out of range - at `$.ts`",
        reason(b("{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":" + "9".repeat(4301) + ",\"name\":\"n\"}")));
    // a high surrogate escape followed by 6+ bytes that are no \\u escape: msgspec's decode vs skip wording
    assertEquals("not UTF-8 JSON: JSON is malformed: unexpected end of escaped utf-16 surrogate pair (byte 20)",
        reason(b("{\"event_id\":\"e\\ud800\",\"user_id\":\"u\",\"ts\":1,\"name\":\"n\"}")));
    assertEquals("not UTF-8 JSON: JSON is malformed: unexpected end of hex escape (byte 13)",
        reason(b("{\"zz\":\"\\ud800\",\"event_id\":\"e1\",\"user_id\":\"u1\",\"ts\":1,\"name\":\"n\"}")));
    assertEquals("not UTF-8 JSON: Input data was truncated", reason(b(head + ",\"values\":{\"a\":\"\\ud800\"}}")));
    // -Infinity: msgspec points after the '-'
    assertEquals("not UTF-8 JSON: JSON is malformed: invalid character (byte 6)", reason(b("{\"a\":-Infinity}")));
  }

  static byte[] concat(byte[]... parts) {
    int n = 0;
    for (byte[] p : parts) n += p.length;
    byte[] out = new byte[n];
    int at = 0;
    for (byte[] p : parts) {
      System.arraycopy(p, 0, out, at, p.length);
      at += p.length;
    }
    return out;
  }
}
