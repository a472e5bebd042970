package io.segstream.flink;

import static io.segstream.flink.ParseEventsTest.b;
import static io.segstream.flink.ParseEventsTest.s;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.segstream.engine.Catalogue;
import io.segstream.engine.Evaluator;
import io.segstream.engine.Events;
import io.segstream.engine.Json;
import io.segstream.engine.rules.RuleSet;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.streaming.api.operators.co.CoBroadcastWithKeyedOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.KeyedBroadcastOperatorTestHarness;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;
import org.junit.jupiter.api.Test;

class EvaluateUsersTest {
  static final String CATALOGUE = "{\"expire_after\": \"1d\", \"stats\": ["
      + "{\"name\": \"events_total\", \"agg\": \"count\"},"
      + "{\"name\": \"sum_v\", \"agg\": \"sum\", \"field\": \"v\"},"
      + "{\"name\": \"buys\", \"agg\": \"count\", \"event\": \"buy\"}]}";
  static final String RULES = "[{\"id\": \"regular\", \"description\": \"two or more events\", \"when\": \"events_total >= 2\"}]";
  static final String BIG = "{\"id\":\"big\",\"description\":\"spent\",\"when\":\"sum_v != null && sum_v > 10.0\"}";
  static final long DAY = 86_400_000L;
  /** A multiple of the timer resolution (1d / 64), so that the timer is exactly ts + 1d. */
  static final long T0 = 1_350_000L * 1_259_000L;

  static KeyedBroadcastOperatorTestHarness<String, ParsedEvent, Row, Row> harness(boolean mirror) throws Exception {
    return harness(CATALOGUE, mirror);
  }

  static KeyedBroadcastOperatorTestHarness<String, ParsedEvent, Row, Row> harness(String catalogue, boolean mirror)
      throws Exception {
    EvaluateUsers fn = new EvaluateUsers(catalogue, RULES, "events", "rules", mirror);
    return new KeyedBroadcastOperatorTestHarness<>(new CoBroadcastWithKeyedOperator<>(fn, List.of(Outputs.RULE_CHANGES)),
        new UserKey.Selector(), Types.STRING, 128, 1, 0);
  }

  static KeyedBroadcastOperatorTestHarness<String, ParsedEvent, Row, Row> opened(OperatorSubtaskState restore)
      throws Exception {
    var h = harness(false);
    h.setup();
    h.initializeState(restore);
    h.open();
    return h;
  }

  static String event(String id, String tenant, String user, long ts, String name, double v) {
    return "{\"event_id\":\"" + id + "\",\"tenant\":\"" + tenant + "\",\"user_id\":\"" + user + "\",\"ts\":" + ts
        + ",\"name\":\"" + name + "\",\"values\":{\"v\":" + v + "}}";
  }

  static ParsedEvent parsed(String json, long offset) throws Exception {
    var e = Events.parse(b(json));
    return new ParsedEvent(UserKey.of(e.tenant(), e.userId()), b("k" + offset), b(json), 0, offset);
  }

  static <T> List<T> side(KeyedBroadcastOperatorTestHarness<?, ?, ?, ?> h, OutputTag<T> tag) {
    var q = h.getSideOutput(tag);
    return q == null ? new ArrayList<>() : q.stream().map(StreamRecord::getValue).collect(Collectors.toList());
  }

  static List<String> values(List<Row> rows) {
    return rows.stream().map(r -> r.getField(0) + " " + r.getField(1)).collect(Collectors.toList());
  }

  static Row rule(String id, String json, long offset) {
    return Row.of(id == null ? null : b(id), json == null ? null : b(json), 0, offset);
  }

  /** What the engine alone gives for the same events (Replay's way), with rules_version. */
  static List<String> engine(List<String> events, String rulesJson, long rulesVersion) throws Exception {
    Catalogue catalogue = Catalogue.parseJson(CATALOGUE);
    Evaluator evaluator = new Evaluator(catalogue, RuleSet.load("t", b(rulesJson), catalogue.names()));
    Map<String, byte[]> states = new HashMap<>();
    List<String> out = new ArrayList<>();
    for (String json : events) {
      var e = Events.parse(b(json));
      String key = UserKey.of(e.tenant(), e.userId());
      var p = evaluator.process(states.get(key), e);
      states.put(key, p.state());
      p.evaluation().put("rules_version", rulesVersion);
      out.add(e.userId() + " " + Json.render(p.evaluation()));
    }
    return out;
  }

