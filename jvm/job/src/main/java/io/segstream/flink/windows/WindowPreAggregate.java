package io.segstream.flink.windows;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.runtime.watermarkstatus.WatermarkStatus;

/**
 * Pre-aggregation before the shuffle: a subtask adds the window inputs it sees to one partial
 * {@link Accumulator} per (key, window start), and hands the partials on ({@link WindowInput#partial})
 * before it forwards the next watermark or watermark status, before each checkpoint barrier, at
 * the end of input and when it holds {@value #MAX_SLOTS} of them. Why: {@link WindowAggregator}
 * then reads and writes its keyed state (and the job shuffles a record) once per window, key and
 * watermark interval instead of once per event and window (docs/benchmarks.md, section 8).
 *
 * <p>It keeps no state: nothing is held across a barrier, so a checkpoint is the same as without
 * it. And nothing changes for lateness: the partials of a watermark interval reach the aggregator
 * before that interval's closing watermark, as the single inputs would, and carry the events' ids,
 * users and timestamps, so that a late window yields the same late records as its events one by
 * one would have.
 */
public class WindowPreAggregate extends AbstractStreamOperator<WindowInput>
    implements OneInputStreamOperator<WindowInput, WindowInput> {
  private static final long serialVersionUID = 1L;
  /** Partials held at most: a bound on memory whatever the watermark does. */
  static final int MAX_SLOTS = 10_000;

  private record Slot(String key, long start) {}

  /** One partial: the first input of its slot (for key, definition, tenant, value), and the rest. */
  private static final class Partial {
    final WindowInput first;
    final Accumulator acc;
    final List<String> eventIds = new ArrayList<>();
    final List<String> userIds = new ArrayList<>();
    final List<Long> stamps = new ArrayList<>();

    Partial(WindowInput first, boolean distinct) {
      this.first = first;
      this.acc = Accumulator.empty(distinct);
    }
  }

  private final String specsJson;
  private transient List<WindowSpec> specs;
  private transient Map<Slot, Partial> slots;

  public WindowPreAggregate(String specsJson) {
    this.specsJson = specsJson;
    WindowSpec.parseAll(specsJson);
  }

  @Override
  public void open() throws Exception {
    super.open();
    specs = WindowSpec.parseAll(specsJson);
    slots = new HashMap<>();
  }

  @Override
  public void processElement(StreamRecord<WindowInput> element) {
    WindowInput in = element.getValue();
    if (in.spec == WindowInput.TICK) return; // it has moved the watermark already (EventTime)
    WindowSpec spec = specs.get(in.spec);
    for (long start = spec.lastStart(in.ts); start > in.ts - spec.sizeMs; start -= spec.slideMs) {
      Partial p = slots.computeIfAbsent(new Slot(in.key, start), s -> new Partial(in, spec.distinctUsers));
      p.acc.add(in);
      p.eventIds.add(in.eventId);
      p.userIds.add(in.userId);
      p.stamps.add(in.ts);
    }
    if (slots.size() >= MAX_SLOTS) flush();
  }

  private void flush() {
    for (Map.Entry<Slot, Partial> e : slots.entrySet()) {
      Partial p = e.getValue();
      WindowInput out = new WindowInput();
      out.partial = true;
      out.key = p.first.key;
      out.spec = p.first.spec;
      out.tenant = p.first.tenant;
      out.value = p.first.value;
      out.start = e.getKey().start();
      out.acc = p.acc.bytes();
      out.eventIds = p.eventIds.toArray(new String[0]);
      out.userIds = p.userIds.toArray(new String[0]);
      out.stamps = p.stamps.stream().mapToLong(Long::longValue).toArray();
      output.collect(new StreamRecord<>(out));
    }
    slots.clear();
  }

  @Override
  public void processWatermark(Watermark mark) throws Exception {
    flush();
    super.processWatermark(mark);
  }

  @Override
  public void processWatermarkStatus(WatermarkStatus status) throws Exception {
    flush(); // before an IDLE status lets the aggregator's watermark run ahead of this channel
    super.processWatermarkStatus(status);
  }

  @Override
  public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
    flush();
    super.prepareSnapshotPreBarrier(checkpointId);
  }

  @Override
  public void finish() throws Exception {
    flush();
    super.finish();
  }
}
