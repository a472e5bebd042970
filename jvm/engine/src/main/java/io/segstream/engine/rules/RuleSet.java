package io.segstream.engine.rules;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;

/**
 * All rules, changeable at run time (operators/rules.py RuleSet): {@link #applyChange} takes one
 * record of the rules topic; per-tenant views are cached until the next change; {@link #errorCount}
 * counts failed rule evaluations.
 */
public final class RuleSet implements Rules {
  private final List<String> statNames;
  private final RuleLimits limits;
  private final Map<String, CompiledRule> rules = new LinkedHashMap<>();
  /**
   * Views of the tenants that have rules of their own, least recently used first, at most
   * {@code limits.maxCachedTenants()}; every other tenant shares {@link #shared} (the rules for every
   * tenant), so event content (a stream of distinct tenant names) cannot grow this. Guarded by rules.
   */
  private final LinkedHashMap<String, TenantRulesImpl> byTenant = new LinkedHashMap<>(16, 0.75f, true);
  private volatile Set<String> ownRules = Set.of();
  private volatile TenantRulesImpl shared;
  private final AtomicLong errorCount = new AtomicLong();

  public RuleSet(List<String> statNames, Iterable<CompiledRule> initial) throws RuleError {
    this(statNames, initial, RuleLimits.DEFAULT);
  }

  public RuleSet(List<String> statNames, Iterable<CompiledRule> initial, RuleLimits limits) throws RuleError {
    this.statNames = List.copyOf(statNames);
    this.limits = limits;
    for (CompiledRule rule : initial) {
      if (rules.containsKey(rule.id())) throw new RuleError("duplicate rule id " + PyFormat.repr(rule.id()));
      rules.put(rule.id(), rule);
    }
    changed();
  }

  public RuleSet(List<String> statNames) {
    this(statNames, RuleLimits.DEFAULT);
  }

  public RuleSet(List<String> statNames, RuleLimits limits) {
    this.statNames = List.copyOf(statNames);
    this.limits = limits;
  }

  /** The initial rules from a JSON array of rule objects; RuleError naming every bad rule (as load_rules). */
  public static RuleSet load(String source, byte[] jsonArray, List<String> statNames) throws RuleError {
    return load(source, jsonArray, statNames, RuleLimits.DEFAULT);
  }

  public static RuleSet load(String source, byte[] jsonArray, List<String> statNames, RuleLimits limits)
      throws RuleError {
    JsonNode root;
    try {
      root = Rule.JSON.readTree(jsonArray);
    } catch (Exception e) {
      throw new RuleError(source + ": not JSON: " + e.getMessage());
    }
    if (root == null || !root.isArray()) throw new RuleError(source + ": expected a JSON array of rules");
    List<CompiledRule> compiled = new ArrayList<>();
    List<String> problems = new ArrayList<>();
    for (int i = 0; i < root.size(); i++) {
      try {
        JsonNode raw = root.get(i);
        if (!raw.isObject()) throw new RuleError("rule must be a mapping, got " + Rule.pythonType(raw));
        compiled.add(CompiledRule.compile(raw, statNames, limits));
      } catch (RuleError e) {
        problems.add("rules[" + i + "]: " + e.getMessage());
      }
    }
    Set<String> seen = new HashSet<>();
    for (CompiledRule r : compiled) {
      if (!seen.add(r.id())) problems.add("duplicate rule id " + PyFormat.repr(r.id()));
    }
    if (!problems.isEmpty()) throw new RuleError(source + ": invalid rules:\n" + String.join("\n", problems));
    return new RuleSet(statNames, compiled, limits);
  }

  public int size() {
    synchronized (rules) {
      return rules.size();
    }
  }

  public List<String> statNames() {
    return statNames;
  }

  public long errorCount() {
    return errorCount.get();
  }

  @Override
  public void countErrors(int failed) {
    errorCount.addAndGet(failed);
  }