  @Test
  void evaluationsAreTheEnginesAndTheMirrorHasTheEvent() throws Exception {
    List<String> events = List.of(event("e1", "default", "u1", T0, "view", 1.5), event("e2", "acme", "u1", T0 + 5, "buy", 20),
        event("e3", "default", "u1", T0 + 9, "buy", 9.25), event("e4", "default", "u2", T0 - 3, "view", 0.1),
        event("e5", "default", "u1", T0 + 1, "view", 1e300));
    try (var h = harness(true)) {
      h.open();
      long offset = 0;
      for (String json : events) h.processElement(parsed(json, offset++), 0);
      assertEquals(engine(events, RULES, 0), values(h.extractOutputValues()));
      List<Tuple2<String, String>> mirror = side(h, Outputs.MIRROR);
      assertEquals(5, mirror.size());
      assertEquals("{\"event_id\":\"e1\",\"user_id\":\"u1\",\"ts\":" + T0 + ",\"name\":\"view\",\"values\":{\"v\":1.5},"
          + "\"tenant\":\"default\"}", mirror.get(0).f0);
      assertEquals(h.extractOutputValues().get(0).getField(1), mirror.get(0).f1);
      assertTrue(mirror.get(4).f0.contains("\"v\":1e300"), mirror.get(4).f0);
      assertEquals(List.of(), side(h, Outputs.DEAD_LETTERS));
    }
  }

  @Test
  void ruleChangesFromTheBroadcastSide() throws Exception {
    try (var h = harness(false)) {
      h.open();
      h.processElement(parsed(event("e1", "default", "u1", T0, "buy", 50), 0), 0);
      h.processBroadcastElement(rule("big", BIG, 10), 0);                          // add: v1
      h.processElement(parsed(event("e2", "default", "u1", T0 + 1, "view", 0), 1), 0);
      h.processBroadcastElement(rule("big", BIG.replace("10.0", "100.0"), 11), 0); // change: v2
      h.processElement(parsed(event("e3", "default", "u1", T0 + 2, "view", 0), 2), 0);
      h.processBroadcastElement(rule("regular", null, 12), 0);                      // delete: v3
      h.processElement(parsed(event("e4", "default", "u1", T0 + 3, "view", 0), 3), 0);
      h.processBroadcastElement(rule("bad", "{\"id\":\"bad\"}", 13), 0);           // invalid: v4
      h.processBroadcastElement(rule("other", BIG, 14), 0);                         // key != id: v5
      h.processBroadcastElement(rule(null, BIG, 15), 0);                            // no key: v6
      h.processBroadcastElement(rule("ghost", "", 16), 0);                          // delete unknown: v7
      h.processElement(parsed(event("e5", "default", "u1", T0 + 4, "view", 0), 4), 0);
      List<String> out = values(h.extractOutputValues());
      assertTrue(out.get(0).endsWith("\"segments\":[],\"entered\":[],\"exited\":[],\"rules_version\":0}"), out.get(0));
      assertTrue(out.get(1).endsWith("\"segments\":[\"big\",\"regular\"],\"entered\":[\"big\",\"regular\"],\"exited\":[],\"rules_version\":1}"), out.get(1));
      assertTrue(out.get(2).endsWith("\"segments\":[\"regular\"],\"entered\":[],\"exited\":[\"big\"],\"rules_version\":2}"), out.get(2));
      assertTrue(out.get(3).endsWith("\"segments\":[],\"entered\":[],\"exited\":[\"regular\"],\"rules_version\":3}"), out.get(3));
      assertTrue(out.get(4).endsWith("\"segments\":[],\"entered\":[],\"exited\":[],\"rules_version\":7}"), out.get(4));
      List<Row> letters = side(h, Outputs.DEAD_LETTERS);
      assertEquals(3, letters.size());
      assertTrue(s((byte[]) letters.get(0).getField(1)).startsWith("{\"reason\":\"rule: "), s((byte[]) letters.get(0).getField(1)));
      assertTrue(s((byte[]) letters.get(0).getField(1)).contains("\"topic\":\"rules\",\"partition\":0,\"offset\":13,\"original_b64\":\""));
      assertTrue(s((byte[]) letters.get(1).getField(1)).startsWith(
          "{\"reason\":\"rule: record key 'other' does not match rule id 'big'\""), s((byte[]) letters.get(1).getField(1)));
      assertTrue(s((byte[]) letters.get(2).getField(1)).startsWith("{\"reason\":\"rule: " + EvaluateUsers.NO_KEY + "\""));
      var state = h.getBroadcastState(Outputs.RULE_CHANGES);
      assertEquals("7", state.get(Outputs.VERSION_KEY));
      assertEquals("", state.get("regular"));
      assertEquals("", state.get("ghost"));
      assertEquals(BIG.replace("10.0", "100.0"), state.get("big"));
    }
  }

