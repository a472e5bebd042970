package io.segstream.engine;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;

/** Python's float formatting: the shortest digits that read back as the same double (repr's
 * digits), laid out like Python {@code repr} or like msgspec's JSON encoder. JDK 17's
 * {@code Double.toString} is not always shortest ({@code 1e23} prints as {@code 9.999999999999999E22}). */
final class PyFloat {
  private PyFloat() {}

  /** Shortest round-trip digits of a finite, non-zero |d|, and the decimal point position:
   * |d| = 0.DIGITS * 10^decpt. */
  record Digits(String digits, int decpt) {}

  static Digits digits(double d) {
    double a = Math.abs(d);
    Digits fast = fastDigits(a);
    if (fast != null) return fast;
    return searchDigits(a);
  }

  /** The same digits as {@link #searchDigits} by a cheaper way, for the common cases, else null.
   * An integral a below 1e15 (so below 2^53, its ulp at most 1): its digits without trailing zeros
   * (any decimal with fewer significant digits is at least 1 away, more than half an ulp). Else
   * the digits of Double.toString (JDK 17: always reads back, not always shortest): at most 15
   * of them make the only decimal of that length reading back as a (15-digit decimals are further
   * apart than a double's round-trip interval); it is the shortest if no decimal one digit
   * shorter reads back (if a p-digit decimal reads back, so does a (p+1)-digit one). */
  static Digits fastDigits(double a) {
    if (!(a > 0) || Double.isInfinite(a)) return null;
    if (a < 1e15 && a == Math.rint(a)) {
      String s = Long.toString((long) a);
      int end = s.length();
      while (end > 1 && s.charAt(end - 1) == '0') end--;
      return new Digits(s.substring(0, end), s.length());
    }
    String s = Double.toString(a);
    int e = s.indexOf('E');
    int exp10 = e < 0 ? 0 : Integer.parseInt(s.substring(e + 1));
    String mantissa = e < 0 ? s : s.substring(0, e);
    int dot = mantissa.indexOf('.');
    if (dot < 0) return null;
    String all = mantissa.substring(0, dot) + mantissa.substring(dot + 1);
    int decpt = dot + exp10;
    int start = 0;
    while (start < all.length() && all.charAt(start) == '0') {
      start++;
      decpt--;
    }
    int end = all.length();
    while (end > start && all.charAt(end - 1) == '0') end--;
    if (end == start || end - start > 15) return null;
    String digits = all.substring(start, end);
    if (digits.length() > 1 && nearestReadingBack(new BigDecimal(a), a, digits.length() - 1) != null) return null;
    return new Digits(digits, decpt);
  }

  static Digits searchDigits(double a) {
    BigDecimal exact = new BigDecimal(a);
    // Python's repr (David Gay's shortest mode): the fewest significant digits that read back as
    // d, and at that length the candidate nearest the exact value. At a power of two the
    // round-trip interval is narrower below than above, so the nearest p-digit decimal (plain
    // rounding) may not read back while the one on the other side does: look at both neighbours.
    // Some p-digit decimal reads back => so does one with p + 1 digits: binary search on p.
    int lo = 1, hi = 17;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (nearestReadingBack(exact, a, mid) != null) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    BigDecimal abs = nearestReadingBack(exact, a, lo).stripTrailingZeros();
    String digits = abs.unscaledValue().toString();
    return new Digits(digits, digits.length() - abs.scale());
  }

  /** Of the two p-digit decimals around {@code exact}, the nearest that parses back to {@code a}
   * (a tie goes to the even last digit), or null. */
  private static BigDecimal nearestReadingBack(BigDecimal exact, double a, int p) {
    BigDecimal down = exact.round(new MathContext(p, RoundingMode.FLOOR));
    BigDecimal up = exact.round(new MathContext(p, RoundingMode.CEILING));
    boolean downOk = Double.parseDouble(down.toString()) == a;
    boolean upOk = Double.parseDouble(up.toString()) == a;
    if (downOk && upOk) {
      int cmp = exact.subtract(down).compareTo(up.subtract(exact));
      if (cmp != 0) return cmp < 0 ? down : up;
      return exact.round(new MathContext(p, RoundingMode.HALF_EVEN));
    }
    return downOk ? down : upOk ? up : null;
  }

  /** Python {@code repr(d)}. */
  static String repr(double d) {
    if (Double.isNaN(d)) return "nan";
    if (Double.isInfinite(d)) return d > 0 ? "inf" : "-inf";
    if (d == 0) return 1 / d < 0 ? "-0.0" : "0.0";
    Digits g = digits(d);
    int exp = g.decpt - 1;
    String sign = d < 0 ? "-" : "";
    if (exp < -4 || exp >= 16) {
      return sign + mantissa(g.digits) + "e" + (exp < 0 ? "-" : "+") + (Math.abs(exp) < 10 ? "0" : "") + Math.abs(exp);
    }
    return sign + fixed(g);
  }

  /** msgspec's JSON for a finite double: repr's digits, an exponent below 1e-5 or from 1e16 on,
   * written {@code 1e16}, {@code 1.5e-7}. Non-finite values are JSON {@code null} (the caller's job). */
  static String json(double d) {
    if (d == 0) return 1 / d < 0 ? "-0.0" : "0.0";
    Digits g = digits(d);
    int exp = g.decpt - 1;
    String sign = d < 0 ? "-" : "";
    if (exp < -5 || exp >= 16) return sign + mantissa(g.digits) + "e" + exp;
    return sign + fixed(g);
  }

  private static String mantissa(String digits) {
    return digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
  }

  private static String fixed(Digits g) {
    String digits = g.digits;
    int decpt = g.decpt;
    if (decpt <= 0) return "0." + "0".repeat(-decpt) + digits;
    if (decpt >= digits.length()) return digits + "0".repeat(decpt - digits.length()) + ".0";
    return digits.substring(0, decpt) + "." + digits.substring(decpt);
  }
}
