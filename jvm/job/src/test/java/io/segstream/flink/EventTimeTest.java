package io.segstream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.segstream.flink.windows.WindowInput;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.util.clock.RelativeClock;
import org.junit.jupiter.api.Test;

/** The per-partition watermarks of {@link EventTime}, on a clock the test moves. */
class EventTimeTest {
  static final long BOUND = 5_000;
  static final long IDLE = 10_000;

  static final class Clock implements RelativeClock {
    long now;

    @Override
    public long relativeTimeMillis() {
      return now;
    }

    @Override
    public long relativeTimeNanos() {
      return now * 1_000_000;
    }
  }

  /** What the generator said: watermarks as numbers, "idle" for markIdle. */
  static final class Out implements WatermarkOutput {
    final List<Object> said = new ArrayList<>();

    @Override
    public void emitWatermark(Watermark watermark) {
      said.add(watermark.getTimestamp());
    }

    @Override
    public void markIdle() {
      said.add("idle");
    }

    @Override
    public void markActive() {}

    Object last() {
      return said.isEmpty() ? null : said.get(said.size() - 1);
    }
  }

  static ParsedEvent event(int partition, long ts) {
    ParsedEvent e = new ParsedEvent("k", null, new byte[0], partition, 0L);
    e.ts = ts;
    return e;
  }

  final Clock clock = new Clock();
  final Out out = new Out();
  final WatermarkGenerator<ParsedEvent> gen =
      new EventTime.PartitionWatermarks<>(new EventTime.EventsExtractor(), BOUND, IDLE, clock);

  void on(int partition, long ts) {
    gen.onEvent(event(partition, ts), ts, out);
  }

  @Test
  void nothingDuringTheFirstIdlenessThenTheLowestPartition() {
    on(0, 100_000);
    on(1, 50_000);
    clock.now = IDLE - 1;
    gen.onPeriodicEmit(out);
    assertEquals(List.of(), out.said, "partitions not seen yet may still come: no watermark");
    clock.now = IDLE;
    on(0, 120_000);
    on(1, 60_000);
    gen.onPeriodicEmit(out);
    assertEquals(60_000 - BOUND - 1, out.last());
  }

  @Test
  void aBatchOfOnePartitionDoesNotMakeTheNextOnesEventsLate() {
    // A backlog: partition 0's batch spans hours; partition 1's batch comes after it.
    for (long t = 0; t < 3_600_000; t += 1_000) on(0, t);
    clock.now = IDLE + 1;
    on(1, 1_000);
    gen.onPeriodicEmit(out);
    assertEquals(1_000 - BOUND - 1, out.last(), "the lowest partition holds the watermark");
  }

  @Test
  void aLongIdlenessDoesNotHoldTheFirstWatermarkBackLongerThanTheStartWait() {
    WatermarkGenerator<ParsedEvent> slow =
        new EventTime.PartitionWatermarks<>(new EventTime.EventsExtractor(), BOUND, 600_000, clock);
    slow.onEvent(event(0, 50_000), 50_000, out);
    clock.now = EventTime.MAX_START_WAIT_MS;
    slow.onPeriodicEmit(out);
    assertEquals(List.of(50_000 - BOUND - 1), out.said);
  }

  @Test
  void aBacklogReadWithinTheFirstIdlenessStillGivesItsWatermark() {
    on(0, 30_000);
    on(1, 20_000);
    clock.now = 5 * IDLE;  // both long idle at the first emit
    gen.onPeriodicEmit(out);
    gen.onPeriodicEmit(out);
    assertEquals(List.of(20_000 - BOUND - 1, "idle"), out.said);
  }

  @Test
  void anIdlePartitionDropsOutAndComesBackWithItsNextEvent() {
    clock.now = IDLE;
    on(0, 10_000);
    on(1, 90_000);
    gen.onPeriodicEmit(out);
    assertEquals(10_000 - BOUND - 1, out.last());
    clock.now = IDLE + IDLE;  // partition 0 silent for IDLE: out
    on(1, 95_000);
    gen.onPeriodicEmit(out);
    assertEquals(95_000 - BOUND - 1, out.last());
    on(0, 11_000);  // back: the lowest again (Flink's assigner keeps the emitted watermark monotonic)
    gen.onPeriodicEmit(out);
    assertEquals(11_000 - BOUND - 1, out.last());
  }

  @Test
  void allPartitionsIdleMarksTheOutputIdleOnce() {
    clock.now = IDLE;
    on(0, 10_000);
    gen.onPeriodicEmit(out);
    clock.now = 3 * IDLE;
    gen.onPeriodicEmit(out);
    gen.onPeriodicEmit(out);
    assertEquals(List.of(10_000 - BOUND - 1, "idle"), out.said);
    on(0, 20_000);
    gen.onPeriodicEmit(out);
    assertEquals(20_000 - BOUND - 1, out.last());
  }

  @Test
  void windowInputsAndTicksFollowTheSameEvents() {
    WatermarkGenerator<WindowInput> windows =
        new EventTime.PartitionWatermarks<>(new EventTime.WindowInputsExtractor(), BOUND, IDLE, clock);
    clock.now = IDLE;
    windows.onEvent(WindowInput.tick(70_000, 0), 70_000, out);
    WindowInput in = new WindowInput();
    in.ts = 40_000;
    in.partition = 1;
    windows.onEvent(in, 40_000, out);
    windows.onPeriodicEmit(out);
    assertEquals(40_000 - BOUND - 1, out.last());
  }

  @Test
  void theRulesInputIsIdleAndNeverMovesEventTime() {
    WatermarkGenerator<Object> never = EventTime.never().createWatermarkGenerator(null);
    never.onEvent("rule", Long.MAX_VALUE - 1, out);
    never.onPeriodicEmit(out);
    assertEquals(List.of("idle"), out.said);
  }

  @Test
  void optionsComeFromJsonWithDefaults() {
    assertEquals(EventTimeOptions.DEFAULTS, EventTimeOptions.fromJson(""));
    assertEquals(new EventTimeOptions(1, 2, 3),
        EventTimeOptions.fromJson("{\"max_future_skew_ms\":1,\"out_of_orderness_ms\":2,\"idleness_ms\":3}"));
    assertEquals(new EventTimeOptions(7, 5_000, 10_000), EventTimeOptions.fromJson("{\"max_future_skew_ms\":7}"));
    assertThrows(IllegalArgumentException.class, () -> EventTimeOptions.fromJson("{\"idleness_ms\":-1}"));
    assertThrows(IllegalArgumentException.class, () -> EventTimeOptions.fromJson("[1]"));
    assertTrue(EventTimeOptions.DEFAULTS.maxFutureSkewMs() > 0);
  }
}
