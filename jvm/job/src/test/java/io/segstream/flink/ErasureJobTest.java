package io.segstream.flink;

import static io.segstream.flink.EvaluateUsersTest.T0;
import static io.segstream.flink.EvaluateUsersTest.DAY;
import static io.segstream.flink.EvaluateUsersTest.event;
import static io.segstream.flink.EvaluateUsersTest.parsed;
import static io.segstream.flink.EvaluateUsersTest.side;
import static io.segstream.flink.EvaluateUsersTest.values;
import static io.segstream.flink.ParseEventsTest.b;
import static io.segstream.flink.ParseEventsTest.s;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.segstream.engine.Erasure;
import io.segstream.engine.rules.Ownership;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.streaming.api.operators.co.CoBroadcastWithKeyedOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.KeyedBroadcastOperatorTestHarness;
import org.apache.flink.streaming.util.ProcessFunctionTestHarnesses;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** Signed rule records and erase commands in the job's operators (docs/security.md). */
class ErasureJobTest {
  static final List<String> KEYS = List.of("test-key");

  static KeyedBroadcastOperatorTestHarness<String, ParsedEvent, Row, Row> signedHarness() throws Exception {
    EvaluateUsers fn = new EvaluateUsers(EvaluateUsersTest.CATALOGUE, EvaluateUsersTest.RULES, "events", "rules", true,
        "", KEYS);
    fn.acknowledgeErasuresOn("erasures");
    return new KeyedBroadcastOperatorTestHarness<>(new CoBroadcastWithKeyedOperator<>(fn, List.of(Outputs.RULE_CHANGES)),
        new UserKey.Selector(), Types.STRING, 128, 1, 0);
  }

  static ParsedEvent erase(String tenant, String user, String id, String replyTo) {
    ParsedEvent e = new ParsedEvent(UserKey.of(tenant, user), b(user), Erasure.encode(id, tenant, user), 0, 99L, replyTo);
    e.erasureId = id;
    e.erasureOwner = "";
    return e;
  }

  @Test
  void anErasureClearsTheUsersStateAndTimerAndNothingElse() throws Exception {
    try (var h = signedHarness()) {
      h.open();
      h.processElement(parsed(event("e1", "acme", "u1", T0, "buy", 50), 0), 0);
      h.processElement(parsed(event("e2", "acme", "u1", T0 + 1, "buy", 1), 1), 0);
      h.processElement(parsed(event("e3", "acme", "u2", T0, "buy", 5), 2), 0);
      h.processElement(parsed(event("e4", "beta", "u1", T0, "buy", 5), 3), 0);
      h.processElement(erase("acme", "u1", "x1", "reply-a"), 0);
      String ack = "{\"erasure_id\":\"x1\",\"tenant\":\"acme\",\"user_id\":\"u1\",\"owner\":\"\",\"erased\":\"state\","
          + "\"had_state\":true}";
      assertEquals(List.of("x1 " + ack), values(side(h, Outputs.ERASURES)));
      // On the erasures topic and to the front that asked, both through the reply sink.
      assertEquals(List.of(Row.of("erasures", "x1", ack), Row.of("reply-a", "x1", ack)), side(h, Outputs.REPLIES));
      List<Tuple2<String, String>> mirror = side(h, Outputs.MIRROR);
      assertEquals(Tuple2.of(EvaluateUsers.ERASE_MARK, UserKey.of("acme", "u1")), mirror.get(mirror.size() - 1));
      // No keyed state of the user is left; the others' is.
      assertEquals(java.util.Set.of(UserKey.of("acme", "u2"), UserKey.of("beta", "u1")), usersWithState(h));
      // The erased user's expiry timer went with the state: only the two others expire.
      h.watermark(T0 + 2 * DAY);
      List<String> expired = values(side(h, Outputs.EXPIRATIONS));
      assertEquals(2, expired.size(), expired.toString());
      assertTrue(expired.stream().noneMatch(x -> x.contains("\"tenant\":\"acme\",\"user_id\":\"u1\"")), expired.toString());
      // The user's next event starts afresh; the erasure emitted no evaluation.
      h.processElement(parsed(event("e5", "acme", "u1", T0 + 2 * DAY, "view", 0), 4), 0);
      List<String> out = values(h.extractOutputValues());
      assertEquals(5, out.size());
      assertTrue(out.get(4).contains("\"seq\":1,\"stats\":{\"events_total\":1,\"sum_v\":0.0,\"buys\":0}"), out.get(4));
      // Erasing nobody is acknowledged too.
      h.processElement(erase("acme", "nobody", "x2", null), 0);
      assertTrue(values(side(h, Outputs.ERASURES)).get(1).endsWith("\"had_state\":false}"));
      assertEquals(List.of(), side(h, Outputs.DEAD_LETTERS));
    }
  }

