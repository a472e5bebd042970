package io.segstream.engine.rules;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Static reading of rule expressions, ported from operators/rule_guards.py (event-name guards) and
 * operators/rules.py {@code _MACRO_BINDING}: same regular expressions, with Python's Unicode
 * {@code \s} (str.isspace: Java's White_Space plus U+001C..U+001F) and {@code \d} (category Nd).
 */
final class RuleGuards {
  private RuleGuards() {}

  /** Python's \s for str patterns. */
  private static final String S = "[\\s\\x1c-\\x1f]";

  private static final Pattern TOKEN = Pattern.compile(
      S + "*(?:"
          + "(?<number>(?:\\d+\\.\\d+|\\.\\d+)(?:[eE][+-]?\\d+)?|\\d+[eE][+-]?\\d+|\\d+)"
          + "|(?<string>\"[^\"\\\\\\n]*\"|'[^'\\\\\\n]*')"
          + "|(?<name>[A-Za-z_][A-Za-z0-9_]*)"
          + "|(?<op>//|&&|\\|\\||==|!=|<=|>=|[-+*/%<>!?:.()\\[\\]{},])"
          + ")",
      Pattern.UNICODE_CHARACTER_CLASS);

  private static final Pattern MACRO_BINDING = Pattern.compile(
      "\\." + S + "*(?:all|exists|exists_one|map|filter)" + S + "*\\(" + S + "*([A-Za-z_][A-Za-z0-9_]*)" + S + "*,",
      Pattern.UNICODE_CHARACTER_CLASS);

  private static final String[] KINDS = {"number", "string", "name", "op"};

  record Token(String kind, String text) {}

  private static final class Unsupported extends Exception {
    Unsupported() {
      super(null, null, false, false);
    }
  }

  /** Names bound by comprehension macros, found in the text as rules.py does (a regex, not the AST). */
  static Set<String> macroBindings(String expression) {
    Set<String> out = new TreeSet<>();
    Matcher m = MACRO_BINDING.matcher(expression);
    while (m.find()) out.add(m.group(1));
    return out;
  }

  /** Python's str.isspace() for one code point. */
  static boolean isPySpace(int c) {
    return Character.isWhitespace(c) || Character.isSpaceChar(c) || c == 0x85;
  }

  static String rstrip(String s) {
    int end = s.length();
    while (end > 0) {
      int c = s.codePointBefore(end);
      if (!isPySpace(c)) break;
      end -= Character.charCount(c);
    }
    return s.substring(0, end);
  }

  static List<Token> tokens(String expression) throws Unsupported {
    List<Token> tokens = new ArrayList<>();
    int position = 0;
    int end = rstrip(expression).length();
    Matcher m = TOKEN.matcher(expression);
    while (position < end) {
      m.region(position, expression.length());
      if (!m.lookingAt()) throw new Unsupported();
      String kind = null;
      for (String k : KINDS) {
        if (m.group(k) != null) {
          kind = k;
          break;
        }
      }
      if (kind == null) throw new Unsupported();  // only whitespace left: cannot happen before `end`
      String text = m.group(kind);
      if (text.equals("//")) throw new Unsupported();
      boolean glued = m.start(kind) == position && !tokens.isEmpty() && isAtom(tokens.get(tokens.size() - 1).kind);
      if (glued && isAtom(kind)) throw new Unsupported();
      tokens.add(new Token(kind, text));
      position = m.end();
    }
    return tokens;
  }

  private static boolean isAtom(String kind) {
    return kind.equals("number") || kind.equals("string") || kind.equals("name");
  }

  /** L if the expression is a top-level conjunction with a conjunct {@code event.name == L} (or L == ...). */
  static String eventNameGuard(String expression) {
    List<Token> tokens;
    try {
      tokens = tokens(expression);
    } catch (Unsupported e) {
      return null;
    }
    List<List<Token>> conjuncts = new ArrayList<>();
    conjuncts.add(new ArrayList<>());
    int depth = 0;
    for (Token t : tokens) {
      if (t.kind.equals("op")) {
        if (t.text.equals("(") || t.text.equals("[") || t.text.equals("{")) depth++;
        if (t.text.equals(")") || t.text.equals("]") || t.text.equals("}")) depth--;
        if (depth == 0 && (t.text.equals("||") || t.text.equals("?"))) return null;
        if (depth == 0 && t.text.equals("&&")) {
          conjuncts.add(new ArrayList<>());
          continue;
        }
      }
      conjuncts.get(conjuncts.size() - 1).add(t);
    }
    List<Token> nameRef = List.of(new Token("name", "event"), new Token("op", "."), new Token("name", "name"));
    Token equals = new Token("op", "==");
    for (List<Token> c : conjuncts) {
      if (c.size() != 5) continue;
      if (c.subList(0, 3).equals(nameRef) && c.get(3).equals(equals) && c.get(4).kind.equals("string")) {
        String s = c.get(4).text;
        return s.substring(1, s.length() - 1);
      }
      if (c.subList(2, 5).equals(nameRef) && c.get(1).equals(equals) && c.get(0).kind.equals("string")) {
        String s = c.get(0).text;
        return s.substring(1, s.length() - 1);
      }
    }
    return null;
  }
}
