package io.segstream.engine;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** Events.checkFutureSkew, the words of operators/event_time.py future_skew_reason. */
class FutureSkewTest {
  static Event event(long ts) throws InvalidEvent {
    return Events.parse(("{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":" + ts + ",\"name\":\"n\"}")
        .getBytes(StandardCharsets.UTF_8));
  }

  @Test
  void upToTheSkewIsTakenOneMillisecondMoreIsRefused() throws Exception {
    long at = 1_765_000_000_000L;
    assertDoesNotThrow(() -> Events.checkFutureSkew(event(at + 60_000), at, 60_000));
    assertDoesNotThrow(() -> Events.checkFutureSkew(event(0), at, 60_000));  // far past: not refused
    InvalidEvent e = assertThrows(InvalidEvent.class, () -> Events.checkFutureSkew(event(at + 60_001), at, 60_000));
    assertEquals("ts is 60001 ms after the record's append time 1765000000000, over the 60000 ms allowed "
        + "(events.max_future_skew_ms)", e.reason());
    assertThrows(InvalidEvent.class, () -> Events.checkFutureSkew(event(Events.MAX_TS), at, 60_000));
    assertThrows(InvalidEvent.class, () -> Events.checkFutureSkew(event(1), -1, 0));  // no timestamp (-1)
  }
}
