package io.segstream.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.segstream.engine.rules.RuleError;
import io.segstream.engine.rules.RuleSet;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** De-duplication by event_id (docs/semantics.md, "Retries") and the state it adds (format 2). */
class DedupTest {
  static final String STATS = "\"expire_after\": \"1d\", \"stats\": [{\"name\": \"n\", \"agg\": \"count\"},"
      + "{\"name\": \"sum_x\", \"agg\": \"sum\", \"field\": \"x\"},{\"name\": \"last_s\", \"agg\": \"last\", \"field\": \"s\"},"
      + "{\"name\": \"d\", \"agg\": \"distinct\", \"field\": \"x\"},"
      + "{\"name\": \"x_1h\", \"agg\": \"sum\", \"field\": \"x\", \"window\": \"1h\", \"resolution\": \"10m\"}]";
  static final String RULES = "[{\"id\":\"big\",\"description\":\"d\",\"when\":\"sum_x > 10\"}]";

  /** The state of a user after three events (one with a distinct sketch value, a windowed sum, a
   * late event), as the release before de-duplication (format 1) wrote it with {@link #STATS}. */
  static final String OLD_STATE = "AQMBwLlVBTwoPEstq/Q7TrlA6jCaNq3aFmZ+CQEBBgkBAkAnAAAAAAAACQEDBPCfmIAJAgEGBhhgy3dJA6TYyMG16WaoQSs7qYWritAIKMYJAgJAJwAAAAAAAAgCAAJAEAAAAAAAAAICQB4AAAAAAAABAwNiaWcBAQDDwODSgOUbFg==";
  /** What that release answered to the next event (e4, ts 3000, x 1), and the state it wrote. */
  static final String OLD_NEXT_EVALUATION = "{\"event_id\":\"e4\",\"tenant\":\"default\",\"user_id\":\"u\",\"ts\":3000,\"seq\":4,\"stats\":{\"n\":4,\"sum_x\":12.5,\"last_s\":\"\ud83d\ude00\",\"d\":4,\"x_1h\":12.5},\"segments\":[\"big\"],\"entered\":[],\"exited\":[]}";
  static final String OLD_NEXT_STATE = "AQQBwLlVBTwoPEstq/Q7TrlA6jCaNq3aFmZ+CQEBCAkBAkApAAAAAAAACQEDBPCfmIAJAgEIBiBgy3dJA6TYyMG16WaoQSs7qYWritAIKMbBaVKWC8sS/QkCAkApAAAAAAAACAIAAkAUAAAAAAAAAgJAHgAAAAAAAAEDA2JpZwEBAMPA4NKA5RsW";

  static Evaluator evaluator(String dedup) throws RuleError {
    Catalogue c = Catalogue.parseJson("{" + STATS + dedup + "}");
    return new Evaluator(c, RuleSet.load("t", RULES.getBytes(StandardCharsets.UTF_8), c.names()));
  }

  static Event parse(String id, long ts, String values) throws InvalidEvent {
    return Events.parse(("{\"event_id\":\"" + id + "\",\"user_id\":\"u\",\"ts\":" + ts + ",\"name\":\"a\",\"values\":"
        + values + "}").getBytes(StandardCharsets.UTF_8));
  }

  @Test
  void stateOfTheReleaseBeforeDedupReadsAndContinuesAsItWould() throws Exception {
    byte[] old = Base64.getDecoder().decode(OLD_STATE);
    UserState user = UserState.decode(old);
    assertEquals(3, user.seq);
    assertEquals(List.of(), user.recent);
    assertArrayEquals(old, user.encode(), "nothing remembered: written as format 1, byte for byte");

    Evaluator.Processed p = evaluator("").process(old, parse("e4", 3000, "{\"x\":1}"));
    assertEquals(OLD_NEXT_EVALUATION, p.json());
    assertArrayEquals(Base64.getDecoder().decode(OLD_NEXT_STATE), p.state(), "without dedup_events: as before");

    Evaluator dedup = evaluator(", \"dedup_events\": 8, \"dedup_horizon\": \"1h\"");
    Evaluator.Processed q = dedup.process(old, parse("e4", 3000, "{\"x\":1}"), Map.of("rules_version", 5L));
    assertEquals(OLD_NEXT_EVALUATION.substring(0, OLD_NEXT_EVALUATION.length() - 1)
        + ",\"rules_version\":5}", q.json());
    assertEquals(UserState.FORMAT_WITH_RECENT, q.state()[0]);
    UserState after = UserState.decode(q.state());
    assertEquals(1, after.recent.size());
    assertEquals("e4", after.recent.get(0).eventId());
    assertEquals(700_000L, after.recent.get(0).stamp(), "the greatest ts when it was processed");
    assertArrayEquals(q.state(), after.encode());
  }

