package io.segstream.engine.rules;

import com.fasterxml.jackson.databind.JsonNode;
import dev.cel.common.CelAbstractSyntaxTree;
import dev.cel.common.CelValidationException;
import dev.cel.common.ast.CelExpr;
import dev.cel.runtime.CelRuntime;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * A validated rule compiled once by CEL-Java (operators/rules.py CompiledRule / compile_rule).
 *
 * @param stats the stat names the expression reads, sorted
 * @param usesEvent whether it reads {@code event}
 * @param eventGuard if set, the rule is false on any event of another name
 */
public record CompiledRule(Rule rule, CelRuntime.Program program, List<String> stats, boolean usesEvent,
    String eventGuard) {
  public static final String EVENT_VARIABLE = "event";

  public String id() {
    return rule.id();
  }

  /** Decode, validate and compile a rules-topic value; RuleError with the reason (rules.py compile_rule). */
  public static CompiledRule compile(byte[] raw, Collection<String> statNames) throws RuleError {
    return compile(raw, statNames, RuleLimits.DEFAULT);
  }

  public static CompiledRule compile(byte[] raw, Collection<String> statNames, RuleLimits limits) throws RuleError {
    return compile(Rule.decode(raw), statNames, limits);
  }

  public static CompiledRule compile(JsonNode obj, Collection<String> statNames) throws RuleError {
    return compile(obj, statNames, RuleLimits.DEFAULT);
  }

  public static CompiledRule compile(JsonNode obj, Collection<String> statNames, RuleLimits limits) throws RuleError {
    if (!obj.isObject()) throw new RuleError("rule must be a JSON object, got " + Rule.pythonType(obj));
    return compile(Rule.validate(obj), statNames, limits);
  }

  public static CompiledRule compile(Rule rule, Collection<String> statNames) throws RuleError {
    return compile(rule, statNames, RuleLimits.DEFAULT);
  }

  public static CompiledRule compile(Rule rule, Collection<String> statNames, RuleLimits limits) throws RuleError {
    String prefix = "rule " + rule.reprId() + ": ";
    String tenantProblem = limits.checkTenant(rule.tenant());
    if (tenantProblem != null) throw new RuleError(prefix + tenantProblem);
    // Judged before CEL-Java sees the text, as the Python engine must (rule_limits.py).
    RuleLimits.Verdict verdict = limits.check(rule.when());
    if (verdict.refused() != null) throw new RuleError(prefix + "`when` " + verdict.refused());
    CelAbstractSyntaxTree ast;
    CelRuntime.Program program;
    try {
      ast = CelEnv.parse(rule.when());
      program = CelEnv.plan(ast);
    } catch (CelValidationException e) {
      throw new RuleError(prefix + "`when` does not compile: " + e.getMessage());
    } catch (Exception e) {
      throw new RuleError(prefix + "`when` does not compile: " + e);
    }
    if (verdict.unreadable() != null) {
      throw new RuleError(prefix + "`when` cannot be read by the limit checks: " + verdict.unreadable());
    }
    Set<String> names = identifiers(ast.getExpr());
    names.removeAll(RuleGuards.macroBindings(rule.when()));
    Set<String> unknown = new TreeSet<>(names);
    unknown.removeAll(statNames);
    unknown.remove(EVENT_VARIABLE);
    if (!unknown.isEmpty()) {
      List<String> quoted = new ArrayList<>();
      for (String n : unknown) quoted.add(PyFormat.repr(n));
      throw new RuleError(prefix + "`when` uses unknown name(s) " + String.join(", ", quoted)
          + ": neither a stat in the catalogue nor `event`");
    }
    String problem = RuleChecks.check(rule.when());
    if (problem != null) throw new RuleError(prefix + "`when` " + problem);
    List<String> stats = new ArrayList<>();
    for (String n : names) if (statNames.contains(n)) stats.add(n);
    return new CompiledRule(rule, program, List.copyOf(stats), names.contains(EVENT_VARIABLE),
        RuleGuards.eventNameGuard(rule.when()));
  }

  /** Every identifier the parsed expression refers to, except comprehension accumulators (sorted). */
  static Set<String> identifiers(CelExpr root) {
    Set<String> out = new TreeSet<>();
    Set<String> accumulators = new TreeSet<>();
    collect(root, out, accumulators);
    out.removeAll(accumulators);
    return out;
  }

  private static void collect(CelExpr e, Set<String> out, Set<String> accumulators) {
    switch (e.getKind()) {
      case IDENT:
        out.add(e.ident().name());
        break;
      case SELECT:
        collect(e.select().operand(), out, accumulators);
        break;
      case CALL:
        e.call().target().ifPresent(t -> collect(t, out, accumulators));
        for (CelExpr a : e.call().args()) collect(a, out, accumulators);
        break;
      case LIST:
        for (CelExpr a : e.list().elements()) collect(a, out, accumulators);
        break;
      case MAP:
        for (CelExpr.CelMap.Entry en : e.map().entries()) {
          collect(en.key(), out, accumulators);
          collect(en.value(), out, accumulators);
        }
        break;
      case STRUCT:
        for (CelExpr.CelStruct.Entry en : e.struct().entries()) collect(en.value(), out, accumulators);
        break;
      case COMPREHENSION: {
        CelExpr.CelComprehension c = e.comprehension();
        accumulators.add(c.accuVar());
        collect(c.iterRange(), out, accumulators);
        collect(c.accuInit(), out, accumulators);
        collect(c.loopCondition(), out, accumulators);
        collect(c.loopStep(), out, accumulators);
        collect(c.result(), out, accumulators);
        break;
      }
      default:
        break;
    }
  }
}
