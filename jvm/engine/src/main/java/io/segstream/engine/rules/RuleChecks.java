package io.segstream.engine.rules;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Load-time checks that keep the two engines equal: a line-by-line port of operators/rule_checks.py
 * (read its docstring; change both together). Works on code points like the Python original.
 */
final class RuleChecks {
  private RuleChecks() {}

  private static final Pattern TOKEN = Pattern.compile(
      "(?<space>[\\t\\n\\f\\r ]+|//[^\\n]*)"
          + "|(?<float>[0-9]*\\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)"
          + "|(?<uint>(?:0[xX][0-9a-fA-F]+|[0-9]+)[uU])"
          + "|(?<int>0[xX][0-9a-fA-F]+|[0-9]+)"
          + "|(?<string>(?:[rR][bB]?|[bB][rR]?)?(?:\"\"\"|'''|\"|'))"
          + "|(?<name>[_a-zA-Z][_a-zA-Z0-9]*)"
          + "|(?<op>&&|\\|\\||==|!=|<=|>=|[-+*/%<>!?:.,()\\[\\]{}])");
  private static final String[] KINDS = {"space", "float", "uint", "int", "string", "name", "op"};
  private static final Map<Character, String> SIMPLE_ESCAPES = Map.ofEntries(
      Map.entry('a', "\u0007"), Map.entry('b', "\b"), Map.entry('f', "\f"), Map.entry('n', "\n"),
      Map.entry('r', "\r"), Map.entry('t', "\t"), Map.entry('v', "\u000b"), Map.entry('\\', "\\"),
      Map.entry('\'', "'"), Map.entry('"', "\""), Map.entry('`', "`"), Map.entry('?', "?"));
  private static final String REGEX_CLASSES = "dDwWsSbB";

  record Token(String kind, String value) {}

  static final class Unreadable extends Exception {
    Unreadable(String m) {
      super(m, null, false, false);
    }
  }

  private static int[] scanString(String e, int start, String prefixAndQuote, StringBuilder out) throws Unreadable {
    int prefixLength = prefixAndQuote.replaceAll("[\"']+$", "").length();
    String prefix = e.substring(start, start + prefixLength).toLowerCase();
    boolean raw = prefix.contains("r"), bytes = prefix.contains("b");
    String quote = prefixAndQuote.substring(prefixLength);
    int p = start + prefixLength + quote.length();
    while (true) {
      if (p >= e.length()) throw new Unreadable("unterminated string");
      if (e.startsWith(quote, p)) return new int[] {p + quote.length(), bytes ? 1 : 0};
      int c = e.codePointAt(p);
      if (quote.length() == 1 && (c == '\r' || c == '\n')) throw new Unreadable("newline in a string");
      if (c != '\\' || raw) {
        out.appendCodePoint(c);
        p += Character.charCount(c);
        continue;
      }
      char escape = p + 1 < e.length() ? e.charAt(p + 1) : 0;
      if (p + 1 < e.length() && SIMPLE_ESCAPES.containsKey(escape)) {
        out.append(SIMPLE_ESCAPES.get(escape));
        p += 2;
      } else if (escape == 'x' || escape == 'X' || escape == 'u' || escape == 'U') {
        int width = escape == 'u' ? 4 : escape == 'U' ? 8 : 2;
        String digits = e.substring(p + 2, Math.min(e.length(), p + 2 + width));
        if (digits.length() != width || !digits.matches("[0-9a-fA-F]*")) throw new Unreadable("bad escape");
        int cp = Integer.parseUnsignedInt(digits, 16);
        if (!Character.isValidCodePoint(cp)) throw new Unreadable("bad escape");
        out.appendCodePoint(cp);
        p += 2 + width;
      } else if (escape >= '0' && escape <= '3') {
        String digits = e.substring(p + 1, Math.min(e.length(), p + 4));
        if (digits.length() != 3 || !digits.matches("[0-7]*")) throw new Unreadable("bad escape");
        out.appendCodePoint(Integer.parseInt(digits, 8));
        p += 4;
      } else {
        throw new Unreadable("bad escape");
      }
    }
  }

  static List<Token> tokens(String e) throws Unreadable {
    List<Token> out = new ArrayList<>();
    Matcher m = TOKEN.matcher(e);
    int p = 0;
    while (p < e.length()) {
      m.region(p, e.length());
      if (!m.lookingAt()) throw new Unreadable("unexpected " + PyFormat.repr(new String(Character.toChars(e.codePointAt(p)))));
      String kind = null;
      for (String k : KINDS) {
        if (m.group(k) != null) {
          kind = k;
          break;
        }
      }
      if (kind.equals("space")) {
        p = m.end();
      } else if (kind.equals("string")) {
        StringBuilder value = new StringBuilder();
        int[] r = scanString(e, p, m.group(kind), value);
        p = r[0];
        out.add(new Token(r[1] == 1 ? "bytes" : "string", value.toString()));
      } else {
        out.add(new Token(kind, m.group(kind)));
        p = m.end();
      }
    }
    return out;
  }

  private static boolean isOp(Token t, String v) {
    return t.kind.equals("op") && t.value.equals(v);
  }

  private static boolean opens(Token t) {
    return isOp(t, "(") || isOp(t, "[") || isOp(t, "{");
  }