  @Test
  void theRuleLogHasTheInitialRulesAndEveryRuleRecordWithItsVersion() throws Exception {
    try (var h = harness(false)) {
      h.open();
      h.processElement(parsed(event("e1", "default", "u1", T0, "buy", 50), 0), 0);
      h.processBroadcastElement(rule("big", BIG, 10), 0);                 // v1, accepted
      h.processBroadcastElement(rule("bad", "{\"id\":\"bad\"}", 11), 0);  // v2, refused
      h.processBroadcastElement(rule("big", null, 12), 0);                // v3, a deletion
      h.processElement(parsed(event("e2", "default", "u1", T0 + 1, "view", 0), 1), 0);
      List<String> log = values(side(h, Outputs.RULE_LOG));
      assertEquals(4, log.size(), log.toString());
      assertTrue(log.get(0).startsWith("0 {\"version\":0,\"initial\":\"["), log.get(0));
      assertTrue(log.get(1).startsWith("1 {\"version\":1,\"rule_id\":\"big\",\"value\":\"{")
          && log.get(1).endsWith("\"accepted\":true,\"reason\":null}"), log.get(1));
      assertTrue(log.get(2).startsWith("2 {\"version\":2,\"rule_id\":\"bad\",")
          && log.get(2).contains("\"accepted\":false,\"reason\":\"rule: "), log.get(2));
      assertEquals("3 {\"version\":3,\"rule_id\":\"big\",\"value\":null,\"accepted\":true,\"reason\":null}", log.get(3));
    }
  }

  @Test
  void stateRulesAndTimersSurviveASnapshot() throws Exception {
    OperatorSubtaskState snapshot;
    List<String> before;
    try (var h = harness(false)) {
      h.open();
      h.processBroadcastElement(rule("big", BIG, 0), 0);
      h.processElement(parsed(event("e1", "default", "u1", T0, "buy", 50), 0), 0);
      h.processElement(parsed(event("e2", "acme", "u1", T0, "buy", 1), 1), 0);
      before = values(h.extractOutputValues());
      snapshot = h.snapshot(1, 1);
    }
    try (var h = opened(snapshot)) {
      h.processElement(parsed(event("e3", "default", "u1", T0 + 1, "view", 0), 2), 0);
      String out = values(h.extractOutputValues()).get(0);
      assertTrue(out.contains("\"seq\":2,\"stats\":{\"events_total\":2,\"sum_v\":50.0,\"buys\":1}"), out);
      assertTrue(out.endsWith("\"segments\":[\"big\",\"regular\"],\"entered\":[\"regular\"],\"exited\":[],\"rules_version\":1}"), out);
      // the timers: acme/u1 due at T0 + 1d, default/u1 (moved by e3) at the next slot after T0 + 1 + 1d
      h.watermark(T0 + DAY);
      assertEquals(List.of("u1 {\"tenant\":\"acme\",\"user_id\":\"u1\",\"seq\":1,\"last_ts\":" + T0 + ",\"expired_at\":"
          + (T0 + DAY) + ",\"exited\":[]}"), values(side(h, Outputs.EXPIRATIONS)));
      assertEquals(2, before.size());
      // a snapshot of the restored harness, restored again: the rules version is still there
      snapshot = h.snapshot(2, 2);
    }
    try (var h = opened(snapshot)) {
      h.processBroadcastElement(rule("big", null, 1), 0);
      h.processElement(parsed(event("e4", "default", "u1", T0 + 2, "view", 0), 3), 0);
      String out = values(h.extractOutputValues()).get(0);
      assertTrue(out.contains("\"seq\":3,"), out);
      assertTrue(out.endsWith("\"segments\":[\"regular\"],\"entered\":[],\"exited\":[\"big\"],\"rules_version\":2}"), out);
      h.watermark(T0 + 2 + DAY + DAY / 64);
      assertEquals(1, side(h, Outputs.EXPIRATIONS).size());
    }
  }

