package io.segstream.engine.rules;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.Serializable;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * What one rule may cost, judged before CEL-Java compiles it: a line-by-line port of
 * operators/rule_limits.py (read its docstring; change both together, the reasons are identical).
 * CEL-Java's own limits (maxExpressionCodePointSize 100,000, maxParseRecursionDepth 250) are far
 * above these, so they never decide; its comprehensionMaxIterations is left unset: cel-rust has no
 * such limit, and an evaluation error on one side only would make the engines disagree.
 */
public record RuleLimits(int maxRulesPerTenant, int maxTenantBytes, int maxExpressionLength, int maxDepth,
    int maxLiteralEntries, int maxComprehensionNesting, int maxMatches, int matchesCost,
    int assumedCollectionSize, int maxCost, int maxCachedTenants) implements Serializable {
  public static final RuleLimits DEFAULT = new RuleLimits(100, 256, 4096, 32, 128, 2, 4, 50, 64, 10_000, 1024);
  static final Set<String> COMPREHENSIONS = Set.of("all", "exists", "exists_one", "map", "filter");
  private static final List<List<String>> LEVELS = List.of(List.of("||"), List.of("&&"),
      List.of("==", "!=", "<", "<=", ">", ">=", "in"), List.of("+", "-"), List.of("*", "/", "%"));
  private static final long CAP = 1L << 62;
  private static final String MESSAGE_LITERAL =
      "has a message literal (no rule can use one: there are no message types)";

  public RuleLimits {
    if (maxDepth < 1 || maxDepth > 48) throw new IllegalArgumentException("max_depth must be between 1 and 48");
    for (int v : new int[] {maxRulesPerTenant, maxTenantBytes, maxExpressionLength, maxLiteralEntries,
        maxComprehensionNesting, maxMatches, matchesCost, assumedCollectionSize, maxCost, maxCachedTenants}) {
      if (v < 1) throw new IllegalArgumentException("rule limits must be positive integers");
    }
  }

  /** From the JSON of the Python dataclass (segstream's `rule_limits` section); missing keys: defaults. */
  public static RuleLimits fromJson(String json) {
    if (json == null || json.isEmpty()) return DEFAULT;
    try {
      JsonNode n = Rule.JSON.readTree(json);
      RuleLimits d = DEFAULT;
      return new RuleLimits(n.path("max_rules_per_tenant").asInt(d.maxRulesPerTenant),
          n.path("max_tenant_bytes").asInt(d.maxTenantBytes), n.path("max_expression_length").asInt(d.maxExpressionLength),
          n.path("max_depth").asInt(d.maxDepth), n.path("max_literal_entries").asInt(d.maxLiteralEntries),
          n.path("max_comprehension_nesting").asInt(d.maxComprehensionNesting), n.path("max_matches").asInt(d.maxMatches),
          n.path("matches_cost").asInt(d.matchesCost), n.path("assumed_collection_size").asInt(d.assumedCollectionSize),
          n.path("max_cost").asInt(d.maxCost), n.path("max_cached_tenants").asInt(d.maxCachedTenants));
    } catch (java.io.IOException e) {
      throw new IllegalArgumentException("rule limits are not JSON: " + e.getMessage(), e);
    }
  }

  /** The outcome of {@link #check}: refused (the reason), or unreadable (refuse if it compiles), or neither. */
  public record Verdict(String refused, String unreadable) {}

  /** rule_limits.check_tenant */
  public String checkTenant(String tenant) {
    if (tenant != null && tenant.getBytes(StandardCharsets.UTF_8).length > maxTenantBytes) {
      return "`tenant` is longer than " + maxTenantBytes + " bytes UTF-8";
    }
    return null;
  }

  /** rule_limits.check: judge an expression without compiling it (reasons follow "`when` "). */
  public Verdict check(String expression) {
    if (expression.codePointCount(0, expression.length()) > maxExpressionLength) {
      return new Verdict("is longer than " + maxExpressionLength + " characters", null);
    }
    List<RuleChecks.Token> toks;
    try {
      toks = RuleChecks.tokens(expression);
    } catch (RuleChecks.Unreadable e) {
      return new Verdict(null, e.getMessage());
    }
    int depth = 0;
    for (RuleChecks.Token t : toks) {
      if (t.kind().equals("op") && "([{".contains(t.value())) {
        if (++depth > maxDepth) return new Verdict("is nested deeper than " + maxDepth + " levels", null);
      } else if (t.kind().equals("op") && ")]}".contains(t.value())) {
        depth--;
      }
    }
    Reader reader = new Reader(toks);
    try {
      reader.expr(0, 0);
      if (reader.at != toks.size()) throw new Unreadable("unexpected " + PyFormat.repr(reader.peek(0).value()));
    } catch (Refused e) {
      return new Verdict(e.getMessage(), null);
    } catch (Unreadable e) {
      return new Verdict(null, e.getMessage());
    }
    return new Verdict(null, null);
  }

  private static final class Refused extends Exception {
    Refused(String m) {
      super(m, null, false, false);
    }
  }

  private static final class Unreadable extends Exception {
    Unreadable(String m) {
      super(m, null, false, false);
    }
  }

  /** size: the length of a list or map literal (or of a map/filter over one); -1: a string literal. */
  private static final class Node {
    long cost;
    int depth;
    final Integer size;

    Node(long cost, int depth, Integer size) {
      this.cost = cost;
      this.depth = depth;
      this.size = size;
    }
  }

  private static final RuleChecks.Token END = new RuleChecks.Token("end", "");

  private final class Reader {
    final List<RuleChecks.Token> toks;
    int at;
    int matches;

    Reader(List<RuleChecks.Token> toks) {
      this.toks = toks;
    }

    RuleChecks.Token peek(int offset) {
      int i = at + offset;
      return i < toks.size() ? toks.get(i) : END;
    }

    boolean isOp(String v, int offset) {
      RuleChecks.Token t = peek(offset);
      return t.kind().equals("op") && t.value().equals(v);
    }

    boolean isOp(String v) {
      return isOp(v, 0);
    }

    void expect(String v) throws Unreadable {
      if (!isOp(v)) throw new Unreadable("expected " + PyFormat.repr(v));
      at++;
    }

    Refused tooDeep() {
      return new Refused("is nested deeper than " + maxDepth + " levels");
    }

    Node node(long cost, List<Node> children, Integer size) throws Refused {
      int depth = 0;
      long total = cost;
      for (Node c : children) {
        depth = Math.max(depth, c.depth);
        total = Math.min(total + c.cost, CAP);
      }
      depth += 1;
      if (depth > maxDepth) throw tooDeep();
      if (total > maxCost) throw new Refused("has an estimated cost above " + maxCost + " (docs/security.md)");
      return new Node(total, depth, size);
    }

    Node expr(int level, int loops) throws Refused, Unreadable {
      if (level + 1 > maxDepth) throw tooDeep();
      level += 1;
      Node condition = binary(0, level, loops);
      if (!isOp("?")) return condition;
      at++;
      Node then = binary(0, level, loops);
      expect(":");
      Node otherwise = expr(level, loops);
      return node(1, List.of(condition, then, otherwise), null);
    }

    Node binary(int rank, int level, int loops) throws Refused, Unreadable {
      if (rank == LEVELS.size()) return unary(level, loops);
      Node left = binary(rank + 1, level, loops);
      while (true) {
        RuleChecks.Token t = peek(0);
        boolean operator = (t.kind().equals("op") && !t.value().equals("in"))
            || (t.kind().equals("name") && t.value().equals("in"));
        if (!operator || !LEVELS.get(rank).contains(t.value())) return left;
        at++;
        Node right = binary(rank + 1, level, loops);
        if (t.value().equals("+") && loops > 0 && (isString(left) || isString(right))) {
          throw new Refused("builds strings inside a comprehension");
        }
        left = node(1, List.of(left, right), null);
      }
    }

    boolean isString(Node n) {
      return n.size != null && n.size == -1;
    }

    Node unary(int level, int loops) throws Refused, Unreadable {
      int operators = 0;
      while (isOp("!") || isOp("-")) {
        operators++;
        at++;
      }
      Node n = member(level, loops);
      for (int i = 0; i < operators; i++) n = node(1, List.of(n), null);
      return n;
    }

    Node member(int level, int loops) throws Refused, Unreadable {
      Node n = primary(level, loops);
      while (true) {
        if (isOp(".")) {
          at++;
          RuleChecks.Token name = peek(0);
          if (!name.kind().equals("name")) throw new Unreadable("expected a field name");
          at++;
          if (isOp("{")) throw new Refused(MESSAGE_LITERAL);
          n = isOp("(") ? call(name.value(), n, level, loops) : node(1, List.of(n), null);
        } else if (isOp("[")) {
          at++;
          Node index = expr(level, loops);
          expect("]");
          n = node(1, List.of(n, index), null);
        } else {
          return n;
        }
      }
    }

    Node call(String name, Node target, int level, int loops) throws Refused, Unreadable {
      at++;
      boolean comprehension = target != null && COMPREHENSIONS.contains(name) && peek(0).kind().equals("name")
          && isOp(",", 1);
      if (comprehension) {
        if (loops + 1 > maxComprehensionNesting) {
          throw new Refused("nests comprehensions deeper than " + maxComprehensionNesting);
        }
        at += 2;
        List<Node> bodies = arguments(level, loops + 1, ")");
        boolean isMap = name.equals("map");
        if (bodies.size() < 1 || bodies.size() > (isMap ? 2 : 1)) {
          throw new Unreadable(name + "() takes a variable and " + (isMap ? "one or two expressions" : "one expression"));
        }
        long n = target.size != null && target.size >= 0 ? target.size : assumedCollectionSize;
        long perItem = 1;
        int bodyDepth = 0;
        for (Node b : bodies) {
          perItem = Math.min(perItem + b.cost, CAP);
          bodyDepth = Math.max(bodyDepth, b.depth);
        }
        long cost = perItem > CAP / Math.max(n, 1) ? CAP : n * perItem;
        Node result = node(cost, List.of(target), isMap || name.equals("filter") ? target.size : null);
        result.depth = Math.max(result.depth, 1 + bodyDepth);
        if (result.depth > maxDepth) throw tooDeep();
        return result;
      }
      List<Node> args = arguments(level, loops, ")");
      long cost = 1;
      if (name.equals("matches")) {
        matches++;
        if (loops > 0) throw new Refused("calls matches() inside a comprehension");
        if (matches > maxMatches) throw new Refused("calls matches() more than " + maxMatches + " times");
        cost = matchesCost;
      }
      if (name.equals("string") && target == null && loops > 0) {
        throw new Refused("builds strings inside a comprehension");
      }
      List<Node> children = new ArrayList<>();
      if (target != null) children.add(target);
      children.addAll(args);
      return node(cost, children, null);
    }

    List<Node> arguments(int level, int loops, String closing) throws Refused, Unreadable {
      List<Node> items = new ArrayList<>();
      while (!isOp(closing)) {
        items.add(expr(level, loops));
        if (!isOp(",")) break;
        at++;
      }
      expect(closing);
      return items;
    }

    Node primary(int level, int loops) throws Refused, Unreadable {
      RuleChecks.Token t = peek(0);
      if (t.kind().equals("op") && t.value().equals(".")) {
        at++;
        t = peek(0);
        if (!t.kind().equals("name")) throw new Unreadable("expected a name after '.'");
      }
      switch (t.kind()) {
        case "name":
          at++;
          if (isOp("(")) return call(t.value(), null, level, loops);
          if (isOp("{")) throw new Refused(MESSAGE_LITERAL);
          return node(1, List.of(), null);
        case "int", "uint", "float", "bytes":
          at++;
          return node(1, List.of(), null);
        case "string":
          at++;
          return node(1, List.of(), -1);
        default:
          break;
      }
      if (isOp("(")) {
        at++;
        Node inner = expr(level, loops);
        expect(")");
        return node(1, List.of(inner), inner.size);
      }
      if (isOp("[")) {
        at++;
        List<Node> elements = arguments(level, loops, "]");
        if (elements.size() > maxLiteralEntries) {
          throw new Refused("has a list literal of more than " + maxLiteralEntries + " elements");
        }
        return node(1, elements, elements.size());
      }
      if (isOp("{")) {
        at++;
        List<Node> entries = new ArrayList<>();
        while (!isOp("}")) {
          entries.add(expr(level, loops));
          expect(":");
          entries.add(expr(level, loops));
          if (!isOp(",")) break;
          at++;
        }
        expect("}");
        if (entries.size() / 2 > maxLiteralEntries) {
          throw new Refused("has a map literal of more than " + maxLiteralEntries + " entries");
        }
        return node(1, entries, entries.size() / 2);
      }
      throw new Unreadable("unexpected " + PyFormat.repr(t.value().isEmpty() ? "end" : t.value()));
    }
  }
}
