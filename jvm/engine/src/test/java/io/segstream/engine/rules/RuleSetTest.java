package io.segstream.engine.rules;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.segstream.engine.Event;
import java.nio.charset.StandardCharsets;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class RuleSetTest {
  static final List<String> STATS = List.of("visits", "avg_spend", "sessions");

  static String rule(String id, String when) {
    return "{\"id\": \"" + id + "\", \"description\": \"d\", \"when\": \"" + when.replace("\"", "\\\"") + "\"}";
  }

  static String rule(String id, String tenant, String when) {
    return "{\"id\": \"" + id + "\", \"tenant\": \"" + tenant + "\", \"description\": \"d\", \"when\": \""
        + when.replace("\"", "\\\"") + "\"}";
  }

  static Event event(String name, Map<String, Object> values) {
    return new Event("e1", "acme", "u1", 1_700_000_000_000L, name, values);
  }

  static BitSet bits(int... ks) {
    BitSet b = new BitSet();
    for (int k : ks) b.set(k);
    return b;
  }

  @Test
  void applyChangeAddsReplacesAndDeletes() {
    RuleSet set = new RuleSet(STATS);
    assertNull(set.applyChange("b", rule("b", "visits > 1")));
    assertNull(set.applyChange("a", rule("a", "sessions >= 3")));
    TenantRules view = set.forTenant("acme");
    assertSame(view, set.forTenant("acme"));  // cached until the next change
    assertEquals(List.of("a", "b"), view.idsOf(view.allMask()));
    assertNull(set.applyChange("a", rule("a", "sessions >= 4")));
    TenantRules replaced = set.forTenant("acme");
    assertNotSame(view, replaced);
    assertNotEquals(view.fingerprint(), replaced.fingerprint());
    assertNull(set.applyChange("a", (byte[]) null));
    assertEquals(List.of("b"), set.forTenant("acme").idsOf(set.forTenant("acme").allMask()));
    assertNull(set.applyChange("b", new byte[0]));  // an empty value is a tombstone too
    assertNull(set.applyChange("never-seen", (byte[]) null));  // a replayed tombstone is a no-op
    assertEquals(0, set.size());
  }

  @Test
  void invalidChangesChangeNothing() {
    RuleSet set = new RuleSet(STATS);
    assertNull(set.applyChange("a", rule("a", "visits > 1")));
    TenantRules before = set.forTenant("t");
    assertEquals("record key 'x' does not match rule id 'a'", set.applyChange("x", rule("a", "visits > 2")));
    assertEquals("rule is not UTF-8", set.applyChange("a", new byte[] {(byte) 0xff}));
    assertEquals("rule must be a JSON object, got list", set.applyChange("a", "[]"));
    assertEquals("rule 'a': `when` uses unknown name(s) 'nope': neither a stat in the catalogue nor `event`",
        set.applyChange("a", rule("a", "nope > 1")));
    assertTrue(set.applyChange("a", rule("a", "visits >")).startsWith("rule 'a': `when` does not compile: "));
    assertEquals("`id`: String should have at least 1 character", set.applyChange("", rule("", "true")));
    assertSame(before, set.forTenant("t"));
    assertEquals(1, set.size());
  }

  @Test
  void tenantScoping() {
    RuleSet set = new RuleSet(STATS);
    set.applyChange("all", rule("all", "visits > 0"));
    set.applyChange("only_acme", rule("only_acme", "acme", "visits > 0"));
    TenantRules acme = set.forTenant("acme"), other = set.forTenant("other");
    assertEquals(List.of("all", "only_acme"), acme.idsOf(acme.allMask()));
    assertEquals(List.of("all"), other.idsOf(other.allMask()));
    assertNotEquals(acme.fingerprint(), other.fingerprint());
  }

  @Test
  void masksAndGuards() {
    RuleSet set = new RuleSet(STATS);
    set.applyChange("a_guard", rule("a_guard", "event.name == \"purchase\" && visits > 1"));
    set.applyChange("b_event", rule("b_event", "has(event.values.amount) && sessions > 0"));
    set.applyChange("c_stats", rule("c_stats", "visits > 1 && avg_spend != null"));
    set.applyChange("d_comprehension", rule("d_comprehension", "event.values.exists(visits, visits == \"k\")"));
    TenantRules v = set.forTenant("t");
    assertEquals(bits(0, 1, 2, 3), v.allMask());
    assertEquals(bits(0), v.guardedMask());
    assertEquals(bits(0), v.guardedOn("purchase"));
    assertEquals(bits(), v.guardedOn("page_view"));
    assertEquals(bits(1, 3), v.eventMask());
    assertEquals(bits(0, 2), v.statMask(0));  // visits: the comprehension variable is not the stat
    assertEquals(bits(2), v.statMask(1));
    assertEquals(bits(1), v.statMask(2));
    assertEquals(List.of("b_event", "d_comprehension"), v.idsOf(bits(1, 3)));
  }

  @Test
  void evaluateMatchesFailsAndNeverThrows() {
    RuleSet set = new RuleSet(STATS);
    set.applyChange("a", rule("a", "visits > 1"));
    set.applyChange("b", rule("b", "avg_spend > 5000.0"));  // null avg: an error
    set.applyChange("c", rule("c", "avg_spend != null && avg_spend > 5000.0"));  // null-safe: false
    set.applyChange("d", rule("d", "event.values.amount >= 1000"));
    set.applyChange("e", rule("e", "visits"));  // not a bool: an error
    TenantRules v = set.forTenant("t");
    Map<String, Object> stats = new HashMap<>();
    stats.put("visits", 2L);
    stats.put("avg_spend", null);
    stats.put("sessions", 1L);
    TenantRules.Result r = v.evaluate(v.allMask(), stats, event("purchase", Map.of("amount", 1000.0)));
    assertEquals(bits(0, 3), r.matched());
    assertEquals(bits(1, 4), r.errors());
    // only the chosen rules run, and only their stats are read
    r = v.evaluate(bits(3), Map.of(), event("purchase", Map.of()));
    assertEquals(bits(), r.matched());
    assertEquals(bits(3), r.errors());  // missing key
    // a value CEL cannot take does not throw
    stats.put("visits", new Object());
    r = v.evaluate(bits(0), stats, event("x", Map.of()));
    assertEquals(bits(0), r.errors());
    set.countErrors(r.errors().cardinality());
    assertEquals(1, set.errorCount());
  }

  @Test
  void jsonIntsConvertLikePython() {
    RuleSet set = new RuleSet(STATS);
    set.applyChange("u", rule("u", "event.values.big == 18446744073709551615u && event.values.small == -1"));
    set.applyChange("d", rule("d", "event.values.huge > 1e19"));
    TenantRules v = set.forTenant("t");
    Map<String, Object> values = new HashMap<>();
    values.put("big", new java.math.BigInteger("18446744073709551615"));
    values.put("small", -1);
    values.put("huge", new java.math.BigInteger("100000000000000000000"));
    assertEquals(bits(0, 1), v.evaluate(v.allMask(), Map.of(), event("x", values)).matched());
  }

  @Test
  void loadListsEveryProblem() throws Exception {
    String good = "[" + rule("a", "visits > 1") + ", " + rule("b", "event.name == \"x\"") + "]";
    RuleSet set = RuleSet.load("rules.json", good.getBytes(StandardCharsets.UTF_8), STATS);
    assertEquals(2, set.size());
    String bad = "[" + rule("a", "visits > 1") + ", 5, " + rule("a", "sessions > 1") + ", " + rule("c", "zz") + "]";
    RuleError e = assertThrows(RuleError.class,
        () -> RuleSet.load("rules.json", bad.getBytes(StandardCharsets.UTF_8), STATS));
    assertEquals("rules.json: invalid rules:\n"
        + "rules[1]: rule must be a mapping, got int\n"
        + "rules[3]: rule 'c': `when` uses unknown name(s) 'zz': neither a stat in the catalogue nor `event`\n"
        + "duplicate rule id 'a'", e.getMessage());
  }

  @Test
  void fingerprintBytesArePythonJsonDumps() {
    assertEquals("[\"a\", \"x > 1\"]", PyFormat.jsonPair("a", "x > 1"));
    assertEquals("[\"\\u00e9\\ud83d\\ude00\\\"\\\\\\n\\u007f\", \"\"]", PyFormat.jsonPair("\u00e9\uD83D\uDE00\"\\\n\u007f", ""));
    assertEquals("'a'", PyFormat.repr("a"));
    assertEquals("\"a'b\"", PyFormat.repr("a'b"));
    assertEquals("'a\\'\"b'", PyFormat.repr("a'\"b"));
    assertEquals("'\\x00\\x7f\\x85\\xa0\\u200b\u00e9'", PyFormat.repr("\u0000\u007f\u0085\u00a0\u200b\u00e9"));
  }

  @Test
  void rustDisplayOfDoubles() {
    assertEquals("1", PyFormat.rustDisplay(1.0));
    assertEquals("-0", PyFormat.rustDisplay(-0.0));
    assertEquals("100000000000000000000000", PyFormat.rustDisplay(1e23));
    assertEquals("0.00001", PyFormat.rustDisplay(1e-5));
    assertEquals("0.30000000000000004", PyFormat.rustDisplay(0.1 + 0.2));
    assertEquals("inf", PyFormat.rustDisplay(Double.POSITIVE_INFINITY));
    assertEquals("NaN", PyFormat.rustDisplay(Double.NaN));
  }

  @Test
  void ruleCountPerTenantIsBounded() {
    RuleLimits two = RuleLimits.fromJson("{\"max_rules_per_tenant\": 2}");
    assertEquals(2, two.maxRulesPerTenant());
    assertEquals(RuleLimits.DEFAULT.maxCost(), two.maxCost());  // missing keys: the defaults
    RuleSet set = new RuleSet(STATS, two);
    assertNull(set.applyChange("a", rule("a", "acme", "visits > 1")));
    assertNull(set.applyChange("b", rule("b", "acme", "visits > 1")));
    assertNull(set.applyChange("a", rule("a", "acme", "visits > 2")));  // a replacement is not one more
    assertEquals("rule 'c': tenant 'acme' already has 2 rules, the most allowed (rule_limits.max_rules_per_tenant)",
        set.applyChange("c", rule("c", "acme", "visits > 1")));
    assertNull(set.applyChange("c", rule("c", "other", "visits > 1")));
    assertNull(set.applyChange("g1", rule("g1", "visits > 1")));
    assertNull(set.applyChange("g2", rule("g2", "visits > 1")));
    assertEquals("rule 'g3': every tenant already has 2 rules, the most allowed (rule_limits.max_rules_per_tenant)",
        set.applyChange("g3", rule("g3", "visits > 1")));
    assertNull(set.applyChange("a", (byte[]) null));
    assertNull(set.applyChange("d", rule("d", "acme", "visits > 1")));  // a delete frees one
    assertEquals(5, set.size());
  }

  @Test
  void limitsAreJudgedBeforeCompilingAndConfigurable() {
    RuleSet set = new RuleSet(STATS, RuleLimits.fromJson("{\"max_cost\": 10}"));
    assertEquals("rule 'a': `when` has an estimated cost above 10 (docs/security.md)",
        set.applyChange("a", rule("a", "[1, 2, 3].all(x, x > visits)")));
    assertNull(new RuleSet(STATS).applyChange("a", rule("a", "[1, 2, 3].all(x, x > visits)")));
    // Past CEL-Java's own maxExpressionCodePointSize (100,000): refused by length, not by the parser.
    assertEquals("rule 'a': `when` is longer than 4096 characters",
        new RuleSet(STATS).applyChange("a", rule("a", "visits > 1 && " + " ".repeat(120_000) + ")")));
    assertThrows(IllegalArgumentException.class, () -> RuleLimits.fromJson("{\"max_depth\": 1000}"));
  }

  @Test
  void perTenantViewsStayBoundedWhateverTheTenantNames() {
    RuleSet set = new RuleSet(STATS, RuleLimits.fromJson("{\"max_cached_tenants\": 8}"));
    assertNull(set.applyChange("all", rule("all", "visits > 1")));
    for (int i = 0; i < 20; i++) assertNull(set.applyChange("own" + i, rule("own" + i, "t" + i, "visits > 2")));
    TenantRules shared = set.forTenant("x".repeat(256));
    for (int i = 0; i < 10_000; i++) {  // hostile event content: distinct, maximal tenant names
      assertSame(shared, set.forTenant(String.format("%0256d", i)));
    }
    assertEquals(1, set.cachedViews());
    assertEquals(List.of("all"), shared.idsOf(shared.allMask()));
    for (int round = 0; round < 3; round++) {
      for (int i = 0; i < 20; i++) {
        TenantRules view = set.forTenant("t" + i);
        assertEquals(List.of("all", "own" + i), view.idsOf(view.allMask()));  // an evicted view is rebuilt the same
        assertTrue(set.cachedViews() <= 8 + 1);
      }
    }
    assertEquals(8 + 1, set.cachedViews());
  }
}