  @Test
  void expiryFiresAtTheRightWatermark() throws Exception {
    try (var h = harness(false)) {
      h.open();
      h.processElement(parsed(event("e1", "default", "u1", T0, "buy", 50), 0), 0);
      h.processElement(parsed(event("e2", "default", "u1", T0 + 1, "buy", 1), 1), 0);  // timer: T0 + 1d + 1 slot
      h.watermark(T0 + DAY);
      assertEquals(List.of(), side(h, Outputs.EXPIRATIONS));
      long due = T0 + DAY + DAY / 64;
      h.watermark(due - 1);
      assertEquals(List.of(), side(h, Outputs.EXPIRATIONS));
      h.watermark(due);
      assertEquals(List.of("u1 {\"tenant\":\"default\",\"user_id\":\"u1\",\"seq\":2,\"last_ts\":" + (T0 + 1)
          + ",\"expired_at\":" + (T0 + 1 + DAY) + ",\"exited\":[\"regular\"]}"), values(side(h, Outputs.EXPIRATIONS)));
      // the next event starts a new life (seq goes on)
      h.processElement(parsed(event("e3", "default", "u1", due + 5, "view", 0), 2), 0);
      String out = values(h.extractOutputValues()).get(2);
      assertTrue(out.contains("\"seq\":3,\"stats\":{\"events_total\":1,"), out);
      // end of a bounded input: every timer fires, but nobody expires
      h.watermark(Long.MAX_VALUE);
      assertEquals(1, side(h, Outputs.EXPIRATIONS).size());
    }
  }

  @Test
  void aPoisonRecordDoesNotThrow() throws Exception {
    try (var h = harness(false)) {
      h.open();
      h.processElement(new ParsedEvent(UserKey.of("default", "u1"), b("k"), b("{not json"), 3, 77L), 0);
      h.processElement(new ParsedEvent(UserKey.of("default", "u1"), null, null, null, null), 0);
      h.processBroadcastElement(Row.of("a string key", 42, "x", null), 0);
      h.processElement(parsed(event("e1", "default", "u1", T0, "buy", 50), 0), 0);
      List<Row> letters = side(h, Outputs.DEAD_LETTERS);
      assertEquals(3, letters.size());
      assertEquals("{\"reason\":\"internal: io.segstream.engine.InvalidEvent: not UTF-8 JSON: JSON is malformed: "
          + "object keys must be strings (byte 1)\",\"topic\":\"events\",\"partition\":3,\"offset\":77,"
          + "\"original_b64\":\"e25vdCBqc29u\"}", s((byte[]) letters.get(0).getField(1)));
      assertTrue(s((byte[]) letters.get(2).getField(1)).startsWith("{\"reason\":\"internal: java.lang.ClassCastException"));
      // the job goes on: the next good event is evaluated, and the bad rule record counted a version
      String out = values(h.extractOutputValues()).get(0);
      assertTrue(out.contains("\"seq\":1,") && out.endsWith("\"rules_version\":1}"), out);
    }
  }

  @Test
  void invalidConfigurationFailsOnTheClient() {
    assertThrows(IllegalArgumentException.class, () -> new EvaluateUsers(CATALOGUE, "[{\"id\": \"x\"}]", "e", "r", false));
    assertNotNull(new EvaluateUsers(CATALOGUE, "[]", "e", "r", false));
  }

  @Test
  void anEventNamingAReplyTopicIsAnsweredThereWithItsEvaluation() throws Exception {
    try (var h = harness(false)) {
      h.open();
      String e1 = event("e1", "acme", "u1", T0, "view", 1);
      var p = parsed(e1, 0);
      p.replyTo = "segstream-reply-x";
      h.processElement(p, T0);
      h.processElement(parsed(event("e2", "acme", "u1", T0 + 1, "view", 1), 1), T0 + 1);
      List<Row> replies = side(h, Outputs.REPLIES);
      assertEquals(1, replies.size());
      assertEquals("segstream-reply-x", replies.get(0).getField(0));
      assertEquals("e1", replies.get(0).getField(1));
      assertEquals(h.extractOutputValues().get(0).getField(1), replies.get(0).getField(2));
    }
  }

