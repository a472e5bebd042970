package io.segstream.flink.windows;

import java.nio.ByteBuffer;
import org.apache.datasketches.hll.HllSketch;
import org.apache.datasketches.hll.TgtHllType;
import org.apache.datasketches.hll.Union;
import org.apache.datasketches.memory.Memory;

/**
 * One open window's aggregate, kept as bytes in keyed state: count, integer and floating sums, and
 * an HLL sketch of the user ids (Apache DataSketches, lgK {@value #LG_K}: exact while small, about
 * 1.6 % relative error beyond). Layout: count (8) sumLong (8) sumDouble (8) flags (1) sketch (rest).
 */
final class Accumulator {
  static final int LG_K = 12;
  static final TgtHllType TYPE = TgtHllType.HLL_8;
  private static final int HEADER = 25;
  private static final byte HAS_SUM = 1;
  private static final byte HAS_DOUBLE = 2;
  private static final byte OVERFLOW = 4;

  long count;
  long sumLong;
  double sumDouble;
  byte flags;
  HllSketch users;

  static Accumulator empty(boolean distinct) {
    Accumulator a = new Accumulator();
    a.users = distinct ? new HllSketch(LG_K, TYPE) : null;
    return a;
  }

  static Accumulator of(byte[] bytes) {
    ByteBuffer b = ByteBuffer.wrap(bytes);
    Accumulator a = new Accumulator();
    a.count = b.getLong();
    a.sumLong = b.getLong();
    a.sumDouble = b.getDouble();
    a.flags = b.get();
    a.users = bytes.length > HEADER ? HllSketch.heapify(Memory.wrap(bytes).region(HEADER, bytes.length - HEADER)) : null;
    return a;
  }

  byte[] bytes() {
    byte[] sketch = users == null ? new byte[0] : users.toUpdatableByteArray();
    return ByteBuffer.allocate(HEADER + sketch.length).putLong(count).putLong(sumLong).putDouble(sumDouble).put(flags)
        .put(sketch).array();
  }

  void add(WindowInput in) {
    count++;
    if (users != null) users.update(in.userId);
    if (!in.hasSum) return;
    flags |= HAS_SUM;
    if (in.sumIsDouble) {
      flags |= HAS_DOUBLE;
      sumDouble += in.sumDouble;
    } else {
      try {
        sumLong = Math.addExact(sumLong, in.sumLong);
      } catch (ArithmeticException e) {
        flags |= OVERFLOW | HAS_DOUBLE;
        sumDouble += in.sumLong;
      }
    }
  }

  /** Add {@code other}'s events (a pre-aggregate of the same window, {@link WindowPreAggregate}):
   * the same result as adding them one by one (HLL union, sums as {@link #add}). */
  void merge(Accumulator other) {
    count += other.count;
    if (users != null && other.users != null) {
      Union union = new Union(LG_K);
      union.update(users);
      union.update(other.users);
      users = union.getResult(TYPE);
    }
    if ((other.flags & HAS_SUM) == 0) return;
    flags |= HAS_SUM | (other.flags & (HAS_DOUBLE | OVERFLOW));
    sumDouble += other.sumDouble;
    try {
      sumLong = Math.addExact(sumLong, other.sumLong);
    } catch (ArithmeticException e) {
      flags |= OVERFLOW | HAS_DOUBLE;
      sumDouble += other.sumLong;
    }
  }

  /** The sum: null if no event had a number, a long while every number was an integer and the
   * total fits, a double otherwise. */
  Number sum() {
    if ((flags & HAS_SUM) == 0) return null;
    if ((flags & HAS_DOUBLE) == 0) return sumLong;
    return sumDouble + sumLong;
  }

  Long distinctUsers() {
    return users == null ? null : Math.round(users.getEstimate());
  }
}
