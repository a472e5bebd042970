package io.segstream.engine.rules;

/** What the evaluator needs of the rule set (operators/rules.py RuleSet). */
public interface Rules {
  TenantRules forTenant(String tenant);

  /** Count rule evaluations that failed (errors or non-bool results). */
  void countErrors(int failed);
}
