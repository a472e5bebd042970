package io.segstream.flink.windows;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.streaming.api.operators.KeyedProcessOperator;
import org.apache.flink.streaming.api.operators.ProcessOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;
import org.junit.jupiter.api.Test;

public class WindowAggregatorTest {
  static final long MIN = 60_000L;
  static final long T0 = 1_800_000_000_000L - 1_800_000_000_000L % (5 * MIN); // a window start
  public static final String SPECS = "[{\"id\": \"views\", \"event\": \"page_view\", \"size_ms\": 300000, \"slide_ms\": 300000,"
      + " \"sum\": \"ms\", \"distinct_users\": true,"
      + " \"surge\": {\"factor\": 3.0, \"baseline_windows\": 2, \"min_count\": 4}},"
      + "{\"id\": \"by_path\", \"event\": \"page_view\", \"size_ms\": 600000, \"slide_ms\": 300000,"
      + " \"values\": {\"field\": \"path\", \"allow\": [\"/a\"], \"other\": \"(other)\"}, \"distinct_users\": false}]";
  static final ObjectMapper JSON = new ObjectMapper();

  public static Row record(String tenant, String user, String id, long ts, String name, String path, Object ms) {
    String json = "{\"event_id\":\"" + id + "\",\"tenant\":\"" + tenant + "\",\"user_id\":\"" + user + "\",\"ts\":" + ts
        + ",\"name\":\"" + name + "\",\"values\":{\"path\":\"" + path + "\",\"ms\":" + ms + "}}";
    return Row.of(null, json.getBytes(StandardCharsets.UTF_8), 0, 0L);
  }

  public static List<WindowInput> extract(Row... rows) throws Exception {
    var h = new OneInputStreamOperatorTestHarness<>(new ProcessOperator<>(new ExtractWindowInputs(SPECS)));
    h.open();
    for (Row r : rows) h.processElement(new StreamRecord<>(r));
    List<WindowInput> out = new ArrayList<>();
    for (Object o : h.getOutput()) {
      if (o instanceof StreamRecord<?> s) out.add((WindowInput) s.getValue());
    }
    h.close();
    return out;
  }

  static KeyedOneInputStreamOperatorTestHarness<String, WindowInput, Row> harness(OperatorSubtaskState restore)
      throws Exception {
    var h = new KeyedOneInputStreamOperatorTestHarness<>(new KeyedProcessOperator<>(new WindowAggregator(SPECS)),
        in -> in.key, Types.STRING, 128, 1, 0);
    h.setup();
    h.initializeState(restore);
    h.open();
    return h;
  }

  static List<JsonNode> main(KeyedOneInputStreamOperatorTestHarness<String, WindowInput, Row> h) throws Exception {
    List<JsonNode> out = new ArrayList<>();
    for (Object o : h.getOutput()) {
      if (o instanceof StreamRecord<?> s) out.add(JSON.readTree((String) ((Row) s.getValue()).getField(1)));
    }
    return out;
  }

  static List<JsonNode> side(KeyedOneInputStreamOperatorTestHarness<String, WindowInput, Row> h, OutputTag<Row> tag)
      throws Exception {
    List<JsonNode> out = new ArrayList<>();
    var q = h.getSideOutput(tag);
    if (q != null) for (var s : q) out.add(JSON.readTree((String) s.getValue().getField(1)));
    return out;
  }

  @Test
  void keysAreUnambiguous() {
    for (String tenant : new String[] {"t", "a:b", "x\u0000y", "", "12:"}) {
      for (String value : new String[] {null, "", "/a", ":\u0000:"}) {
        Object[] parts = WindowInput.parseKey(WindowInput.keyOf(3, tenant, value));
        assertEquals(3, parts[0]);
        assertEquals(tenant, parts[1]);
        assertEquals(value == null ? "" : value, parts[2]);
      }
    }
  }

