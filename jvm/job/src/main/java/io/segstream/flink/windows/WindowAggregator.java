package io.segstream.flink.windows;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.common.typeutils.base.LongSerializer;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Event-time windows of one key (definition, tenant, dimension value), emitted once each.
 *
 * <p>Its inputs are {@link WindowPreAggregate}'s partials (a window's events of one watermark
 * interval, merged into the open window at once); a single input is taken as a partial of one
 * event in each of its windows.
 *
 * <ul>
 *   <li>An event is added to every window holding its {@code ts} (one for tumbling windows,
 *       size/slide for hopping ones) whose end is still ahead of the watermark; each open window
 *       is an {@link Accumulator} in the map state {@code open-windows} (window start → accumulator,
 *       {@link AccumulatorSerializer}) with an
 *       event-time timer at {@code end - 1}.</li>
 *   <li>When the watermark passes {@code end - 1} the timer emits the window's aggregate (main
 *       output: key, JSON) and drops it. There is no allowed lateness: the window is never updated.</li>
 *   <li>An event arriving for a window whose end the watermark has passed (emitted, or never
 *       opened) goes to {@link WindowPipeline#LATE} with how late it was; counter {@code lateEvents}.</li>
 *   <li>Surges: the counts of the emitted windows stay in {@code counts} (start → count) as long as
 *       a later window may use them as baseline; the baseline of window [s, s + size) is the mean
 *       count of the K windows starting at s − size, s − 2·size, … s − K·size (for hopping windows
 *       the K earlier windows that do not overlap it); a window missing there counts 0, but only
 *       once the key's history covers it: {@code first} (the earliest window start the key ever
 *       had) must be ≤ s − K·size, else no alert. An alert goes to {@link WindowPipeline#ALERTS}.</li>
 * </ul>
 * Every state is keyed and checkpointed; the timers too (synchronously registered), so a restored
 * job emits each window exactly once in the read_committed view of a transactional sink.
 */
public class WindowAggregator extends KeyedProcessFunction<String, WindowInput, Row> {
  private static final long serialVersionUID = 1L;
  static final String LATE_REASON = "late: the watermark had passed the end of its window, which was emitted without it";

  private final String specsJson;
  private transient List<WindowSpec> specs;
  private transient MapState<Long, Accumulator> open;
  private transient MapState<Long, Long> counts;
  private transient ValueState<Long> first;
  private transient ObjectMapper json;
  private transient Counter late;
  private transient Counter windows;
  private transient Counter alerts;

  public WindowAggregator(String specsJson) {
    this.specsJson = specsJson;
    WindowSpec.parseAll(specsJson);
  }

  @Override
  public void open(OpenContext openContext) {
    specs = WindowSpec.parseAll(specsJson);
    open = getRuntimeContext().getMapState(new MapStateDescriptor<>("open-windows",
        LongSerializer.INSTANCE, AccumulatorSerializer.INSTANCE));
    counts = getRuntimeContext().getMapState(new MapStateDescriptor<>("window-counts", Types.LONG, Types.LONG));
    first = getRuntimeContext().getState(new ValueStateDescriptor<>("first-window", Types.LONG));
    json = new ObjectMapper();
    var metrics = getRuntimeContext().getMetricGroup();
    late = metrics.counter("lateEvents");
    windows = metrics.counter("windowsEmitted");
    alerts = metrics.counter("alerts");
  }

  @Override
  public void processElement(WindowInput in, Context ctx, Collector<Row> out) throws Exception {
    if (in.spec == WindowInput.TICK) return;
    WindowSpec spec = specs.get(in.spec);
    if (in.partial) {
      add(spec, in, in.start, Accumulator.of(in.acc), in.eventIds, in.userIds, in.stamps, ctx);
      return;
    }
    // A single input (tests; the job's inputs come pre-aggregated): each window holding its ts.
    for (long start = spec.lastStart(in.ts); start > in.ts - spec.sizeMs; start -= spec.slideMs) {
      Accumulator one = Accumulator.empty(spec.distinctUsers);
      one.add(in);
      add(spec, in, start, one, new String[] {in.eventId}, new String[] {in.userId}, new long[] {in.ts}, ctx);
    }
  }

  /** Add the events of {@code part} to the window of {@code in}'s key starting at {@code start}, or,
   * if the watermark has passed its end, route each of them to late-events. */
  private void add(WindowSpec spec, WindowInput in, long start, Accumulator part, String[] eventIds,
      String[] userIds, long[] stamps, Context ctx) throws Exception {
    long watermark = ctx.timerService().currentWatermark();
    long end = start + spec.sizeMs;
    if (end - 1 <= watermark) {
      for (int i = 0; i < eventIds.length; i++) {
        late.inc();
        ctx.output(WindowPipeline.LATE, Row.of(in.tenant + "/" + spec.id,
            lateRecord(spec, in, eventIds[i], userIds[i], stamps[i], start, end, watermark)));
      }
      return;
    }
    Accumulator acc = open.get(start);
    boolean opened = acc == null;
    if (opened) {
      acc = part;
    } else {
      acc.merge(part);
    }
    open.put(start, acc);
    if (opened) {
      ctx.timerService().registerEventTimeTimer(end - 1);
      Long f = first.value();
      if (f == null || start < f) first.update(start);
    }
  }

  @Override
  public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
    Object[] key = WindowInput.parseKey(ctx.getCurrentKey());
    WindowSpec spec = specs.get((Integer) key[0]);
    String tenant = (String) key[1];
    String value = spec.dimension == null ? null : (String) key[2];
    long end = timestamp + 1;
    long start = end - spec.sizeMs;
    Accumulator acc = open.get(start);
    if (acc != null) {
      open.remove(start);
      windows.inc();
      String outKey = tenant + "/" + spec.id + (value == null ? "" : "/" + value);
      out.collect(Row.of(outKey, aggregate(spec, tenant, value, start, end, acc)));
      if (spec.surge != null) {
        counts.put(start, acc.count);
        String alert = surge(spec, tenant, value, outKey, start, end, acc.count);
        if (alert != null) {
          alerts.inc();
          ctx.output(WindowPipeline.ALERTS, Row.of(outKey, alert));
        }
        // Counts are kept until no later window can take them as baseline: then this timer prunes.
        ctx.timerService().registerEventTimeTimer(timestamp + spec.surge.baselineWindows() * spec.sizeMs);
      }
    }
    if (spec.surge != null) {
      // The count no later window takes as baseline any more: the one whose pruning timer this is
      // (registered above at its end - 1 + K·size). One entry, so no scan of the map state (a
      // RocksDB iterator seek per timer was 14 % of the windows' CPU, docs/benchmarks.md 8a).
      counts.remove(start - (long) spec.surge.baselineWindows() * spec.sizeMs);
    }
  }

  private String surge(WindowSpec spec, String tenant, String value, String outKey, long start, long end, long count)
      throws Exception {
    WindowSpec.Surge rule = spec.surge;
    int k = rule.baselineWindows();
    Long f = first.value();
    if (count < rule.minCount() || f == null || f > start - k * spec.sizeMs) return null;
    long total = 0;
    for (int i = 1; i <= k; i++) {
      Long c = counts.get(start - i * spec.sizeMs);
      total += c == null ? 0 : c;
    }
    double baseline = (double) total / k;
    if (count <= rule.factor() * baseline) return null;
    ObjectNode a = json.createObjectNode();
    a.put("id", alertId(tenant, outKey, start, end));
    a.put("tenant", tenant);
    a.put("key", outKey);
    a.put("window", spec.id);
    a.put("event", spec.event);
    a.put("dimension", spec.dimension);
    a.put("value", value);
    a.put("window_start", start);
    a.put("window_end", end);
    a.put("count", count);
    a.put("baseline", baseline);
    a.put("baseline_windows", k);
    a.put("factor", rule.factor());
    a.put("min_count", rule.minCount());
    if (baseline > 0) a.put("ratio", count / baseline);
    else a.putNull("ratio");
    return json.writeValueAsString(a);
  }

  /** The alert's id: the first 32 hex digits of SHA-256("tenant\0key\0start\0end"), the same for
   * every copy of one alert, so that receivers can drop duplicates. */
  public static String alertId(String tenant, String key, long start, long end) {
    try {
      byte[] d = MessageDigest.getInstance("SHA-256")
          .digest((tenant + "\u0000" + key + "\u0000" + start + "\u0000" + end).getBytes(StandardCharsets.UTF_8));
      return HexFormat.of().formatHex(d, 0, 16);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  private String aggregate(WindowSpec spec, String tenant, String value, long start, long end, Accumulator acc)
      throws Exception {
    ObjectNode a = json.createObjectNode();
    a.put("window", spec.id);
    a.put("tenant", tenant);
    a.put("event", spec.event);
    a.put("dimension", spec.dimension);
    a.put("value", value);
    a.put("window_start", start);
    a.put("window_end", end);
    a.put("count", acc.count);
    Number sum = acc.sum();
    if (spec.sumField == null) {
      // no sum declared: no field
    } else if (sum == null) {
      a.putNull("sum");
    } else if (sum instanceof Long l) {
      a.put("sum", l);
    } else {
      a.put("sum", sum.doubleValue());
    }
    if (spec.distinctUsers) a.put("distinct_users", acc.distinctUsers());
    return json.writeValueAsString(a);
  }

  private String lateRecord(WindowSpec spec, WindowInput in, String eventId, String userId, long ts, long start,
      long end, long watermark) throws Exception {
    ObjectNode a = json.createObjectNode();
    a.put("reason", LATE_REASON);
    a.put("window", spec.id);
    a.put("tenant", in.tenant);
    a.put("event", spec.event);
    a.put("value", in.value);
    a.put("event_id", eventId);
    a.put("user_id", userId);
    a.put("ts", ts);
    a.put("window_start", start);
    a.put("window_end", end);
    a.put("watermark", watermark);
    // how far behind event time the event arrived, and how long after its window had been emitted
    a.put("lateness_ms", watermark - ts);
    a.put("after_close_ms", watermark - (end - 1));
    return json.writeValueAsString(a);
  }
}
