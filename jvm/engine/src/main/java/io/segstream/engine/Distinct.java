package io.segstream.engine;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.apache.datasketches.hll.HllSketch;
import org.apache.datasketches.hll.TgtHllType;
import org.apache.datasketches.hll.Union;
import org.apache.datasketches.memory.Memory;

/** Distinct containers (operators/stats.py): concatenated 8-byte BLAKE2b digests up to
 * {@link #EXACT_LIMIT} values ({@code byte[]}), then an HLL sketch in its updatable form
 * ({@link Sketch}), fed the digest as a signed big-endian 64-bit int like Python feeds it. */
final class Distinct {
  private Distinct() {}

  static final int EXACT_LIMIT = 64;
  static final int LG_K = 12;
  static final TgtHllType TYPE = TgtHllType.HLL_4;
  static final int DIGEST_BYTES = 8;
  static final byte[] EMPTY = new byte[0];

  /** A serialized HLL sketch (updatable form). */
  record Sketch(byte[] bytes) {
    @Override
    public boolean equals(Object o) {
      return o instanceof Sketch s && Arrays.equals(bytes, s.bytes);
    }

    @Override
    public int hashCode() {
      return Arrays.hashCode(bytes);
    }
  }

  /** distinct_digest: the 8-byte identity of a value, or null if it is no input. */
  static byte[] digest(Object value) {
    String key;
    if (value instanceof String s) {
      key = "s" + s;
    } else if (value instanceof Boolean b) {
      key = b ? "t" : "f";
    } else {
      Object n = Num.number(value);
      if (n == null) return null;
      if (n instanceof Double d) {
        double x = d;
        if (x == Math.rint(x) && x >= -0x1p63 && x < 0x1p63) key = "n" + (long) x;
        else key = "n" + PyFloat.repr(x);
      } else {
        key = "n" + n;
      }
    }
    return Blake2b.digest(surrogatePass(key), DIGEST_BYTES);
  }

  /** key.encode("utf-8", "surrogatepass"): UTF-8, with a lone surrogate as its 3-byte form. */
  static byte[] surrogatePass(String s) {
    boolean surrogates = false;
    for (int i = 0; i < s.length() && !surrogates; i++) surrogates = Character.isSurrogate(s.charAt(i));
    if (!surrogates) return s.getBytes(StandardCharsets.UTF_8);  // the same bytes, without the per-byte stream
    ByteArrayOutputStream out = new ByteArrayOutputStream(s.length() + 8);
    for (int i = 0; i < s.length(); ) {
      int cp = s.codePointAt(i);
      i += Character.charCount(cp);
      if (cp < 0x80) {
        out.write(cp);
      } else if (cp < 0x800) {
        out.write(0xC0 | (cp >> 6));
        out.write(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        out.write(0xE0 | (cp >> 12));
        out.write(0x80 | ((cp >> 6) & 0x3F));
        out.write(0x80 | (cp & 0x3F));
      } else {
        out.write(0xF0 | (cp >> 18));
        out.write(0x80 | ((cp >> 12) & 0x3F));
        out.write(0x80 | ((cp >> 6) & 0x3F));
        out.write(0x80 | (cp & 0x3F));
      }
    }
    return out.toByteArray();
  }

  record Added(Object container, long count) {}

  /** add_key: (container, digest) -> (the new container, its distinct count; an estimate is
   * rounded half to even like Python's round). */
  static Added add(Object container, byte[] digest) {
    HllSketch sketch;
    if (container instanceof byte[] exact) {
      if (holds(exact, digest)) return new Added(exact, exact.length / DIGEST_BYTES);
      if (exact.length < EXACT_LIMIT * DIGEST_BYTES) {
        byte[] grown = Arrays.copyOf(exact, exact.length + DIGEST_BYTES);
        System.arraycopy(digest, 0, grown, exact.length, DIGEST_BYTES);
        return new Added(grown, grown.length / DIGEST_BYTES);
      }
      sketch = sketchOf(exact);
    } else {
      sketch = HllSketch.heapify(Memory.wrap(((Sketch) container).bytes()));
    }
    sketch.update(ByteBuffer.wrap(digest).getLong());
    return new Added(new Sketch(sketch.toUpdatableByteArray()), (long) Math.rint(sketch.getEstimate()));
  }

  /** union_count: exact while every container is exact, else an HLL union estimate (same order as Python). */
  static long unionCount(List<Object> containers) {
    boolean exact = true;
    for (Object c : containers) exact &= c instanceof byte[];
    if (exact) {
      Set<Long> seen = new HashSet<>();
      for (Object c : containers) {
        ByteBuffer b = ByteBuffer.wrap((byte[]) c);
        while (b.remaining() >= DIGEST_BYTES) seen.add(b.getLong());
      }
      return seen.size();
    }
    Union union = new Union(LG_K);
    for (Object c : containers) {
      union.update(c instanceof byte[] e ? sketchOf(e) : HllSketch.heapify(Memory.wrap(((Sketch) c).bytes())));
    }
    return (long) Math.rint(union.getEstimate());
  }

  private static boolean holds(byte[] container, byte[] digest) {
    outer:
    for (int at = 0; at + DIGEST_BYTES <= container.length; at += DIGEST_BYTES) {
      for (int k = 0; k < DIGEST_BYTES; k++) {
        if (container[at + k] != digest[k]) continue outer;
      }
      return true;
    }
    return false;
  }

  private static HllSketch sketchOf(byte[] container) {
    HllSketch sketch = new HllSketch(LG_K, TYPE);
    ByteBuffer b = ByteBuffer.wrap(container);
    while (b.remaining() >= DIGEST_BYTES) sketch.update(b.getLong());
    return sketch;
  }
}
