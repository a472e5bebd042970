package io.segstream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.segstream.engine.Redaction;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;
import java.util.List;
import java.util.stream.Collectors;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.ProcessFunctionTestHarnesses;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** parse-validate under a PII policy (docs/security.md, "Item 6"): what goes on and what is dead-lettered. */
class ParseEventsPiiTest {
  static final Redaction POLICY = Redaction.fromJson("{\"key_hex\":\""
      + HexFormat.of().formatHex("test-key".getBytes(StandardCharsets.UTF_8)) + "\","
      + "\"default\":{},\"tenants\":{\"acme\":{\"values.email\":\"hash\",\"values.phone\":\"drop\"}}}");

  static byte[] b(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  @Test
  void policedEventsGoOnRedactedAndOthersAsTheyCame() throws Exception {
    ParseEvents parse = new ParseEvents("events");
    parse.redactWith(POLICY);
    try (var h = ProcessFunctionTestHarnesses.forProcessFunction(parse)) {
      byte[] acme = b("{\"event_id\":\"e1\",\"user_id\":\"u1\",\"ts\":5,\"name\":\"view\",\"tenant\":\"acme\","
          + "\"values\":{\"email\":\"a@b.c\",\"phone\":\"+81 3\",\"page\":\"/\"},\"ignored\":\"a@b.c\"}");
      byte[] other = b("{\"event_id\":\"e2\",\"user_id\":\"u1\",\"ts\":5,\"name\":\"view\",\"values\":{\"email\":\"a@b.c\"}}");
      h.processElement(Row.of(b("u1"), acme, 0, 1L), 0);
      h.processElement(Row.of(b("u1"), other, 0, 2L), 0);
      List<ParsedEvent> out = h.extractOutputValues();
      assertEquals(2, out.size());
      // Python's encode_event of the redacted event: the ignored field is gone with the raw bytes.
      assertEquals("{\"event_id\":\"e1\",\"user_id\":\"u1\",\"ts\":5,\"name\":\"view\",\"values\":{\"email\":"
          + "\"0704367f328398f0e46fbcf1b14cbabe2ed89f8d82180947d0c7e783d2c37d4b\",\"page\":\"/\"},\"tenant\":\"acme\"}",
          new String(out.get(0).value, StandardCharsets.UTF_8));
      assertEquals("4:acmeu1", out.get(0).key);
      assertTrue(java.util.Arrays.equals(other, out.get(1).value), "an unpoliced tenant's bytes are untouched");
    }
  }

  @Test
  void deadLettersOfPolicedRecordsKeepNoOriginal() throws Exception {
    ParseEvents parse = new ParseEvents("events");
    parse.redactWith(POLICY);
    try (var h = ProcessFunctionTestHarnesses.forProcessFunction(parse)) {
      byte[] bad = b("{\"event_id\":\"e1\",\"user_id\":\"u1\",\"ts\":\"soon\",\"name\":\"v\",\"tenant\":\"acme\","
          + "\"values\":{\"email\":\"a@b.c\",\"phone\":\"+81 3\"}}");
      byte[] unpoliced = b("{\"event_id\":\"e2\",\"user_id\":\"u1\",\"ts\":\"soon\",\"name\":\"v\",\"values\":{\"email\":\"a@b.c\"}}");
      h.processElement(Row.of(b("u1"), bad, 3, 7L), 0);
      h.processElement(Row.of(b("u1"), unpoliced, 3, 8L), 0);
      List<String> letters = h.getSideOutput(Outputs.DEAD_LETTERS).stream().map(StreamRecord::getValue)
          .map(r -> new String((byte[]) r.getField(1), StandardCharsets.UTF_8)).collect(Collectors.toList());
      String policed = letters.get(0);
      assertTrue(policed.startsWith("{\"reason\":\"schema: Expected `int`, got `str` - at `$.ts`\",\"topic\":\"events\","
          + "\"partition\":3,\"offset\":7,\"original_redacted\":true,\"original_length\":" + bad.length
          + ",\"original_hmac\":\"" + POLICY.hash(bad) + "\",\"redacted\":{\"event_id\":\"e1\","), policed);
      assertFalse(policed.contains("a@b.c") || policed.contains("+81") || policed.contains("original_b64"), policed);
      assertTrue(letters.get(1).contains("\"original_b64\":\""), "the default policy keeps everything here");
    }
  }
}