  @Test
  void extractsOnePerMatchingDefinitionAndSkipsInvalid() throws Exception {
    var out = extract(record("t", "u1", "e1", T0, "page_view", "/a", 5),
        record("t", "u1", "e2", T0, "page_view", "/zzz", 2.5),
        record("t", "u1", "e3", T0, "purchase", "/a", 5),
        Row.of(null, "{not json".getBytes(StandardCharsets.UTF_8), 0, 1L),
        Row.of(null, null, 0, 2L));
    assertEquals(5, out.size());
    // The purchase, which no definition counts, is a tick: only its ts and partition, for the watermark.
    assertEquals(WindowInput.TICK, out.get(4).spec);
    assertEquals(T0, out.get(4).ts);
    assertEquals(0, out.get(4).partition);
    assertEquals("/a", out.get(1).value);
    assertEquals("(other)", out.get(3).value);
    assertTrue(out.get(0).hasSum && !out.get(0).sumIsDouble && out.get(0).sumLong == 5);
    assertTrue(out.get(2).sumIsDouble && out.get(2).sumDouble == 2.5);
  }

  @Test
  void emitsEachWindowOnceAtTheWatermarkAndRoutesLateEvents() throws Exception {
    var h = harness(null);
    for (WindowInput in : extract(record("t", "u1", "e1", T0 + 1000, "page_view", "/a", 5),
        record("t", "u2", "e2", T0 + 2000, "page_view", "/a", 7),
        record("t", "u1", "e3", T0 + 5 * MIN - 1, "page_view", "/b", 1),
        record("t", "u1", "e4", T0 + 5 * MIN, "page_view", "/b", 1))) {
      h.processElement(new StreamRecord<>(in));
    }
    assertTrue(main(h).isEmpty());
    h.processWatermark(new Watermark(T0 + 5 * MIN - 1));
    List<JsonNode> out = main(h);
    // views [T0, T0+5m): 3 events; by_path (10 min, hop 5 min) [T0-5m, T0+5m): /a 2, (other) 1
    assertEquals(3, out.size(), out.toString());
    JsonNode views = out.stream().filter(n -> n.get("window").asText().equals("views")).findFirst().get();
    assertEquals(3, views.get("count").asLong());
    assertEquals(13, views.get("sum").asLong());
    assertEquals(2, views.get("distinct_users").asLong());
    assertEquals(T0, views.get("window_start").asLong());
    assertEquals(T0 + 5 * MIN, views.get("window_end").asLong());
    // a late event: its views window and the first by_path window it falls in have been emitted
    for (WindowInput in : extract(record("t", "u3", "late", T0 + 10, "page_view", "/a", 1))) {
      h.processElement(new StreamRecord<>(in));
    }
    List<JsonNode> late = side(h, WindowPipeline.LATE);
    assertEquals(2, late.size(), late.toString());
    assertEquals(T0 + 5 * MIN - 1 - (T0 + 10), late.get(0).get("lateness_ms").asLong());
    assertEquals(0, late.get(0).get("after_close_ms").asLong());
    assertEquals(3, main(h).size()); // nothing re-emitted; the late event's open by_path window counts it
    h.processWatermark(new Watermark(Long.MAX_VALUE));
    long lateCounted = main(h).stream().filter(n -> n.get("window").asText().equals("by_path")
        && n.get("window_start").asLong() == T0 && n.get("value").asText().equals("/a")).findFirst().get()
        .get("count").asLong();
    assertEquals(3, lateCounted);
    h.close();
  }

  @Test
  void surgeNeedsHistoryAFactorAndAMinimumAndSurvivesARestore() throws Exception {
    var h = harness(null);
    int n = 0;
    // windows 0..3: 2 events each; window 4: 7 events (> 3 * 2, >= 4): one alert; window 5: empty;
    // window 6: 5 events, baseline (7 + 0) / 2 = 3.5, 5 <= 10.5: none
    int[] perWindow = {2, 2, 2, 2, 7, 0, 5};
    OperatorSubtaskState snapshot = null;
    for (int w = 0; w < perWindow.length; w++) {
      for (int i = 0; i < perWindow[w]; i++) {
        for (WindowInput in : extract(record("t", "u" + i, "e" + n++, T0 + w * 5 * MIN + i, "page_view", "/a", 1))) {
          if (in.spec == 0) h.processElement(new StreamRecord<>(in));
        }
      }
      h.processWatermark(new Watermark(T0 + (w + 1) * 5 * MIN - 1));
      if (w == 3) {
        snapshot = h.snapshot(1L, 1L);
        h.close();
        h = harness(snapshot);
      }
    }
    List<JsonNode> alerts = side(h, WindowPipeline.ALERTS);
    assertEquals(1, alerts.size(), alerts.toString());
    JsonNode a = alerts.get(0);
    assertEquals(T0 + 20 * MIN, a.get("window_start").asLong());
    assertEquals(7, a.get("count").asLong());
    assertEquals(2.0, a.get("baseline").asDouble());
    assertEquals("t/views", a.get("key").asText());
    assertEquals(WindowAggregator.alertId("t", "t/views", T0 + 20 * MIN, T0 + 25 * MIN), a.get("id").asText());
    assertNull(a.get("value").textValue());
    h.close();
  }

