package io.segstream.engine;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One user's keyed state (operators/evaluator.py UserState) and its compact binary form, the JVM
 * engine's own (not the Python msgpack blob): a format version byte, then varints and tagged
 * values. Round-trips exactly (Long vs Double, -0.0, NaN bits, map order, sketches byte for byte).
 *
 * <p>Format 2 is format 1 followed by the remembered events ({@link #recent}); a state with none is
 * still written as format 1, byte for byte what the release before de-duplication wrote, and both
 * are read (savepoints of that release restore; docs/operations.md).
 */
public final class UserState {
  /** The layout without {@link #recent}. */
  public static final int FORMAT_VERSION = 1;
  /** {@link #FORMAT_VERSION} followed by {@link #recent}. */
  public static final int FORMAT_WITH_RECENT = 2;

  /** A remembered event: its event_id, the user's greatest ts when it was processed, and its
   * evaluation as rendered then (UTF-8 JSON): the receipt a retry is answered with. */
  public record Recent(String eventId, long stamp, byte[] receipt) {}

  public long seq;
  /** Greatest event ts seen, or null. */
  public Long maxTs;
  /** 32-bit fingerprint of each stored stat's spec, parallel to {@link #stats}. */
  public int[] statFps;
  public List<Object[]> stats;
  /** Sorted ids of the rules matched at the previous event. */
  public List<String> segments;
  public BitSet segmentMask;
  public BitSet errorMask;
  public long rulesFp;
  /** Expired (tombstone): only {@link #seq} is kept. */
  public boolean expired;
  /** De-duplication (catalogue dedup_events): the user's last events, oldest first. */
  public List<Recent> recent = new ArrayList<>();

  public UserState(long seq, Long maxTs, int[] statFps, List<Object[]> stats, List<String> segments,
      BitSet segmentMask, BitSet errorMask, long rulesFp, boolean expired) {
    this.seq = seq;
    this.maxTs = maxTs;
    this.statFps = statFps;
    this.stats = stats;
    this.segments = segments;
    this.segmentMask = segmentMask;
    this.errorMask = errorMask;
    this.rulesFp = rulesFp;
    this.expired = expired;
  }

  // --- encoding -------------------------------------------------------------------------------

  private static final int NULL = 0, LONG = 1, DOUBLE = 2, STRING = 3, TRUE = 4, FALSE = 5, DIGESTS = 6, SKETCH = 7,
      BUCKETS = 8, LIST = 9, UTF16 = 10;

  public byte[] encode() {
    Out out = new Out();
    out.write(recent.isEmpty() ? FORMAT_VERSION : FORMAT_WITH_RECENT);
    out.varlong(seq);
    out.write((maxTs == null ? 0 : 1) | (expired ? 2 : 0));
    if (maxTs != null) out.zigzag(maxTs);
    out.varlong(statFps.length);
    for (int fp : statFps) out.fixed(fp, 4);
    for (Object[] s : stats) value(out, s);
    out.varlong(segments.size());
    for (String id : segments) value(out, id);
    bits(out, segmentMask);
    bits(out, errorMask);
    out.fixed(rulesFp, 8);
    if (!recent.isEmpty()) {
      out.varlong(recent.size());
      for (Recent r : recent) {
        value(out, r.eventId());
        out.zigzag(r.stamp());
        out.bytes(r.receipt());
      }
    }
    return out.toByteArray();
  }

  public static UserState decode(byte[] blob) {
    In in = new In(blob);
    int version = in.u8();
    if (version != FORMAT_VERSION && version != FORMAT_WITH_RECENT) {
      throw new IllegalArgumentException(
          "user state format " + version + " is not " + FORMAT_VERSION + " or " + FORMAT_WITH_RECENT);
    }
    long seq = in.varlong();
    int flags = in.u8();
    Long maxTs = (flags & 1) != 0 ? in.zigzag() : null;
    int n = (int) in.varlong();
    int[] fps = new int[n];
    for (int i = 0; i < n; i++) fps[i] = (int) in.fixed(4);
    List<Object[]> stats = new ArrayList<>(n);
    for (int i = 0; i < n; i++) stats.add((Object[]) value(in));
    int m = (int) in.varlong();
    List<String> segments = new ArrayList<>(m);
    for (int i = 0; i < m; i++) segments.add((String) value(in));
    BitSet segmentMask = bits(in);
    BitSet errorMask = bits(in);
    long rulesFp = in.fixed(8);
    List<Recent> recent = new ArrayList<>();
    if (version == FORMAT_WITH_RECENT) {
      int r = (int) in.varlong();
      for (int i = 0; i < r; i++) recent.add(new Recent((String) value(in), in.zigzag(), in.bytes()));
    }
    if (in.at != blob.length) throw new IllegalArgumentException("user state has trailing bytes");
    UserState user = new UserState(seq, maxTs, fps, stats, segments, segmentMask, errorMask, rulesFp, (flags & 2) != 0);
    user.recent = recent;
    return user;
  }

  private static void bits(Out out, BitSet b) {
    long[] words = b.toLongArray();
    out.varlong(words.length);
    for (long w : words) out.varlong(w);
  }

  private static BitSet bits(In in) {
    long[] words = new long[(int) in.varlong()];
    for (int i = 0; i < words.length; i++) words[i] = in.varlong();
    return BitSet.valueOf(words);
  }

  private static void value(Out out, Object v) {
    if (v == null) {
      out.write(NULL);
    } else if (v instanceof Long l) {
      out.write(LONG);
      out.zigzag(l);
    } else if (v instanceof Double d) {
      out.write(DOUBLE);
      out.fixed(Double.doubleToRawLongBits(d), 8);
    } else if (v instanceof String s) {
      if (hasLoneSurrogate(s)) {
        out.write(UTF16);
        out.varlong(s.length());
        for (int i = 0; i < s.length(); i++) out.fixed(s.charAt(i), 2);
      } else {
        out.write(STRING);
        out.bytes(s.getBytes(StandardCharsets.UTF_8));
      }
    } else if (v instanceof Boolean b) {
      out.write(b ? TRUE : FALSE);
    } else if (v instanceof byte[] digests) {
      out.write(DIGESTS);
      out.bytes(digests);
    } else if (v instanceof Distinct.Sketch sketch) {
      out.write(SKETCH);
      out.bytes(sketch.bytes());
    } else if (v instanceof LinkedHashMap<?, ?> buckets) {
      out.write(BUCKETS);
      out.varlong(buckets.size());
      for (Map.Entry<?, ?> e : buckets.entrySet()) {
        out.zigzag((Long) e.getKey());
        value(out, e.getValue());
      }
    } else if (v instanceof Object[] list) {
      out.write(LIST);
      out.varlong(list.length);
      for (Object item : list) value(out, item);
    } else {
      throw new IllegalArgumentException("cannot store a " + v.getClass().getName());
    }
  }

  private static Object value(In in) {
    int tag = in.u8();
    switch (tag) {
      case NULL:
        return null;
      case LONG:
        return in.zigzag();
      case DOUBLE:
        return Double.longBitsToDouble(in.fixed(8));
      case STRING:
        return new String(in.bytes(), StandardCharsets.UTF_8);
      case UTF16: {
        int n = (int) in.varlong();
        char[] chars = new char[n];
        for (int i = 0; i < n; i++) chars[i] = (char) in.fixed(2);
        return new String(chars);
      }
      case TRUE:
        return Boolean.TRUE;
      case FALSE:
        return Boolean.FALSE;
      case DIGESTS:
        return in.bytes();
      case SKETCH:
        return new Distinct.Sketch(in.bytes());
      case BUCKETS: {
        int n = (int) in.varlong();
        LinkedHashMap<Long, Object> map = new LinkedHashMap<>();
        for (int i = 0; i < n; i++) {
          long k = in.zigzag();
          map.put(k, value(in));
        }
        return map;
      }
      case LIST: {
        Object[] list = new Object[(int) in.varlong()];
        for (int i = 0; i < list.length; i++) list[i] = value(in);
        return list;
      }
      default:
        throw new IllegalArgumentException("user state: unknown value tag " + tag);
    }
  }

  private static boolean hasLoneSurrogate(String s) {
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) i++;
      else if (Character.isSurrogate(c)) return true;
    }
    return false;
  }

  /** A growable byte buffer (not ByteArrayOutputStream: its synchronized write(int) per byte was
   * a quarter of the job's per-event CPU in a JFR profile, docs/benchmarks.md). */
  private static final class Out {
    private byte[] buf = new byte[256];
    private int n;

    void write(int b) {
      if (n == buf.length) buf = Arrays.copyOf(buf, n * 2);
      buf[n++] = (byte) b;
    }

    void write(byte[] b, int off, int len) {
      if (n + len > buf.length) buf = Arrays.copyOf(buf, Math.max(n * 2, n + len));
      System.arraycopy(b, off, buf, n, len);
      n += len;
    }

    byte[] toByteArray() {
      return Arrays.copyOf(buf, n);
    }

    void varlong(long v) {
      while ((v & ~0x7FL) != 0) {
        write((int) ((v & 0x7F) | 0x80));
        v >>>= 7;
      }
      write((int) v);
    }

    void zigzag(long v) {
      varlong((v << 1) ^ (v >> 63));
    }

    void fixed(long v, int bytes) {
      for (int i = bytes - 1; i >= 0; i--) write((int) (v >>> (8 * i)));
    }

    void bytes(byte[] b) {
      varlong(b.length);
      write(b, 0, b.length);
    }
  }

  private static final class In {
    final byte[] b;
    int at;

    In(byte[] b) {
      this.b = b;
    }

    int u8() {
      if (at >= b.length) throw new IllegalArgumentException("user state is truncated");
      return b[at++] & 0xff;
    }

    long varlong() {
      long v = 0;
      for (int shift = 0; shift < 64; shift += 7) {
        int x = u8();
        v |= (long) (x & 0x7F) << shift;
        if ((x & 0x80) == 0) return v;
      }
      throw new IllegalArgumentException("user state: bad varint");
    }

    long zigzag() {
      long v = varlong();
      return (v >>> 1) ^ -(v & 1);
    }

    long fixed(int bytes) {
      long v = 0;
      for (int i = 0; i < bytes; i++) v = (v << 8) | u8();
      return v;
    }

    byte[] bytes() {
      int n = (int) varlong();
      if (n < 0 || n > b.length - at) throw new IllegalArgumentException("user state is truncated");
      byte[] out = Arrays.copyOfRange(b, at, at + n);
      at += n;
      return out;
    }
  }
}