  private static java.util.Set<Object> usersWithState(KeyedBroadcastOperatorTestHarness<String, ParsedEvent, Row, Row> h) {
    try (var keys = h.getOperator().getKeyedStateBackend()
        .getKeys("user", org.apache.flink.runtime.state.VoidNamespace.INSTANCE)) {
      return keys.collect(java.util.stream.Collectors.toSet());
    }
  }

  @Test
  void withKeysOnlySignedRuleRecordsApply() throws Exception {
    String big = EvaluateUsersTest.BIG;
    try (var h = signedHarness()) {
      h.open();
      h.processBroadcastElement(Row.of(b("big"), b(big), 0, 1L, null), 0);
      h.processBroadcastElement(Row.of(b("big"), b(big), 0, 2L,
          Ownership.sign(List.of("guessed"), Ownership.RULE, b("big"), "", b(big))), 0);
      h.processBroadcastElement(Row.of(b("big"), b(big), 0, 3L, Ownership.sign(KEYS, Ownership.RULE, b("big"), "acme",
          b(big))), 0);
      h.processElement(parsed(event("e1", "acme", "u1", T0, "buy", 50), 0), 0);
      assertTrue(values(h.extractOutputValues()).get(0).contains("\"segments\":[]"));
      List<String> reasons = side(h, Outputs.DEAD_LETTERS).stream()
          .map(r -> s((byte[]) r.getField(1)).split("\"")[3]).toList();
      assertEquals(List.of("rule: " + Ownership.NO_SIGNATURE, "rule: " + Ownership.MISMATCH,
          "rule: rule id 'big' is outside its owner's scope 'acme:'"), reasons);
      h.processBroadcastElement(Row.of(b("big"), b(big), 0, 4L, Ownership.sign(KEYS, Ownership.RULE, b("big"), "",
          b(big))), 0);
      h.processElement(parsed(event("e2", "acme", "u1", T0 + 1, "buy", 1), 1), 0);
      assertTrue(values(h.extractOutputValues()).get(1).contains("\"segments\":[\"big\",\"regular\"]"),
          values(h.extractOutputValues()).get(1));
    }
  }

  @Test
  void aSignedControlRecordIsAnEraseCommandAndAForgedOneADeadLetter() throws Exception {
    ParseEvents parse = new ParseEvents("events");
    parse.signingKeys(KEYS);
    try (var h = ProcessFunctionTestHarnesses.forProcessFunction(parse)) {
      byte[] value = Erasure.encode("x1", "acme", "u1");
      h.processElement(Row.of(b("u1"), value, 1, 7L, null, null, Ownership.sign(KEYS, Ownership.ERASE, b("u1"), "", value)), 0);
      h.processElement(Row.of(b("u1"), value, 1, 8L, b("reply-a"), null,
          Ownership.sign(List.of("guessed"), Ownership.ERASE, b("u1"), "", value)), 0);
      // Without the header it is no control record: an event, and not a valid one.
      h.processElement(Row.of(b("u1"), value, 1, 9L, null, null, null), 0);
      List<ParsedEvent> out = h.extractOutputValues();
      assertEquals(1, out.size());
      assertEquals("4:acmeu1", out.get(0).key);
      assertEquals("x1", out.get(0).erasureId);
      assertEquals("", out.get(0).erasureOwner);
      List<String> letters = h.getSideOutput(Outputs.DEAD_LETTERS).stream().map(StreamRecord::getValue)
          .map(r -> s((byte[]) r.getField(1))).toList();
      assertEquals(2, letters.size());
      assertTrue(letters.get(0).startsWith("{\"reason\":\"erase: " + Ownership.MISMATCH + "\",\"topic\":\"events\","
          + "\"partition\":1,\"offset\":8"), letters.get(0));
      assertTrue(letters.get(1).startsWith("{\"reason\":\"") && letters.get(1).contains("\"offset\":9"), letters.get(1));
    }
  }

  @Test
  void anErasureBecomesTheDeletionOfTheUsersRows() throws Exception {
    BigtableRows rows = BigtableRows.erasure("a_b", "u%1", 4);
    assertArrayEquals(BigtableRows.profileKey("a_b", "u%1", 4), rows.profileKey);
    String prefix = new String(rows.erasePrefix, StandardCharsets.UTF_8);
    assertEquals(new String(rows.profileKey, StandardCharsets.UTF_8) + "_", prefix);
    assertTrue(new String(BigtableRows.eventKey("a_b", "u%1", 5, "e", 4), StandardCharsets.UTF_8).startsWith(prefix));
    assertTrue(prefix.endsWith("_a%5Fb_u%251_"), prefix);
    assertNull(rows.eventKey);
  }
}
