package io.segstream.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.segstream.engine.rules.Rules;
import io.segstream.engine.rules.TenantRules;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class EngineTest {
  static final String CAT = "{\"expire_after\":\"1d\",\"stats\":[{\"name\":\"n\",\"agg\":\"count\"},"
      + "{\"name\":\"s\",\"agg\":\"sum\",\"field\":\"v\"},{\"name\":\"w\",\"agg\":\"sum\",\"field\":\"v\",\"window\":\"1h\"}]}";

  static Event ev(long ts, Object v) {
    Map<String, Object> values = new LinkedHashMap<>();
    values.put("v", v);
    return new Event("e" + ts, "default", "u", ts, "x", values);
  }

  @Test
  void numerics() {
    assertEquals(Long.MAX_VALUE, Num.add(Long.MAX_VALUE - 1, 1L));
    assertEquals(9.223372036854775808E18, Num.add(Long.MAX_VALUE, 1L));  // fit_int
    assertEquals("0.0", Json.render(Num.sum(List.of(-0.0))));  // 0 + -0.0 in Python's sum()
    assertEquals(0.1 + 0.2, Num.sum(List.of(0.1, 0.2)));
    // int / int correctly rounded beyond 2^53 (Python's true division), (double) a / b is not
    assertEquals(new java.math.BigDecimal("9007199254740993").divide(java.math.BigDecimal.valueOf(3),
        java.math.MathContext.DECIMAL128).doubleValue(), Num.div(9007199254740993L, 3));
    assertEquals(1, Num.compare(9007199254740993L, 9007199254740992.0));  // exact across int and float
    assertEquals("3", Json.render(3L));
    assertEquals("3.0", Json.render(3.0));
    assertEquals("1e23", Json.render(1e23));
    assertEquals("null", Json.render(Double.NaN));
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("a", "é\n\u0001");
    m.put("b", java.util.Arrays.asList(1L, 2.5, null, true));
    assertEquals("{\"a\":\"é\\n\\u0001\",\"b\":[1,2.5,null,true]}", Json.render(m));
  }

  @Test
  void stateRoundTripsAndRefusesOtherVersions() {
    Catalogue cat = Catalogue.parseJson(CAT);
    Evaluator e = new Evaluator(cat, new NoRules());
    byte[] state = null;
    for (int i = 0; i < 50; i++) {
      Evaluator.Processed p = e.process(state, ev(1_000_000L * i, i % 3 == 0 ? (Object) (double) i : (Object) (long) i));
      state = p.state();
      assertArrayEquals(state, UserState.decode(state).encode());
    }
    byte[] other = state.clone();
    other[0] = 3;
    assertEquals("user state format 3 is not 1 or 2",
        assertThrows(IllegalArgumentException.class, () -> UserState.decode(other)).getMessage());
  }

  @Test
  void timersAndExpiry() {
    Evaluator e = new Evaluator(Catalogue.parseJson(CAT), new NoRules());
    Evaluator.Processed p = e.process(null, ev(1000, 1L));
    long day = 86_400_000L, slot = day / 64;
    assertEquals(((1000 + day + slot - 1) / slot) * slot, p.timer());
    assertNull(e.process(p.state(), ev(1001, 1L)).timer());  // same slot: no new timer
    assertNull(e.expire(p.state(), 1000 + day - 1, "default", "u"));
    Evaluator.Expired x = e.expire(p.state(), 1000 + day, "default", "u");
    assertEquals("{\"tenant\":\"default\",\"user_id\":\"u\",\"seq\":1,\"last_ts\":1000,\"expired_at\":86401000,\"exited\":[]}",
        Json.render(x.expiry()));
    Evaluator.Processed next = e.process(x.state(), ev(5, 2L));
    assertNull(next.expiry());
    assertEquals(2L, next.evaluation().get("seq"));
    assertEquals(1L, ((Map<?, ?>) next.evaluation().get("stats")).get("n"));
  }

  /** Two rules: r0 reads stat n, r1 reads stat s; masks as TenantRules gives them. */
  static final class TwoRules implements Rules {
    int runs;
    int errors;
    final List<BitSet> asked = new ArrayList<>();

    @Override
    public TenantRules forTenant(String tenant) {
      return new TenantRules() {
        public long fingerprint() { return 42; }
        public BitSet allMask() { return bits(0, 1); }
        public BitSet eventMask() { return new BitSet(); }
        public BitSet guardedMask() { return new BitSet(); }
        public BitSet guardedOn(String name) { return new BitSet(); }
        public BitSet statMask(int i) { return i == 0 ? bits(0) : i == 1 ? bits(1) : new BitSet(); }
        public Result evaluate(BitSet run, Map<String, Object> stats, Event event) {
          runs++;
          asked.add((BitSet) run.clone());
          BitSet m = new BitSet();
          BitSet err = new BitSet();
          if (run.get(0) && (Long) stats.get("n") >= 2) m.set(0);
          if (run.get(1)) err.set(1);
          return new Result(m, err);
        }
        public List<String> idsOf(BitSet mask) {
          List<String> ids = new ArrayList<>();
          for (int i = mask.nextSetBit(0); i >= 0; i = mask.nextSetBit(i + 1)) ids.add("r" + i);
          return ids;
        }
      };
    }

    @Override
    public void countErrors(int failed) {
      errors += failed;
    }
  }

  static BitSet bits(int... i) {
    BitSet b = new BitSet();
    for (int k : i) b.set(k);
    return b;
  }

  @Test
  void ruleResultsAreReused() {
    TwoRules rules = new TwoRules();
    Evaluator e = new Evaluator(Catalogue.parseJson(CAT), rules);
    Evaluator.Processed p1 = e.process(null, ev(1, 1L));
    assertEquals(bits(0, 1), rules.asked.get(0));  // first event: everything
    Evaluator.Processed p2 = e.process(p1.state(), ev(2, "not a number"));  // s unchanged: only r0 runs
    assertEquals(bits(0), rules.asked.get(1));
    assertEquals(List.of("r0"), p2.evaluation().get("segments"));
    assertEquals(List.of("r0"), p2.evaluation().get("entered"));
    assertEquals(2, rules.errors);  // r1's kept failure counts again
  }

  @Test
  void catalogueEvolutionKeepsUnchangedStats() {
    Catalogue a = Catalogue.parseJson(CAT);
    Catalogue b = Catalogue.parseJson("{\"stats\":[{\"name\":\"s\",\"agg\":\"sum\",\"field\":\"v\"},"
        + "{\"name\":\"n\",\"agg\":\"count\",\"event\":\"x\"}]}");
    byte[] state = new Evaluator(a, new NoRules()).process(null, ev(1, 5L)).state();
    Map<?, ?> stats = (Map<?, ?>) new Evaluator(b, new NoRules()).process(state, ev(2, 1L)).evaluation().get("stats");
    assertEquals(6L, stats.get("s"));  // kept
    assertEquals(1L, stats.get("n"));  // definition changed: restarted
  }

  @Test
  void durations() {
    assertEquals(3_600_000L, Catalogue.parseDuration("60m"));
    assertEquals(3L * 86_400_000L, Catalogue.parseDuration("\u0663d"));  // Python's \d is Unicode
    assertThrows(IllegalArgumentException.class, () -> Catalogue.parseDuration("99999999999999999999d"));
    assertEquals(new BigInteger("1"), BigInteger.ONE);
  }

  @Test
  void longTimerArithmeticAgreesWithBigInteger() {
    java.util.SplittableRandom random = new java.util.SplittableRandom(3);
    for (String after : new String[] {"1d", "90d", "1s", "7d"}) {
      Evaluator e = new Evaluator(Catalogue.parseJson(CAT.replace("\"1d\"", "\"" + after + "\"")), new NoRules());
      long[] edges = {0, 1, -1, Long.MAX_VALUE, Long.MIN_VALUE, Long.MAX_VALUE - 86_400_000L, Long.MIN_VALUE + 1,
          Events.MAX_TS, -Events.MAX_TS, 1_795_771_889_969L};
      for (long ts : edges) assertEquals(e.bigTimer(ts), e.timer(ts), () -> after + " " + ts);
      for (int i = 0; i < 100_000; i++) {
        long ts = i % 2 == 0 ? random.nextLong() : random.nextLong(-Events.MAX_TS, Events.MAX_TS);
        assertEquals(e.bigTimer(ts), e.timer(ts), () -> after + " " + ts);
      }
    }
  }
}
