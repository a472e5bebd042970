package io.segstream.flink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.stream.Collectors;
import io.segstream.flink.windows.WindowAggregatorTest;
import io.segstream.flink.windows.WindowInput;
import io.segstream.flink.windows.WindowInputs;
import io.segstream.flink.windows.WindowPipeline;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.apache.flink.streaming.util.ProcessFunctionTestHarnesses;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

class ParseEventsTest {
  static byte[] b(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  static String s(byte[] b) {
    return new String(b, StandardCharsets.UTF_8);
  }

  private static List<Row> deadLetters(OneInputStreamOperatorTestHarness<Row, ParsedEvent> h) {
    return h.getSideOutput(Outputs.DEAD_LETTERS) == null ? List.of()
        : h.getSideOutput(Outputs.DEAD_LETTERS).stream().map(StreamRecord::getValue).collect(Collectors.toList());
  }

  @Test
  void validEventsGoOnKeyedByUser() throws Exception {
    try (var h = ProcessFunctionTestHarnesses.forProcessFunction(new ParseEvents("events"))) {
      byte[] raw = b("{\"event_id\":\"e1\",\"user_id\":\"u1\",\"ts\":5,\"name\":\"view\",\"tenant\":\"acme\"}");
      h.processElement(Row.of(b("k"), raw, 2, 41L), 0);
      assertEquals(List.of(new ParsedEvent("4:acmeu1", b("k"), raw, 2, 41L)), h.extractOutputValues());
      assertEquals(List.of(), deadLetters(h));
    }
  }

  @Test
  void withWindowDefinitionsValidEventsAlsoGoToTheWindowBranchAsTheStandaloneJobSeesThem() throws Exception {
    String specs = WindowAggregatorTest.SPECS;
    Row view = WindowAggregatorTest.record("acme", "u1", "e1", 5, "page_view", "/a", 7);
    Row other = WindowAggregatorTest.record("acme", "u1", "e2", 6, "purchase", "/a", 7);
    Row invalid = Row.of(b("k"), b("{\"event_id\":\"e3\",\"user_id\":\"u1\",\"ts\":\"x\",\"name\":\"page_view\"}"), 0, 3L);
    try (var h = ProcessFunctionTestHarnesses.forProcessFunction(new ParseEvents("events", new WindowInputs(specs)))) {
      for (Row r : List.of(view, other, invalid, Row.of(b("t"), null, 0, 4L))) h.processElement(r, 0);
      List<WindowInput> inputs = h.getSideOutput(WindowPipeline.INPUTS).stream().map(StreamRecord::getValue).toList();
      // One per definition counting the page view (both), a tick for the purchase (no definition
      // counts it: it moves the branch's watermark only), none for the bad records.
      assertEquals(WindowAggregatorTest.extract(view, other, invalid), inputs);
      assertEquals(3, inputs.size());
      assertEquals(List.of(WindowInput.TICK), inputs.stream().filter(in -> in.spec < 0).map(in -> in.spec).toList());
      assertEquals(6L, inputs.get(2).ts);
      assertEquals(0, inputs.get(2).partition);
      assertEquals(2, h.extractOutputValues().size());  // the evaluator's stream is unchanged
      assertEquals(2, deadLetters(h).size());
    }
  }

  @Test
  void anEventTooFarAfterItsAppendTimeIsADeadLetterWithTheReason() throws Exception {
    long appended = 1_765_000_000_000L;
    try (var h = ProcessFunctionTestHarnesses.forProcessFunction(
        new ParseEvents("events", new WindowInputs(WindowAggregatorTest.SPECS), 60_000))) {
      byte[] ok = b("{\"event_id\":\"e1\",\"user_id\":\"u1\",\"ts\":" + (appended + 60_000) + ",\"name\":\"page_view\"}");
      byte[] past = b("{\"event_id\":\"e2\",\"user_id\":\"u1\",\"ts\":0,\"name\":\"page_view\"}");
      byte[] future = b("{\"event_id\":\"e3\",\"user_id\":\"u1\",\"ts\":253402300799999,\"name\":\"page_view\"}");
      java.time.Instant at = java.time.Instant.ofEpochMilli(appended);
      h.processElement(Row.of(b("k"), ok, 1, 1L, null, at), 0);
      h.processElement(Row.of(b("k"), past, 1, 2L, null, at), 0);
      h.processElement(Row.of(b("k"), future, 1, 3L, null, at), 0);
      h.processElement(Row.of(b("k"), future, 1, 4L, null), 0);  // no append time (old rows): not judged
      assertEquals(List.of(1L, 2L, 4L), h.extractOutputValues().stream().map(p -> p.offset).toList());
      assertEquals(appended + 60_000, h.extractOutputValues().get(0).ts);
      List<Row> letters = deadLetters(h);
      assertEquals(1, letters.size());
      long ahead = 253402300799999L - appended;
      assertEquals("{\"reason\":\"ts is " + ahead + " ms after the record's append time " + appended
          + ", over the 60000 ms allowed (events.max_future_skew_ms)\",\"topic\":\"events\",\"partition\":1,"
          + "\"offset\":3,\"original_b64\":\"" + Base64.getEncoder().encodeToString(future) + "\"}",
          s((byte[]) letters.get(0).getField(1)));
      // A dead letter reaches neither the evaluator nor the windows (so no watermark assigner):
      // 3 page views (offsets 1, 2, 4) x 2 definitions, not 4.
      assertEquals(3 * 2, h.getSideOutput(WindowPipeline.INPUTS).size());
    }
  }

  @Test
  void theReplyHeaderIsCarriedOn() throws Exception {
    try (var h = ProcessFunctionTestHarnesses.forProcessFunction(new ParseEvents("events"))) {
      byte[] raw = b("{\"event_id\":\"e1\",\"user_id\":\"u1\",\"ts\":5,\"name\":\"view\"}");
      h.processElement(Row.of(b("k"), raw, 2, 41L, b("segstream-reply-a")), 0);
      h.processElement(Row.of(b("k"), raw, 2, 42L, null), 0);
      assertEquals(List.of(new ParsedEvent("7:defaultu1", b("k"), raw, 2, 41L, "segstream-reply-a"),
          new ParsedEvent("7:defaultu1", b("k"), raw, 2, 42L)), h.extractOutputValues());
    }
  }

  @Test
  void invalidRecordsAreDeadLetteredAsThePythonJobDoes() throws Exception {
    try (var h = ProcessFunctionTestHarnesses.forProcessFunction(new ParseEvents("events"))) {
      byte[] raw = b("{\"event_id\":\"e1\",\"user_id\":\"u1\",\"ts\":\"x\",\"name\":\"view\"}");
      h.processElement(Row.of(b("k"), raw, 2, 41L), 0);
      h.processElement(Row.of(null, b("{\"event_id\":\"e1\",\"user_id\":\"\",\"ts\":1,\"name\":\"v\"}"), 0, 1L), 0);
      h.processElement(Row.of(b("t"), null, 1, 9L), 0);  // a tombstone
      assertEquals(List.of(), h.extractOutputValues());
      List<Row> letters = deadLetters(h);
      assertEquals(3, letters.size());
      // operators/events.py dead_letter(raw, reason, "events", 2, 41), msgspec's JSON
      assertArrayEquals(b("k"), (byte[]) letters.get(0).getField(0));
      assertEquals("{\"reason\":\"schema: Expected `int`, got `str` - at `$.ts`\",\"topic\":\"events\",\"partition\":2,"
          + "\"offset\":41,\"original_b64\":\"" + Base64.getEncoder().encodeToString(raw) + "\"}",
          s((byte[]) letters.get(0).getField(1)));
      assertEquals(null, letters.get(1).getField(0));
      assertTrue(s((byte[]) letters.get(1).getField(1)).startsWith("{\"reason\":\"user_id is empty\","));
      assertEquals("{\"reason\":\"" + ParseEvents.TOMBSTONE + "\",\"topic\":\"events\",\"partition\":1,\"offset\":9,"
          + "\"original_b64\":\"\"}", s((byte[]) letters.get(2).getField(1)));
    }
  }

  @Test
  void oversizedRecordsAreTruncatedInTheDeadLetter() throws Exception {
    try (var h = ProcessFunctionTestHarnesses.forProcessFunction(new ParseEvents("events"))) {
      byte[] raw = new byte[5 * 1024 * 1024];
      Arrays.fill(raw, (byte) 'x');
      byte[] key = new byte[DeadLetters.MAX_KEY_BYTES + 1];
      h.processElement(Row.of(key, raw, 0, 0L), 0);
      Row letter = deadLetters(h).get(0);
      assertEquals(DeadLetters.MAX_KEY_BYTES, ((byte[]) letter.getField(0)).length);
      String v = s((byte[]) letter.getField(1));
      assertTrue(v.length() < 512 * 1024 + 1024, "dead letter of " + v.length() + " bytes");
      assertTrue(v.startsWith("{\"reason\":\"record is 5242880 bytes, over the 65536 byte limit\","), v.substring(0, 100));
      assertTrue(v.endsWith("\",\"original_truncated\":true,\"original_length\":5242880,\"original_sha256\":\""
          + DeadLetters.sha256(raw) + "\",\"key_length\":65537,\"key_sha256\":\"" + DeadLetters.sha256(key) + "\"}"));
      int b64 = v.indexOf("\"original_b64\":\"") + 16;
      String prefix = v.substring(b64, v.indexOf('"', b64));
      assertEquals(DeadLetters.MAX_ORIGINAL_BYTES, Base64.getDecoder().decode(prefix).length);
    }
  }

  @Test
  void nothingThrows() throws Exception {
    try (var h = ProcessFunctionTestHarnesses.forProcessFunction(new ParseEvents("events"))) {
      h.processElement(Row.of("not bytes", 42, "x", null), 0);
      h.processElement(Row.of(null, null, null, null), 0);
      h.processElement(Row.of(null, new byte[] {(byte) 0xff, 0, 1}, 0, 0L), 0);
      h.processElement(Row.of(null, b("[".repeat(10_000)), 0, 0L), 0);
      List<Row> letters = deadLetters(h);
      assertEquals(4, letters.size());
      assertTrue(s((byte[]) letters.get(0).getField(1)).startsWith("{\"reason\":\"internal: java.lang.ClassCastException"));
      assertTrue(s((byte[]) letters.get(1).getField(1)).contains("\"partition\":null,\"offset\":null"));
    }
  }

  @Test
  void userKeysDoNotCollide() {
    assertNotEquals(UserKey.of("acme", "x\0y"), UserKey.of("acme\0x", "y"));
    assertNotEquals(UserKey.of("a", "1:bc"), UserKey.of("1:ab", "c"));
    for (String[] pair : List.of(new String[] {"acme", "x\0y"}, new String[] {"t😀:1", "u:😀"}, new String[] {"default", "7"})) {
      assertArrayEquals(pair, UserKey.split(UserKey.of(pair[0], pair[1])));
    }
    assertEquals("2:t😀u", UserKey.of("t😀", "u"));  // Python: f"{len(tenant)}:{tenant}{user_id}"
  }
}
