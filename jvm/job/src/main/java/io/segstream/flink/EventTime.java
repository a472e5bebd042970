package io.segstream.flink;

import io.segstream.flink.windows.WindowInput;
import java.io.Serializable;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.api.common.eventtime.TimestampAssigner;
import org.apache.flink.api.common.eventtime.TimestampAssignerSupplier;
import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkGeneratorSupplier;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.util.clock.RelativeClock;

/**
 * Event time after parse-validate (issue 14, item 3; docs/security.md, "Event time you can trust").
 *
 * <p>The watermarks used to come from the Kafka source's DDL ({@code WATERMARK FOR record_ts}),
 * which runs before any check: one record stamped in the year 9999 moved its partition's
 * watermark there and fired every expiry timer and window behind it. Now parse-validate refuses
 * an event whose ts is too far after the broker's append time, and only then this strategy
 * (applied right after it, operator {@value Pipeline#EVENT_TIME_UID}; on the window branch
 * {@value io.segstream.flink.windows.WindowPipeline#EVENT_TIME_UID}) assigns the event's ts as
 * its timestamp and derives the watermark from the valid events alone.
 *
 * <p>The watermark is the source's was, per Kafka partition: each partition's greatest ts minus
 * {@code outOfOrdernessMs} minus 1 (Flink's bounded out-of-orderness), the lowest over the
 * partitions this subtask reads. A per-subtask maximum would not do: a subtask reading a backlog
 * gets a batch of one partition, then of the next, and the first batch's greatest ts would make
 * the next one's events late (and expire their users early). A partition without a valid event
 * for {@code idlenessMs} (of input activity: Flink's clock pauses while the input is
 * back-pressured) drops out, as {@code table.exec.source.idle-timeout} made it drop out of the
 * source's watermark; it is back with its next event. Partitions not yet seen: for the first
 * {@code idlenessMs} (at most {@value #MAX_START_WAIT_MS} ms) no watermark is emitted at all (the source's splits likewise held theirs back
 * until they went idle), so that the first batch of a backlog cannot run ahead of the others; the
 * first one then takes every partition seen, idle or not.
 * All partitions idle: the output is marked idle and the watermark stays where it was.
 *
 * <p>The rules input of the evaluator has no event time: {@link #never()} marks it idle for good,
 * so the two-input operator's watermark is the events' alone (a rule record changes rules when it
 * arrives, not at a time; and its producer's clock moves nothing). At the end of a bounded input
 * Flink's assigner forwards the final watermark (Long.MAX_VALUE) of either input, so bounded runs
 * end as before.
 */
public final class EventTime<T> implements WatermarkStrategy<T> {
  private static final long serialVersionUID = 1L;

  /** The event time and Kafka partition of a record. */
  public interface Extractor<T> extends Serializable {
    long ts(T record);

    Integer partition(T record);
  }

  /** The longest a subtask waits at start for partitions it has not seen yet: the idleness, but
   * not more than this (a test may set the idleness to minutes; the first fetch of a Kafka
   * consumer brings every partition that has records). */
  static final long MAX_START_WAIT_MS = 10_000;

  private final Extractor<T> extractor;
  private final long outOfOrdernessMs;
  private final long idlenessMs;

  public EventTime(Extractor<T> extractor, long outOfOrdernessMs, long idlenessMs) {
    if (outOfOrdernessMs < 0 || idlenessMs <= 0) {
      throw new IllegalArgumentException("out-of-orderness must be >= 0 and idleness > 0 ms");
    }
    this.extractor = extractor;
    this.outOfOrdernessMs = outOfOrdernessMs;
    this.idlenessMs = idlenessMs;
  }

  /** The valid events of parse-validate. */
  public static EventTime<ParsedEvent> ofEvents(long outOfOrdernessMs, long idlenessMs) {
    return new EventTime<>(new EventsExtractor(), outOfOrdernessMs, idlenessMs);
  }

  /** The window inputs (and ticks) of parse-validate: the same events, so the same watermark. */
  public static EventTime<WindowInput> ofWindowInputs(long outOfOrdernessMs, long idlenessMs) {
    return new EventTime<>(new WindowInputsExtractor(), outOfOrdernessMs, idlenessMs);
  }