  private static boolean closes(Token t) {
    return isOp(t, ")") || isOp(t, "]") || isOp(t, "}");
  }

  private static int closing(List<Token> toks, int opening) {
    int depth = 0;
    for (int i = opening; i < toks.size(); i++) {
      Token t = toks.get(i);
      if (opens(t)) {
        depth++;
      } else if (closes(t)) {
        depth--;
        if (depth == 0) return i;
      }
    }
    return toks.size();
  }

  private static List<List<Token>> split(List<Token> toks, String separator) {
    List<List<Token>> parts = new ArrayList<>();
    parts.add(new ArrayList<>());
    int depth = 0;
    for (Token t : toks) {
      if (opens(t)) {
        depth++;
      } else if (closes(t)) {
        depth--;
      } else if (isOp(t, separator) && depth == 0) {
        parts.add(new ArrayList<>());
        continue;
      }
      parts.get(parts.size() - 1).add(t);
    }
    return parts;
  }

  private static String patternProblem(String pattern) {
    int[] cps = pattern.codePoints().toArray();
    for (int p = 0; p < cps.length; ) {
      int c = cps[p];
      if (c == '\\' && p + 1 < cps.length) {
        if (REGEX_CLASSES.indexOf(cps[p + 1]) >= 0) return "\\" + (char) cps[p + 1];
        p += 2;
        continue;
      }
      if (c == '[' && p + 1 < cps.length && cps[p + 1] == ':') return "[:class:]";
      p++;
    }
    return null;
  }

  private static String key(Token t) {
    if (t.kind.equals("string")) return "s" + t.value;
    if (t.kind.equals("int") || t.kind.equals("uint")) {
      String digits = t.value.replaceAll("[uU]+$", "");
      BigInteger n = digits.startsWith("0x") || digits.startsWith("0X")
          ? new BigInteger(digits.substring(2), 16) : new BigInteger(digits);
      return "n" + n;
    }
    if (t.kind.equals("name") && (t.value.equals("true") || t.value.equals("false"))) return "b" + t.value;
    return null;
  }

  /** null if the expression passes, else the reason (appended to "rule 'id': `when` "). */
  static String check(String expression) {
    List<Token> toks;
    try {
      toks = tokens(expression);
    } catch (Unreadable e) {
      return "cannot be read by the conformance checks: " + e.getMessage();
    }
    Set<String> calls = new HashSet<>();
    for (int i = 0; i + 1 < toks.size(); i++) {
      if (toks.get(i).kind.equals("name") && isOp(toks.get(i + 1), "(")) calls.add(toks.get(i).value);
    }
    if (calls.contains("string") && (calls.contains("duration") || calls.contains("timestamp"))) {
      return "calls string() in a rule that calls duration() or timestamp(): "
          + "the text of a duration or timestamp differs between the engines";
    }
    for (int i = 0; i < toks.size(); i++) {
      Token t = toks.get(i);
      if (t.kind.equals("name") && t.value.equals("matches") && i + 1 < toks.size() && isOp(toks.get(i + 1), "(")) {
        boolean receiver = i > 0 && isOp(toks.get(i - 1), ".");
        List<List<Token>> args = split(toks.subList(i + 2, Math.max(i + 2, closing(toks, i + 1))), ",");
        List<Token> pattern = receiver ? args.get(0) : args.get(args.size() - 1);
        if (pattern.size() != 1 || !pattern.get(0).kind.equals("string")) {
          return "calls matches() with a pattern that is not a string literal";
        }
        String problem = patternProblem(pattern.get(0).value);
        if (problem != null) {
          return "calls matches() with a pattern that uses " + problem + ": write an explicit class "
              + "such as [0-9] (\\d \\D \\w \\W \\s \\S \\b \\B and [:class:] differ between the engines)";
        }
      }
      if (isOp(t, "-")) {
        boolean unary = i == 0 || (toks.get(i - 1).kind.equals("op") && !closes(toks.get(i - 1)));
        String operand = i + 1 < toks.size() ? toks.get(i + 1).kind : "";
        if (unary && !(operand.equals("int") || operand.equals("uint") || operand.equals("float"))) {
          return "negates something that is not a number literal: write 0 - x "
              + "(cel-rust wraps -x for the smallest int instead of failing)";
        }
      }
      if (isOp(t, "{")) {
        List<List<Token>> entries = new ArrayList<>();
        for (List<Token> en : split(toks.subList(i + 1, Math.max(i + 1, closing(toks, i))), ",")) {
          if (!en.isEmpty()) entries.add(en);
        }
        Set<String> seen = new HashSet<>();
        for (List<Token> entry : entries) {
          List<Token> keyTokens = split(entry, ":").get(0);
          if (keyTokens.size() == 1 && (keyTokens.get(0).kind.equals("float") || keyTokens.get(0).kind.equals("bytes")
              || keyTokens.get(0).equals(new Token("name", "null")))) {
            return "has a map literal with a float, bytes or null key";
          }
          String key = keyTokens.size() == 1 ? key(keyTokens.get(0)) : null;
          if (key == null) {
            if (entries.size() > 1) return "has a map literal with two or more entries and a key that is not a literal";
            continue;
          }
          if (!seen.add(key)) return "has a map literal with a repeated key";
        }
      }
    }
    return null;
  }
}