  @Test
  void aRetryChangesNothingAndGetsTheFirstReceipt() throws Exception {
    Evaluator e = evaluator(", \"dedup_events\": 2, \"dedup_horizon\": \"10s\"");
    Evaluator.Processed first = e.process(null, parse("e1", 1000, "{\"x\":20}"), Map.of("rules_version", 1L));
    Evaluator.Processed second = e.process(first.state(), parse("e2", 2000, "{\"x\":1}"), Map.of("rules_version", 2L));
    Evaluator.Processed retry = e.process(second.state(), parse("e1", 9999, "{\"x\":99}"), Map.of("rules_version", 3L));
    assertTrue(retry.duplicate());
    assertSame(second.state(), retry.state());
    assertEquals(first.json(), retry.json());
    assertNull(retry.evaluation());
    assertNull(retry.timer());
    assertTrue(first.json().contains("\"seq\":1,") && first.json().endsWith("\"entered\":[\"big\"],\"exited\":[],\"rules_version\":1}"),
        first.json());

    // Two remembered: a third event forgets e1; beyond the horizon (10 s of the user's greatest ts) e2 goes too.
    Evaluator.Processed third = e.process(second.state(), parse("e3", 2000, "{}"));
    assertFalse(e.process(third.state(), parse("e1", 1, "{}")).duplicate());
    assertTrue(e.process(third.state(), parse("e2", 1, "{}")).duplicate());
    Evaluator.Processed exactly = e.process(third.state(), parse("e4", 12_000, "{}"));
    assertTrue(e.process(exactly.state(), parse("e3", 1, "{}")).duplicate(), "exactly the horizon: kept");
    Evaluator.Processed beyond = e.process(exactly.state(), parse("e5", 12_001, "{}"));
    assertFalse(e.process(beyond.state(), parse("e3", 1, "{}")).duplicate());
    assertEquals(List.of("e4", "e5"), UserState.decode(beyond.state()).recent.stream().map(UserState.Recent::eventId).toList());
  }

  @Test
  void withoutDedupEventsAnEventIdIsNotRemembered() throws Exception {
    Evaluator e = evaluator("");
    Evaluator.Processed p = e.process(null, parse("e1", 1000, "{}"));
    Evaluator.Processed again = e.process(p.state(), parse("e1", 1000, "{}"));
    assertFalse(again.duplicate());
    assertEquals(2L, again.evaluation().get("seq"));
    assertEquals(UserState.FORMAT_VERSION, again.state()[0]);
  }

  @Test
  void loweredBoundsHoldAtOnceAndTurnedOffNothingIsRemembered() throws Exception {
    Evaluator four = evaluator(", \"dedup_events\": 4");
    byte[] state = null;
    for (int i = 0; i < 4; i++) state = four.process(state, parse("e" + i, i, "{}")).state();
    assertTrue(four.process(state, parse("e0", 0, "{}")).duplicate());
    Evaluator two = evaluator(", \"dedup_events\": 2");
    assertFalse(two.process(state, parse("e1", 0, "{}")).duplicate());
    assertTrue(two.process(state, parse("e2", 0, "{}")).duplicate());
    Evaluator.Processed off = evaluator("").process(state, parse("e3", 0, "{}"));
    assertFalse(off.duplicate());
    assertEquals(5L, off.evaluation().get("seq"));
    assertEquals(UserState.FORMAT_VERSION, off.state()[0], "nothing remembered: format 1 again");
  }

  @Test
  void anExpiredUserRemembersNothing() throws Exception {
    Evaluator e = evaluator(", \"dedup_events\": 4");
    Evaluator.Processed p = e.process(null, parse("e1", 1000, "{}"));
    assertTrue(e.process(p.state(), parse("e1", 10 * 86_400_000L, "{}")).duplicate(), "no timer yet: a retry");
    Evaluator.Expired x = e.expire(p.state(), p.timer(), "default", "u");
    assertEquals(List.of(), UserState.decode(x.state()).recent);
    assertFalse(e.process(x.state(), parse("e1", 1000, "{}")).duplicate());
  }
}