  /** For an input that must never hold event time back nor move it: idle from the first periodic
   * emit on (the rules). */
  public static <T> WatermarkStrategy<T> never() {
    return new Never<>();
  }

  @Override
  public TimestampAssigner<T> createTimestampAssigner(TimestampAssignerSupplier.Context context) {
    Extractor<T> e = extractor;
    return (record, previous) -> e.ts(record);
  }

  @Override
  public WatermarkGenerator<T> createWatermarkGenerator(WatermarkGeneratorSupplier.Context context) {
    return new PartitionWatermarks<>(extractor, outOfOrdernessMs, idlenessMs, context.getInputActivityClock());
  }

  /** The lowest per-partition bounded-out-of-orderness watermark of the active partitions. */
  static final class PartitionWatermarks<T> implements WatermarkGenerator<T> {
    private final Extractor<T> extractor;
    private final long outOfOrdernessMs;
    private final long idlenessMs;
    private final RelativeClock clock;
    private final long started;
    /** Partition (null: a record without one) -> {greatest ts, clock time of its last event}. */
    private final Map<Integer, long[]> partitions = new HashMap<>();
    private boolean idle;
    /** Whether the first watermark, at the end of the first idlenessMs, has been emitted. */
    private boolean firstEmitted;

    PartitionWatermarks(Extractor<T> extractor, long outOfOrdernessMs, long idlenessMs, RelativeClock clock) {
      this.extractor = extractor;
      this.outOfOrdernessMs = outOfOrdernessMs;
      this.idlenessMs = idlenessMs;
      this.clock = clock;
      this.started = clock.relativeTimeMillis();
    }

    @Override
    public void onEvent(T record, long timestamp, WatermarkOutput output) {
      long[] p = partitions.computeIfAbsent(extractor.partition(record), k -> new long[] {Long.MIN_VALUE, 0});
      p[0] = Math.max(p[0], timestamp);
      p[1] = clock.relativeTimeMillis();
    }

    @Override
    public void onPeriodicEmit(WatermarkOutput output) {
      long now = clock.relativeTimeMillis();
      if (now - started < Math.min(idlenessMs, MAX_START_WAIT_MS)) return; // partitions not seen yet may come
      long lowest = Long.MAX_VALUE;
      for (long[] p : partitions.values()) {
        // The first watermark takes every partition seen: a backlog read within the first
        // idlenessMs has gone idle by then, and the source's watermark had reached its lowest
        // partition while reading it.
        if (!firstEmitted || now - p[1] < idlenessMs) lowest = Math.min(lowest, p[0]);
      }
      firstEmitted = true;
      if (lowest == Long.MAX_VALUE) {
        if (!idle) output.markIdle();
        idle = true;
        return;
      }
      idle = false;
      // Flink's assigner keeps the watermark monotonic: a partition back from idleness with an older
      // greatest ts computes a lower one, which is not emitted (its events are late, as before).
      output.emitWatermark(new Watermark(lowest - outOfOrdernessMs - 1));
    }
  }

  static final class EventsExtractor implements Extractor<ParsedEvent> {
    private static final long serialVersionUID = 1L;

    @Override
    public long ts(ParsedEvent e) {
      return e.ts;
    }

    @Override
    public Integer partition(ParsedEvent e) {
      return e.partition;
    }
  }

  static final class WindowInputsExtractor implements Extractor<WindowInput> {
    private static final long serialVersionUID = 1L;

    @Override
    public long ts(WindowInput in) {
      return in.ts;
    }

    @Override
    public Integer partition(WindowInput in) {
      return in.partition;
    }
  }

  private static final class Never<T> implements WatermarkStrategy<T> {
    private static final long serialVersionUID = 1L;

    @Override
    public WatermarkGenerator<T> createWatermarkGenerator(WatermarkGeneratorSupplier.Context context) {
      return new WatermarkGenerator<>() {
        @Override
        public void onEvent(T event, long eventTimestamp, WatermarkOutput output) {}

        @Override
        public void onPeriodicEmit(WatermarkOutput output) {
          output.markIdle();
        }
      };
    }
  }
}
