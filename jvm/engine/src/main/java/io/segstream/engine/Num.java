package io.segstream.engine;

import java.math.BigDecimal;
import java.math.BigInteger;

/** Python's int/float arithmetic on stat values: ints are {@code Long} (exact; a total that leaves
 * 64 bits becomes a double, operators/stats.py fit_int), floats {@code Double}. */
final class Num {
  private Num() {}

  static final BigInteger TWO_53 = BigInteger.ONE.shiftLeft(53);

  /** stats.number: the value if a CEL rule can hold it as a number (not bool, int in 64 bits, not NaN). */
  static Object number(Object v) {
    if (v instanceof Long) return v;
    if (v instanceof Double d) return d.isNaN() ? null : v;
    return null;
  }

  /** stats.scalar: input for first/last/distinct; null counts as missing. */
  static Object scalar(Object v) {
    if (v instanceof String || v instanceof Boolean) return v;
    return number(v);
  }

  /** fit_int(a + b) for two numbers (Long or Double). */
  static Object add(Object a, Object b) {
    if (a instanceof Long x && b instanceof Long y) {
      long r = x + y;
      if (((x ^ r) & (y ^ r)) < 0) return BigInteger.valueOf(x).add(BigInteger.valueOf(y)).doubleValue();
      return r;
    }
    return toDouble(a) + toDouble(b);
  }

  static double toDouble(Object n) {
    return n instanceof Long l ? (double) l : (Double) n;
  }

  /** Python's sum(items) (start 0, left to right; ints exact without bound) followed by fit_int. */
  static Object sum(Iterable<?> items) {
    BigInteger exact = BigInteger.ZERO;
    long small = 0;
    boolean big = false;
    double f = 0;
    boolean isFloat = false;
    for (Object item : items) {
      if (isFloat) {
        f += toDouble(item);
      } else if (item instanceof Long l) {
        if (!big) {
          long r = small + l;
          if (((small ^ r) & (l ^ r)) < 0) {
            big = true;
            exact = BigInteger.valueOf(small).add(BigInteger.valueOf(l));
          } else {
            small = r;
          }
        } else {
          exact = exact.add(BigInteger.valueOf(l));
        }
      } else {
        double start = big ? exact.doubleValue() : (double) small;
        f = start + (Double) item;
        isFloat = true;
      }
    }
    if (isFloat) return f;
    if (!big) return small;
    return exact.bitLength() <= 63 ? (Object) exact.longValue() : (Object) exact.doubleValue();
  }

  /** Python's true division {@code a / b} for a number and a positive int count (int/int correctly rounded). */
  static double div(Object a, long count) {
    if (a instanceof Double d) return d / (double) count;
    long x = (Long) a;
    if (Math.abs(x) <= (1L << 53) && x != Long.MIN_VALUE && count <= (1L << 53)) return (double) x / (double) count;
    return trueDivide(BigInteger.valueOf(x), BigInteger.valueOf(count));
  }

  /** Correctly rounded n / d (d > 0), as CPython's long_true_divide. */
  static double trueDivide(BigInteger n, BigInteger d) {
    if (n.signum() == 0) return 0.0;
    boolean negative = n.signum() < 0;
    BigInteger a = n.abs();
    // Scale so that the quotient has at least 66 bits, then fold the remainder into a sticky bit.
    int shift = 66 - (a.bitLength() - d.bitLength());
    BigInteger num = shift > 0 ? a.shiftLeft(shift) : a;
    BigInteger den = shift < 0 ? d.shiftLeft(-shift) : d;
    BigInteger[] qr = num.divideAndRemainder(den);
    BigInteger q = qr[0].shiftLeft(1);
    if (qr[1].signum() != 0) q = q.setBit(0);
    double r = Math.scalb(q.doubleValue(), -shift - 1);
    return negative ? -r : r;
  }

  /** Python's numeric comparison of two numbers (exact across int and float; no NaN here). */
  static int compare(Object a, Object b) {
    if (a instanceof Long x && b instanceof Long y) return Long.compare(x, y);
    if (a instanceof Double x && b instanceof Double y) {
      double p = x, q = y;
      return p < q ? -1 : p > q ? 1 : 0;
    }
    if (a instanceof Long x) return -compareDoubleLong((Double) b, x);
    return compareDoubleLong((Double) a, (Long) b);
  }

  private static int compareDoubleLong(double d, long l) {
    if (d == Double.POSITIVE_INFINITY) return 1;
    if (d == Double.NEGATIVE_INFINITY) return -1;
    return new BigDecimal(d).compareTo(BigDecimal.valueOf(l));
  }

  /** stats.same_value: same type, equal, and for doubles the same sign of zero (NaN is never the same). */
  static boolean sameValue(Object a, Object b) {
    if (a == null || b == null) return a == b;
    if (a.getClass() != b.getClass()) return false;
    if (a instanceof Double x) {
      double p = x, q = (Double) b;
      return p == q && Math.copySign(1.0, p) == Math.copySign(1.0, q);
    }
    return a.equals(b);
  }

  static boolean winsMinTie(Object n, Object o) {
    if (n.getClass() != o.getClass()) return n instanceof Long;
    return n instanceof Double x && Math.copySign(1.0, x) < Math.copySign(1.0, (Double) o);
  }

  static boolean winsMaxTie(Object n, Object o) {
    if (n.getClass() != o.getClass()) return n instanceof Long;
    return n instanceof Double x && Math.copySign(1.0, x) > Math.copySign(1.0, (Double) o);
  }

  static Object foldMin(Object partial, Object x) {
    if (partial == null) return x;
    int c = compare(x, partial);
    return c < 0 || (c == 0 && winsMinTie(x, partial)) ? x : partial;
  }

  static Object foldMax(Object partial, Object x) {
    if (partial == null) return x;
    int c = compare(x, partial);
    return c > 0 || (c == 0 && winsMaxTie(x, partial)) ? x : partial;
  }
}
