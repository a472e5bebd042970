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
    BigDecimal exact = new BigDecimal(Math.abs(d));
    // Rounding to p significant digits round-trips for every p at or above the shortest: binary search.
    int lo = 1, hi = 17;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      BigDecimal r = exact.round(new MathContext(mid, RoundingMode.HALF_EVEN));
      if (r.doubleValue() == Math.abs(d)) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    BigDecimal best = exact.round(new MathContext(lo, RoundingMode.HALF_EVEN));
    BigDecimal abs = best.stripTrailingZeros();
    String digits = abs.unscaledValue().toString();
    return new Digits(digits, digits.length() - abs.scale());
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
