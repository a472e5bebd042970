package io.segstream.engine.rules;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
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
  private final Map<String, TenantRulesImpl> byTenant = new ConcurrentHashMap<>();
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
    TenantRulesImpl view = byTenant.get(tenant);
    if (view == null) {
      synchronized (rules) {
        List<CompiledRule> applicable = new ArrayList<>();
        for (CompiledRule r : rules.values()) {
          if (r.rule().tenant() == null || r.rule().tenant().equals(tenant)) applicable.add(r);
        }
        view = new TenantRulesImpl(applicable, statNames);
        byTenant.put(tenant, view);
      }
    }
    return view;
  }

  /** One record of the rules topic; null if applied, else the reason (nothing changed).
   * A null or empty value deletes rule {@code key} (an unknown id is a no-op: tombstones replay). */
  public String applyChange(String key, byte[] value) {
    if (value == null || value.length == 0) {
      synchronized (rules) {
        if (rules.remove(key) != null) byTenant.clear();
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
      byTenant.clear();
    }
    return null;
  }

  public String applyChange(String key, String value) {
    return applyChange(key, value == null ? null : value.getBytes(StandardCharsets.UTF_8));
  }
}
