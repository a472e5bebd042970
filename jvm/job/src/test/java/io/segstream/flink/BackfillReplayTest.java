package io.segstream.flink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.segstream.engine.Catalogue;
import io.segstream.engine.Evaluator;
import io.segstream.engine.Events;
import io.segstream.engine.UserState;
import io.segstream.engine.rules.RuleSet;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class BackfillReplayTest {
  static final String V1 = "{\"expire_after\": \"1d\", \"dedup_events\": 8, \"stats\": ["
      + "{\"name\": \"events_total\", \"agg\": \"count\"},"
      + "{\"name\": \"sum_v\", \"agg\": \"sum\", \"field\": \"v\"},"
      + "{\"name\": \"v_1h\", \"agg\": \"sum\", \"field\": \"v\", \"window\": \"1h\", \"resolution\": \"5m\"}]}";
  /** V1 with a stat added and a window changed. */
  static final String V2 = "{\"expire_after\": \"1d\", \"dedup_events\": 8, \"stats\": ["
      + "{\"name\": \"events_total\", \"agg\": \"count\"},"
      + "{\"name\": \"sum_v\", \"agg\": \"sum\", \"field\": \"v\"},"
      + "{\"name\": \"v_1h\", \"agg\": \"sum\", \"field\": \"v\", \"window\": \"2h\", \"resolution\": \"5m\"},"
      + "{\"name\": \"buys\", \"agg\": \"count\", \"event\": \"buy\"}]}";
  static final String RULES_V1 = "[{\"id\": \"big\", \"description\": \"spent\", \"when\": \"sum_v != null && sum_v > 10.0\"}]";
  static final String RULES_V2 = "[{\"id\": \"big\", \"description\": \"spent\", \"when\": \"sum_v != null && sum_v > 10.0\"},"
      + "{\"id\": \"buyer\", \"description\": \"bought twice\", \"when\": \"buys >= 2\"}]";
  static final long T0 = 1_700_000_000_000L;
  static final long MIN = 60_000L;

  static final List<String> EVENTS = List.of(
      EvaluateUsersTest.event("e1", "acme", "u", T0, "buy", 4),
      EvaluateUsersTest.event("e2", "acme", "u", T0 + 50 * MIN, "view", 1),
      EvaluateUsersTest.event("e3", "acme", "u", T0 + 20 * MIN, "buy", 3),  // late: counts where it arrives
      EvaluateUsersTest.event("e4", "acme", "u", T0 + 90 * MIN, "view", 2),
      EvaluateUsersTest.event("e5", "acme", "u", T0 + 100 * MIN, "buy", 5),
      EvaluateUsersTest.event("e6", "acme", "u", T0 + 200 * MIN, "view", 1));

  static Evaluator evaluator(String catalogue, String rules) throws Exception {
    Catalogue c = Catalogue.parseJson(catalogue);
    return new Evaluator(c, RuleSet.load("test", rules.getBytes(StandardCharsets.UTF_8), c.names()));
  }

  /** The live engine's state after the first n events, and each evaluation. */
  static byte[] live(Evaluator e, int n, List<Map<String, Object>> evaluations) throws Exception {
    byte[] blob = null;
    for (int i = 0; i < n; i++) {
      Evaluator.Processed p = e.process(blob, Events.parse(EVENTS.get(i).getBytes(StandardCharsets.UTF_8)));
      blob = p.state();
      if (evaluations != null) evaluations.add(p.evaluation());
    }
    return blob;
  }

  static BackfillReplay.Row row(int seq) {
    return new BackfillReplay.Row((long) seq, EVENTS.get(seq - 1).getBytes(StandardCharsets.UTF_8));
  }

  @Test
  void theRebuiltStateContinuesAsIfTheNewCatalogueHadAlwaysBeenLive() throws Exception {
    List<Map<String, Object>> before = new ArrayList<>();
    byte[] live = live(evaluator(V1, RULES_V1), 4, before);
    // Newest first as Bigtable returns them, a copy of seq 2 (an at-least-once rewrite), and seq 5:
    // written after the savepoint's cut, it must not count (the job evaluates it again after the restart).
    List<BackfillReplay.Row> rows = List.of(row(5), row(4), row(3), row(2), row(2), row(1));
    BackfillReplay.Result r = new BackfillReplay(V2).rebuild(live, rows);
    assertEquals(BackfillReplay.Outcome.REBUILT, r.outcome());
    assertEquals(4, r.replayed());

    Evaluator v2 = evaluator(V2, RULES_V2);
    List<Map<String, Object>> reference = new ArrayList<>();
    live(v2, 6, reference);
    byte[] blob = r.state();
    for (int i = 4; i < 6; i++) {
      Evaluator.Processed p = v2.process(blob, Events.parse(EVENTS.get(i).getBytes(StandardCharsets.UTF_8)));
      blob = p.state();
      assertEquals(reference.get(i).get("seq"), p.evaluation().get("seq"));
      assertEquals(reference.get(i).get("stats"), p.evaluation().get("stats"), "event " + (i + 1));
      assertEquals(reference.get(i).get("segments"), p.evaluation().get("segments"), "event " + (i + 1));
    }
  }

  @Test
  void theNextEventRerunsEveryRuleAndAnnouncesAgainstTheSegmentsLastAnnounced() throws Exception {
    List<Map<String, Object>> before = new ArrayList<>();
    byte[] live = live(evaluator(V1, RULES_V1), 4, before);
    assertEquals(List.of(), before.get(3).get("segments"));  // sum_v = 10.0: not big yet
    UserState rebuilt = UserState.decode(new BackfillReplay(V2).rebuild(live, List.of(row(1), row(2), row(3), row(4))).state());
    assertEquals(0L, rebuilt.rulesFp);
    // e5 (a buy, v 5): "buyer" is true from the backfilled buys (e1, e3 and e5), "big" from sum_v.
    Evaluator.Processed p = evaluator(V2, RULES_V2).process(rebuilt.encode(), Events.parse(EVENTS.get(4).getBytes(StandardCharsets.UTF_8)));
    assertEquals(List.of("big", "buyer"), p.evaluation().get("segments"));
    assertEquals(List.of("big", "buyer"), p.evaluation().get("entered"));
    assertEquals(3L, ((Map<?, ?>) p.evaluation().get("stats")).get("buys"));
  }

  @Test
  void liveValuesOfUnchangedStatsAreKeptWhenTheHistoryIsPastRetention() throws Exception {
    byte[] live = live(evaluator(V1, RULES_V1), 4, null);
    BackfillReplay.Result r = new BackfillReplay(V2).rebuild(live, List.of(row(4), row(3)));
    assertEquals(BackfillReplay.Outcome.PARTIAL, r.outcome());
    UserState s = UserState.decode(r.state());
    UserState l = UserState.decode(live);
    assertEquals(4L, s.seq);
    assertEquals(l.maxTs, s.maxTs);
    assertEquals(4L, s.stats.get(0)[0]);  // events_total: the live value, over the whole history
    assertEquals(10.0, s.stats.get(1)[0]);  // sum_v: the live value
    assertEquals(1L, s.stats.get(3)[0]);  // buys: the retained rows only (e3)
    assertEquals(List.of(4, 4), List.of(l.recent.size(), s.recent.size()));
  }

  @Test
  void retryReceiptsSurviveTheBackfill() throws Exception {
    byte[] live = live(evaluator(V1, RULES_V1), 4, null);
    byte[] rebuilt = new BackfillReplay(V2).rebuild(live, List.of(row(1), row(2), row(3), row(4))).state();
    Evaluator.Processed retry = evaluator(V2, RULES_V2).process(rebuilt, Events.parse(EVENTS.get(1).getBytes(StandardCharsets.UTF_8)));
    assertTrue(retry.duplicate());
    assertTrue(retry.json().contains("\"event_id\":\"e2\"") && retry.json().contains("\"seq\":2"), retry.json());
  }

  @Test
  void statesThatNeedNothingAreLeftByteForByte() throws Exception {
    Evaluator v1 = evaluator(V1, RULES_V1);
    byte[] live = live(v1, 4, null);
    BackfillReplay.Result same = new BackfillReplay(V1).rebuild(live, List.of(row(1)));
    assertEquals(BackfillReplay.Outcome.UNCHANGED, same.outcome());
    assertArrayEquals(live, same.state());

    BackfillReplay.Result none = new BackfillReplay(V2).rebuild(live, List.of(row(5)));
    assertEquals(BackfillReplay.Outcome.NO_HISTORY, none.outcome());
    assertArrayEquals(live, none.state());

    Evaluator.Expired expired = v1.expire(live, T0 + 90 * MIN + 86_400_000L, "acme", "u");
    assertNotNull(expired);
    BackfillReplay.Result tomb = new BackfillReplay(V2).rebuild(expired.state(), List.of(row(1)));
    assertEquals(BackfillReplay.Outcome.EXPIRED, tomb.outcome());
    assertArrayEquals(expired.state(), tomb.state());
  }

  @Test
  void theNewCataloguesExpiryDeadlineIsReturnedForATimer() throws Exception {
    byte[] live = live(evaluator(V1, RULES_V1), 4, null);
    BackfillReplay.Result r = new BackfillReplay(V2.replace("\"1d\"", "\"2h\"")).rebuild(live,
        List.of(row(1), row(2), row(3), row(4)));
    assertNotNull(r.timer());
    assertTrue(r.timer() >= T0 + 90 * MIN + 2 * 60 * MIN, "deadline " + r.timer());
  }
}
