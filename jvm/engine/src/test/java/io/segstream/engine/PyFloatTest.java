package io.segstream.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** PyFloat's fast path gives the digits of the exact search wherever it answers. */
class PyFloatTest {
  private static void same(double a) {
    PyFloat.Digits fast = PyFloat.fastDigits(a);
    if (fast != null) assertEquals(PyFloat.searchDigits(a), fast, () -> "digits of " + a);
  }

  @Test
  void fastDigitsAgreeWithTheSearch() {
    SplittableRandom random = new SplittableRandom(7);
    for (int i = 0; i < 200_000; i++) {
      same(Math.abs(Double.longBitsToDouble(random.nextLong())));  // any bit pattern
      same(random.nextLong(1, 1L << 53) / Math.pow(10, random.nextInt(0, 20)));  // decimal-looking
      same((double) random.nextLong(1, 1_000_000_000_000_000L));  // integral, around 1e15 and below
      same(random.nextInt(1, 100_000) / (double) random.nextInt(1, 1000));  // averages
    }
    for (double a : new double[] {1e23, 2e-3, 5e-324, Double.MIN_NORMAL, Double.MAX_VALUE, 1e15, 1e16, 0.1, 0.3,
        1.0 / 3, 2.0 / 3, 9007199254740993.0, 123456789012345.0, 999999999999999.0, 1e-5, 1.5e-7}) {
      same(a);
    }
  }
}
