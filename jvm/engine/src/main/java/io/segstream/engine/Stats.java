package io.segstream.engine;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Incremental aggregations, one per {@code agg} (operators/stats.py; semantics:
 * docs/semantics.md). A stat's state is an {@code Object[]} shaped like Python's list, item 0 the
 * value: Long/Double numbers, String, Boolean, null, digest containers ({@code byte[]} or
 * {@link Distinct.Sketch}), bucket maps ({@code LinkedHashMap<Long, Object>} in Python's dict
 * order) and avg partials ({@code Object[]{sum, count}}). {@code update} returns whether the value
 * may have changed (exactly as Python's: the evaluator reuses rule results on false).
 */
public final class Stats {
  private Stats() {}

  public abstract static class Aggregation {
    final String field;

    Aggregation(Catalogue.Stat spec) {
      this.field = spec.field();
    }

    public abstract Object[] initial();

    public abstract boolean update(Object[] state, Map<String, Object> values, long ts, long maxTs);

    Object input(Map<String, Object> values) {
      return values.get(field);
    }
  }

  public static Aggregation of(Catalogue.Stat spec) {
    if (spec.window() != null) return spec.agg().equals("count") ? new WindowCount(spec) : new Window(spec);
    return switch (spec.agg()) {
      case "count" -> new Count(spec);
      case "sum" -> new Sum(spec);
      case "avg" -> new Avg(spec);
      case "min" -> new MinMax(spec, true);
      case "max" -> new MinMax(spec, false);
      case "first" -> new First(spec);
      case "last" -> new Last(spec);
      case "distinct" -> new DistinctAgg(spec);
      case "first_seen" -> new Seen(spec, true);
      case "last_seen" -> new Seen(spec, false);
      case "sessions" -> new Sessions(spec);
      default -> throw new IllegalArgumentException("unknown agg " + spec.agg());
    };
  }

  static final class Count extends Aggregation {
    Count(Catalogue.Stat spec) {
      super(spec);
    }

    @Override
    public Object[] initial() {
      return new Object[] {0L};
    }

    @Override
    public boolean update(Object[] state, Map<String, Object> values, long ts, long maxTs) {
      state[0] = (Long) state[0] + 1;
      return true;
    }
  }

  static final class Sum extends Aggregation {
    Sum(Catalogue.Stat spec) {
      super(spec);
    }

    @Override
    public Object[] initial() {
      return new Object[] {0L};
    }

    @Override
    public boolean update(Object[] state, Map<String, Object> values, long ts, long maxTs) {
      Object x = Num.number(input(values));
      if (x == null) return false;
      Object old = state[0];
      state[0] = Num.add(old, x);
      return !Num.sameValue(old, state[0]);
    }
  }

  /** State [avg, sum, count]. */
  static final class Avg extends Aggregation {
    Avg(Catalogue.Stat spec) {
      super(spec);
    }

    @Override
    public Object[] initial() {
      return new Object[] {null, 0L, 0L};
    }

    @Override
    public boolean update(Object[] state, Map<String, Object> values, long ts, long maxTs) {
      Object x = Num.number(input(values));
      if (x == null) return false;
      Object old = state[0];
      state[1] = Num.add(state[1], x);
      long count = (Long) state[2] + 1;
      state[2] = count;
      state[0] = Num.div(state[1], count);
      return !Num.sameValue(old, state[0]);
    }
  }

  static final class MinMax extends Aggregation {
    final boolean min;

    MinMax(Catalogue.Stat spec, boolean min) {
      super(spec);
      this.min = min;
    }

    @Override
    public Object[] initial() {
      return new Object[] {null};
    }

    @Override
    public boolean update(Object[] state, Map<String, Object> values, long ts, long maxTs) {
      Object x = Num.number(input(values));
      if (x == null) return false;
      Object old = state[0];
      Object now = min ? Num.foldMin(old, x) : Num.foldMax(old, x);
      if (now == old) return false;
      state[0] = now;
      return true;
    }
  }

  static final class First extends Aggregation {
    First(Catalogue.Stat spec) {
      super(spec);
    }

    @Override
    public Object[] initial() {
      return new Object[] {null};
    }

    @Override
    public boolean update(Object[] state, Map<String, Object> values, long ts, long maxTs) {
      if (state[0] != null) return false;
      Object x = Num.scalar(input(values));
      if (x == null) return false;
      state[0] = x;
      return true;
    }
  }

  static final class Last extends Aggregation {
    Last(Catalogue.Stat spec) {
      super(spec);
    }

    @Override
    public Object[] initial() {
      return new Object[] {null};
    }

    @Override
    public boolean update(Object[] state, Map<String, Object> values, long ts, long maxTs) {
      Object x = Num.scalar(input(values));
      if (x == null) return false;
      Object old = state[0];
      state[0] = x;
      return !Num.sameValue(old, x);
    }
  }

  static final class Seen extends Aggregation {
    final boolean first;

    Seen(Catalogue.Stat spec, boolean first) {
      super(spec);
      this.first = first;
    }

    @Override
    public Object[] initial() {
      return new Object[] {null};
    }

    @Override
    public boolean update(Object[] state, Map<String, Object> values, long ts, long maxTs) {
      if (state[0] == null || (first ? ts < (Long) state[0] : ts > (Long) state[0])) {
        state[0] = ts;
        return true;
      }
      return false;
    }
  }

  /** State [sessions, greatest ts of the events this stat counts]. */
  static final class Sessions extends Aggregation {
    final long gap;

    Sessions(Catalogue.Stat spec) {
      super(spec);
      this.gap = spec.gap();
    }

    @Override
    public Object[] initial() {
      return new Object[] {0L, null};
    }

    @Override
    public boolean update(Object[] state, Map<String, Object> values, long ts, long maxTs) {
      Long greatest = (Long) state[1];
      if (greatest == null || greaterThanSum(ts, greatest, gap)) {
        state[0] = (Long) state[0] + 1;
        state[1] = ts;
        return true;
      }
      if (ts > greatest) state[1] = ts;
      return false;
    }
  }

  /** a > b + c without overflow (Python ints have no bound). */
  static boolean greaterThanSum(long a, long b, long c) {
    long s = b + c;
    if (((b ^ s) & (c ^ s)) < 0) return c < 0;  // b + c overflowed: past the long range on c's side
    return a > s;
  }

  /** State [count, container]. */
  static final class DistinctAgg extends Aggregation {
    DistinctAgg(Catalogue.Stat spec) {
      super(spec);
    }

    @Override
    public Object[] initial() {
      return new Object[] {0L, Distinct.EMPTY};
    }

    @Override
    public boolean update(Object[] state, Map<String, Object> values, long ts, long maxTs) {
      byte[] digest = Distinct.digest(input(values));
      if (digest == null) return false;
      long old = (Long) state[0];
      Distinct.Added added = Distinct.add(state[1], digest);
      state[1] = added.container();
      state[0] = added.count();
      return added.count() != old;
    }
  }

  /** Sliding window of whole buckets; state [value, {bucket: partial}]. */
  public abstract static class Windowed extends Aggregation {
    final long resolution;
    final long buckets;

    Windowed(Catalogue.Stat spec) {
      super(spec);
      this.resolution = spec.resolution();
      this.buckets = spec.window() / spec.resolution();
    }

    public long resolution() {
      return resolution;
    }

    public abstract boolean advance(Object[] state, long maxTs);

    @SuppressWarnings("unchecked")
    static LinkedHashMap<Long, Object> partials(Object[] state) {
      return (LinkedHashMap<Long, Object>) state[1];
    }

    boolean late(long ts, long maxTs) {
      return Math.floorDiv(ts, resolution) <= Math.floorDiv(maxTs, resolution) - buckets;
    }

    /** Remove the buckets below the window, in dict order; the removed partials. */
    List<Object> dropStale(Object[] state, long maxTs) {
      long low = Math.floorDiv(maxTs, resolution) - buckets + 1;
      List<Object> removed = new ArrayList<>();
      Iterator<Map.Entry<Long, Object>> it = partials(state).entrySet().iterator();
      while (it.hasNext()) {
        Map.Entry<Long, Object> e = it.next();
        if (e.getKey() < low) {
          removed.add(e.getValue());
          it.remove();
        }
      }
      return removed;
    }
  }

  static final class WindowCount extends Windowed {
    WindowCount(Catalogue.Stat spec) {
      super(spec);
    }

    @Override
    public Object[] initial() {
      return new Object[] {0L, new LinkedHashMap<Long, Object>()};
    }

    @Override
    public boolean update(Object[] state, Map<String, Object> values, long ts, long maxTs) {
      if (late(ts, maxTs)) return false;
      partials(state).merge(Math.floorDiv(ts, resolution), 1L, (a, b) -> (Long) a + 1);
      state[0] = (Long) state[0] + 1;
      return true;
    }

    @Override
    public boolean advance(Object[] state, long maxTs) {
      List<Object> stale = dropStale(state, maxTs);
      long total = (Long) state[0];
      for (Object n : stale) total -= (Long) n;
      state[0] = total;
      return !stale.isEmpty();
    }
  }

  /** sum, avg, min, max, distinct: the value is recomputed from the partials when they change. */
  static final class Window extends Windowed {
    final String agg;

    Window(Catalogue.Stat spec) {
      super(spec);
      this.agg = spec.agg();
    }

    @Override
    public Object[] initial() {
      Object empty = agg.equals("sum") || agg.equals("distinct") ? (Object) 0L : null;
      return new Object[] {empty, new LinkedHashMap<Long, Object>()};
    }

    @Override
    public boolean update(Object[] state, Map<String, Object> values, long ts, long maxTs) {
      Object raw = input(values);
      Object x = agg.equals("distinct") ? Distinct.digest(raw) : Num.number(raw);
      if (x == null) return false;
      if (late(ts, maxTs)) return false;
      LinkedHashMap<Long, Object> partials = partials(state);
      long bucket = Math.floorDiv(ts, resolution);
      partials.put(bucket, fold(partials.get(bucket), x));
      return refresh(state);
    }

    @Override
    public boolean advance(Object[] state, long maxTs) {
      if (dropStale(state, maxTs).isEmpty()) return false;
      return refresh(state);
    }

    private Object fold(Object partial, Object x) {
      return switch (agg) {
        case "sum" -> partial == null ? x : Num.add(partial, x);
        case "avg" -> {
          if (partial == null) yield new Object[] {x, 1L};
          Object[] p = (Object[]) partial;
          p[0] = Num.add(p[0], x);
          p[1] = (Long) p[1] + 1;
          yield p;
        }
        case "min" -> Num.foldMin(partial, x);
        case "max" -> Num.foldMax(partial, x);
        case "distinct" -> Distinct.add(partial == null ? Distinct.EMPTY : partial, (byte[]) x).container();
        default -> throw new IllegalStateException(agg);
      };
    }

    private Object total(LinkedHashMap<Long, Object> partials) {
      switch (agg) {
        case "sum":
          return Num.sum(partials.values());
        case "avg": {
          long count = 0;
          List<Object> sums = new ArrayList<>();
          for (Object p : partials.values()) {
            sums.add(((Object[]) p)[0]);
            count += (Long) ((Object[]) p)[1];
          }
          return count == 0 ? null : Num.div(Num.sum(sums), count);
        }
        case "min": {
          Object best = null;
          for (Object x : partials.values()) best = Num.foldMin(best, x);
          return best;
        }
        case "max": {
          Object best = null;
          for (Object x : partials.values()) best = Num.foldMax(best, x);
          return best;
        }
        case "distinct":
          return Distinct.unionCount(new ArrayList<>(partials.values()));
        default:
          throw new IllegalStateException(agg);
      }
    }

    private boolean refresh(Object[] state) {
      Object old = state[0];
      state[0] = total(partials(state));
      return !Num.sameValue(old, state[0]);
    }
  }
}