  @Test
  void aRetryIsAnsweredWithTheFirstReceiptAndChangesNothingEvenAfterARestore() throws Exception {
    String catalogue = CATALOGUE.replace("{\"expire_after\"", "{\"dedup_events\": 4, \"dedup_horizon\": \"1h\", \"expire_after\"");
    OperatorSubtaskState snapshot;
    String first;
    try (var h = harness(catalogue, true)) {
      h.open();
      var original = parsed(event("e1", "acme", "u1", T0, "buy", 20), 0);
      original.replyTo = "segstream-reply-a";
      h.processElement(original, T0);
      h.processBroadcastElement(rule("big", BIG, 0), 0);  // rules_version 1 from here on
      // The retry: another ts and value (the first one wins), through another front.
      var retry = parsed(event("e1", "acme", "u1", T0 + 5_000, "buy", 99), 1);
      retry.replyTo = "segstream-reply-b";
      h.processElement(retry, T0 + 5_000);
      h.processElement(parsed(event("e1", "acme", "u1", T0 + 6_000, "buy", 99), 2), T0 + 6_000);  // no reply topic
      List<Row> evaluations = h.extractOutputValues();
      assertEquals(1, evaluations.size(), "one evaluation for the event, none for its retries");
      first = (String) evaluations.get(0).getField(1);
      assertTrue(first.contains("\"seq\":1,") && first.endsWith("\"rules_version\":0}"), first);
      List<Row> replies = side(h, Outputs.REPLIES);
      assertEquals(List.of("segstream-reply-a e1", "segstream-reply-b e1"), values(replies));
      assertEquals(first, replies.get(0).getField(2));
      assertEquals(first, replies.get(1).getField(2), "the same receipt, rules_version of the first included");
      assertEquals(1, side(h, Outputs.MIRROR).size(), "no second Bigtable row");
      assertEquals(List.of(), side(h, Outputs.DEAD_LETTERS), "a retry is not bad input");
      snapshot = h.snapshot(1, 1);
    }
    try (var h = harness(catalogue, false)) {
      h.setup();
      h.initializeState(snapshot);
      h.open();
      var retry = parsed(event("e1", "acme", "u1", T0, "buy", 20), 3);
      retry.replyTo = "segstream-reply-a";
      h.processElement(retry, T0);
      h.processElement(parsed(event("e2", "acme", "u1", T0 + 1, "view", 0), 4), T0 + 1);
      assertEquals(first, side(h, Outputs.REPLIES).get(0).getField(2), "remembered across a restore");
      String next = values(h.extractOutputValues()).get(0);
      assertTrue(next.contains("\"seq\":2,\"stats\":{\"events_total\":2,\"sum_v\":20.0,\"buys\":1}"), next);
    }
  }

  @Test
  void repliesGoOnlyToTopicsWithThePrefix() {
    assertTrue(ReplySink.Topics.allowed("segstream-reply-", "segstream-reply-a1"));
    assertTrue(!ReplySink.Topics.allowed("segstream-reply-", "evaluations"));
    assertTrue(!ReplySink.Topics.allowed("segstream-reply-", "segstream-reply-a/b"));
    assertTrue(!ReplySink.Topics.allowed("segstream-reply-", "segstream-reply-" + "x".repeat(240)));
  }

  @Test
  void repliesGoOnlyToTopicsThatExistListedAgainWhenDue() {
    var topics = new ReplySink.Topics("r-", "unused:9092", "");
    var lists = new java.util.concurrent.atomic.AtomicInteger();
    java.util.function.Supplier<java.util.Set<String>> lister = () -> {
      lists.incrementAndGet();
      return lists.get() < 3 ? java.util.Set.of("r-a") : java.util.Set.of("r-a", "r-b");
    };
    assertTrue(topics.exists("r-a", 0, lister));            // first use: listed
    assertTrue(!topics.exists("r-b", 10, lister));          // unknown, but listed < 1 s ago
    assertEquals(1, lists.get());
    assertTrue(!topics.exists("r-b", 1_010, lister));       // listed again: still missing
    assertTrue(topics.exists("r-b", 2_020, lister));        // and again: created meanwhile
    assertTrue(topics.exists("r-a", 2_030, lister));
    assertEquals(3, lists.get());
    assertTrue(topics.exists("r-a", 2_020 + ReplySink.Topics.REFRESH_MS, () -> null));  // unreachable: keep the list
  }
}
