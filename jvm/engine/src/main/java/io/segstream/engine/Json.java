package io.segstream.engine;

import java.math.BigInteger;
import java.util.List;
import java.util.Map;

/** JSON text of an evaluation or expiry record, byte-identical to the Python job's
 * ({@code msgspec.json.Encoder().encode}): no spaces, keys in map order, floats with Python's
 * shortest digits in msgspec's layout, NaN and infinities as {@code null}, non-ASCII as raw UTF-8,
 * {@code " \ } and control characters escaped ({@code \n \t \r \b \f}, else {@code \\u00XX}). */
public final class Json {
  private Json() {}

  public static String render(Object value) {
    StringBuilder out = new StringBuilder(256);
    write(out, value);
    return out.toString();
  }

  static void write(StringBuilder out, Object value) {
    if (value == null) {
      out.append("null");
    } else if (value instanceof String s) {
      string(out, s);
    } else if (value instanceof Long || value instanceof Integer || value instanceof BigInteger) {
      out.append(value);
    } else if (value instanceof Double d) {
      out.append(Double.isFinite(d) ? PyFloat.json(d) : "null");
    } else if (value instanceof Boolean b) {
      out.append(b ? "true" : "false");
    } else if (value instanceof Map<?, ?> map) {
      out.append('{');
      boolean first = true;
      for (Map.Entry<?, ?> e : map.entrySet()) {
        if (!first) out.append(',');
        first = false;
        string(out, (String) e.getKey());
        out.append(':');
        write(out, e.getValue());
      }
      out.append('}');
    } else if (value instanceof List<?> list) {
      out.append('[');
      for (int i = 0; i < list.size(); i++) {
        if (i > 0) out.append(',');
        write(out, list.get(i));
      }
      out.append(']');
    } else {
      throw new IllegalArgumentException("not a JSON value: " + value.getClass().getName());
    }
  }

  static void string(StringBuilder out, String s) {
    out.append('"');
    int run = 0;  // start of the characters not yet written that need no escape
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c >= 0x20 && c != '"' && c != '\\') continue;
      out.append(s, run, i);
      run = i + 1;
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        case '\n' -> out.append("\\n");
        case '\t' -> out.append("\\t");
        case '\r' -> out.append("\\r");
        case '\b' -> out.append("\\b");
        case '\f' -> out.append("\\f");
        default -> out.append(String.format("\\u%04x", (int) c));
      }
    }
    out.append(s, run, s.length());
    out.append('"');
  }
}