  @Override
  public TenantRules forTenant(String tenant) {
    if (tenant == null || !ownRules.contains(tenant)) {
      TenantRulesImpl view = shared;
      if (view == null) {
        synchronized (rules) {
          view = shared = build(null);
        }
      }
      return view;
    }
    synchronized (rules) {
      TenantRulesImpl view = byTenant.get(tenant);
      if (view == null) {
        view = build(tenant);
        byTenant.put(tenant, view);
        if (byTenant.size() > limits.maxCachedTenants()) {
          byTenant.remove(byTenant.keySet().iterator().next());  // the least recently used
        }
      }
      return view;
    }
  }

  /** How many views are cached: the per-tenant ones (at most maxCachedTenants) and the shared one. */
  public int cachedViews() {
    synchronized (rules) {
      return byTenant.size() + (shared == null ? 0 : 1);
    }
  }

  private TenantRulesImpl build(String tenant) {
    List<CompiledRule> applicable = new ArrayList<>();
    for (CompiledRule r : rules.values()) {
      if (r.rule().tenant() == null || r.rule().tenant().equals(tenant)) applicable.add(r);
    }
    return new TenantRulesImpl(applicable, statNames);
  }

  /** After a change of the rules (caller holds the lock): the views are stale. */
  private void changed() {
    byTenant.clear();
    shared = null;
    Set<String> own = new HashSet<>();
    for (CompiledRule r : rules.values()) if (r.rule().tenant() != null) own.add(r.rule().tenant());
    ownRules = Set.copyOf(own);
  }

  /**
   * {@link #applyChange} for a rules-topic record as the job reads it (rules.py apply_signed_change):
   * refused (the reason) unless {@code signature}, its segstream-signature header, is valid with one
   * of {@code keys} and its owner may write this rule ({@link Ownership}).
   */
  public String applySignedChange(String key, byte[] value, byte[] signature, java.util.List<String> keys) {
    Ownership.Verdict verdict =
        Ownership.verify(keys, Ownership.RULE, key.getBytes(StandardCharsets.UTF_8), value, signature);
    if (verdict.owner() == null) return verdict.reason();
    String scope = Ownership.ruleScope(verdict.owner(), key);
    return scope != null ? scope : applyChange(key, value, verdict.owner());
  }

  /** One record of the rules topic; null if applied, else the reason (nothing changed).
   * A null or empty value deletes rule {@code key} (an unknown id is a no-op: tombstones replay). */
  public String applyChange(String key, byte[] value) {
    return applyChange(key, value, "");
  }

  /** As {@link #applyChange(String, byte[])} for a record written on behalf of {@code owner}
   * (a tenant, whose rules must name it; empty: an operator). */
  public String applyChange(String key, byte[] value, String owner) {
    if (value == null || value.length == 0) {
      synchronized (rules) {
        if (rules.remove(key) != null) changed();
      }
      return null;
    }
    CompiledRule rule;
    try {
      rule = CompiledRule.compile(value, statNames, limits);
    } catch (RuleError e) {
      return e.getMessage();
    }
    if (!rule.id().equals(key)) {
      return "record key " + PyFormat.repr(key) + " does not match rule id " + PyFormat.repr(rule.id());
    }
    String refused = Ownership.ruleTenant(owner, key, rule.rule().tenant());
    if (refused != null) return refused;
    synchronized (rules) {
      String tenant = rule.rule().tenant();
      int others = 0;
      for (CompiledRule r : rules.values()) {
        if (java.util.Objects.equals(r.rule().tenant(), tenant) && !r.id().equals(key)) others++;
      }
      if (others >= limits.maxRulesPerTenant()) {
        String scope = tenant == null ? "every tenant" : "tenant " + PyFormat.repr(tenant);
        return "rule " + PyFormat.repr(key) + ": " + scope + " already has " + others
            + " rules, the most allowed (rule_limits.max_rules_per_tenant)";
      }
      rules.put(key, rule);
      changed();
    }
    return null;
  }

  public String applyChange(String key, String value) {
    return applyChange(key, value == null ? null : value.getBytes(StandardCharsets.UTF_8));
  }
}