  /** The script (inputs and watermarks) through the aggregator alone, or through the pre-aggregator
   * first: its main output and late records, as sorted JSON strings. */
  static List<List<String>> run(List<Object> script, boolean preAggregate) throws Exception {
    var agg = harness(null);
    var pre = new OneInputStreamOperatorTestHarness<>(new WindowPreAggregate(SPECS));
    pre.open();
    int flushes = 0;
    for (Object o : script) {
      if (preAggregate) {
        if (o instanceof WindowInput in) pre.processElement(new StreamRecord<>(in));
        else pre.processWatermark((Watermark) o);
        for (Object out; (out = pre.getOutput().poll()) != null; ) {
          if (out instanceof StreamRecord<?> r) {
            assertTrue(((WindowInput) r.getValue()).partial);
            agg.processElement(new StreamRecord<>((WindowInput) r.getValue()));
          } else if (out instanceof Watermark w) {
            flushes++;
            agg.processWatermark(w);
          }
        }
      } else if (o instanceof WindowInput in) {
        agg.processElement(new StreamRecord<>(in));
      } else {
        agg.processWatermark((Watermark) o);
      }
    }
    if (preAggregate) assertEquals(script.stream().filter(o -> o instanceof Watermark).count(), flushes);
    List<List<String>> result = List.of(main(agg).stream().map(JsonNode::toString).sorted().toList(),
        side(agg, WindowPipeline.LATE).stream().map(JsonNode::toString).sorted().toList());
    pre.close();
    agg.close();
    return result;
  }

  @Test
  void preAggregatedTheWindowsAndTheLateRecordsAreTheSame() throws Exception {
    List<Object> script = new ArrayList<>();
    for (int i = 0; i < 40; i++) {
      script.addAll(extract(record("t" + i % 2, "u" + i % 7, "e" + i, T0 + i * 20_000L, "page_view",
          i % 3 == 0 ? "/a" : "/b", i)));
      if (i % 10 == 9) script.add(new Watermark(T0 + i * 20_000L - 60_000));
    }
    // late: windows [T0, T0 + 5m) of both definitions have been emitted by now
    script.addAll(extract(record("t0", "u9", "late1", T0 + 10, "page_view", "/a", 1),
        record("t1", "u8", "late2", T0 + 20, "page_view", "/b", 2)));
    script.add(new Watermark(Long.MAX_VALUE));
    List<List<String>> direct = run(script, false);
    assertEquals(direct, run(script, true));
    assertTrue(direct.get(1).size() >= 2, direct.get(1).toString());
    assertTrue(direct.get(0).size() > 6, direct.get(0).toString());
  }

  @Test
  void thePreAggregatorHoldsNothingAcrossABarrier() throws Exception {
    var pre = new OneInputStreamOperatorTestHarness<>(new WindowPreAggregate(SPECS));
    pre.open();
    for (WindowInput in : extract(record("t", "u1", "e1", T0, "page_view", "/a", 1),
        record("t", "u2", "e2", T0 + 1, "page_view", "/a", 1))) {
      pre.processElement(new StreamRecord<>(in));
    }
    assertTrue(pre.getOutput().isEmpty());
    pre.prepareSnapshotPreBarrier(1L);
    // views [T0, +5m); by_path /a [T0 - 5m, +10m) and [T0, +10m): each with both events
    List<WindowInput> partials = new ArrayList<>();
    for (Object o : pre.getOutput()) partials.add((WindowInput) ((StreamRecord<?>) o).getValue());
    assertEquals(3, partials.size(), partials.toString());
    for (WindowInput p : partials) assertEquals(List.of("e1", "e2"), List.of(p.eventIds));
    pre.close();
  }
}
