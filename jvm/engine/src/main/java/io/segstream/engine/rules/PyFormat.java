package io.segstream.engine.rules;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;

/** Python and Rust text formats the rules engine must reproduce byte for byte. */
final class PyFormat {
  private PyFormat() {}

  /** Python {@code repr(str)} (as in the reason {@code rule 'x': ...}). */
  static String repr(String s) {
    char quote = s.indexOf('\'') >= 0 && s.indexOf('"') < 0 ? '"' : '\'';
    StringBuilder sb = new StringBuilder(s.length() + 2).append(quote);
    for (int i = 0; i < s.length(); ) {
      int c = s.codePointAt(i);
      i += Character.charCount(c);
      if (c == quote || c == '\\') {
        sb.append('\\').appendCodePoint(c);
      } else if (c == '\t') {
        sb.append("\\t");
      } else if (c == '\n') {
        sb.append("\\n");
      } else if (c == '\r') {
        sb.append("\\r");
      } else if (c < ' ' || c == 0x7f) {
        sb.append(String.format("\\x%02x", c));
      } else if (c < 0x7f || isPrintable(c)) {
        sb.appendCodePoint(c);
      } else if (c <= 0xff) {
        sb.append(String.format("\\x%02x", c));
      } else if (c <= 0xffff) {
        sb.append(String.format("\\u%04x", c));
      } else {
        sb.append(String.format("\\U%08x", c));
      }
    }
    return sb.append(quote).toString();
  }

  /** Python's str.isprintable() for one code point (Unicode database of the JDK: may lag Python's). */
  static boolean isPrintable(int c) {
    if (c == ' ') return true;
    switch (Character.getType(c)) {
      case Character.CONTROL:
      case Character.FORMAT:
      case Character.SURROGATE:
      case Character.PRIVATE_USE:
      case Character.UNASSIGNED:
      case Character.LINE_SEPARATOR:
      case Character.PARAGRAPH_SEPARATOR:
      case Character.SPACE_SEPARATOR:
        return false;
      default:
        return true;
    }
  }

  /** Python {@code json.dumps(str)} with the defaults (ensure_ascii=True). */
  static void jsonString(StringBuilder sb, String s) {
    sb.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);  // UTF-16 units: Python writes a non-BMP char as its surrogate pair too
      switch (c) {
        case '"': sb.append("\\\""); break;
        case '\\': sb.append("\\\\"); break;
        case '\n': sb.append("\\n"); break;
        case '\r': sb.append("\\r"); break;
        case '\t': sb.append("\\t"); break;
        case '\b': sb.append("\\b"); break;
        case '\f': sb.append("\\f"); break;
        default:
          if (c < 0x20 || c >= 0x7f) sb.append(String.format("\\u%04x", (int) c));
          else sb.append(c);
      }
    }
    sb.append('"');
  }

  /** Python {@code json.dumps([a, b])}. */
  static String jsonPair(String a, String b) {
    StringBuilder sb = new StringBuilder("[");
    jsonString(sb, a);
    sb.append(", ");
    jsonString(sb, b);
    return sb.append(']').toString();
  }

  /** Rust's {@code Display} of an f64 (what cel-rust's {@code string(double)} gives): the shortest
   * round-trip digits, never an exponent, no trailing {@code .0}; {@code inf}, {@code -inf}, {@code NaN}. */
  static String rustDisplay(double d) {
    if (Double.isNaN(d)) return "NaN";
    if (Double.isInfinite(d)) return d > 0 ? "inf" : "-inf";
    if (d == 0) return 1 / d < 0 ? "-0" : "0";
    BigDecimal shortest = shortest(d);
    String s = shortest.stripTrailingZeros().toPlainString();
    return s;
  }

  /** The decimal with the fewest significant digits that reads back as d, nearest to d's exact value. */
  static BigDecimal shortest(double d) {
    BigDecimal exact = new BigDecimal(d);
    for (int p = 1; p <= 17; p++) {
      BigDecimal r = exact.round(new MathContext(p, RoundingMode.HALF_EVEN));
      if (r.doubleValue() == d) return r;
    }
    return exact;
  }
}
