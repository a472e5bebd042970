package io.segstream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.List;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.ProcessFunctionTestHarnesses;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

class ToBigtableRowsTest {
  private static final String EVALUATION =
      "{\"event_id\":\"%s\",\"tenant\":\"default\",\"user_id\":\"u\",\"ts\":1,\"seq\":1,\"stats\":{},\"segments\":[]}";

  @Test
  void aKeyOverTheLimitIsDeadLetteredNotFailed() throws Exception {
    // valid by the contract (event_id has no length bound); key = 4 + 1 + 7 + 1 + 1 + 1 + 19 + 1 + 5000 bytes
    String longId = "x".repeat(5000);
    String event = "{\"event_id\":\"" + longId + "\",\"user_id\":\"u\",\"ts\":1,\"name\":\"n\",\"values\":{},\"tenant\":\"default\"}";
    String ok = "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1,\"name\":\"n\",\"values\":{},\"tenant\":\"default\"}";
    try (var h = ProcessFunctionTestHarnesses.forProcessFunction(new ToBigtableRows(4, "events"))) {
      h.processElement(Tuple2.of(event, String.format(EVALUATION, longId)), 0);
      h.processElement(Tuple2.of(ok, String.format(EVALUATION, "e")), 0);
      List<BigtableRows> rows = h.extractOutputValues();
      assertEquals(1, rows.size());
      List<Row> letters = h.getSideOutput(Outputs.DEAD_LETTERS).stream().map(StreamRecord::getValue).toList();
      assertEquals(1, letters.size());
      assertEquals(null, letters.get(0).getField(0));
      assertEquals("{\"reason\":\"bigtable: row key is 5035 bytes, over Bigtable's 4096\",\"topic\":\"events\","
          + "\"partition\":null,\"offset\":null,\"original_b64\":\""
          + Base64.getEncoder().encodeToString(event.getBytes(StandardCharsets.UTF_8)) + "\"}",
          new String((byte[]) letters.get(0).getField(1), StandardCharsets.UTF_8));
    }
  }

  @Test
  void aFailureDownstreamFailsTheTaskNotTheRecord() {
    // The chained Bigtable sink failing (an outage past its give-up time) is not this record's fault:
    // it must fail the task (restart from the checkpoint), never dead-letter a valid event.
    String ok = "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1,\"name\":\"n\",\"values\":{},\"tenant\":\"default\"}";
    org.apache.flink.util.Collector<BigtableRows> failing = new org.apache.flink.util.Collector<>() {
      @Override
      public void collect(BigtableRows record) {
        throw new IllegalStateException("Bigtable unreachable");
      }

      @Override
      public void close() {}
    };
    ToBigtableRows f = new ToBigtableRows(4, "events");
    IllegalStateException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
        () -> f.processElement(Tuple2.of(ok, String.format(EVALUATION, "e")), null, failing));
    assertEquals("Bigtable unreachable", e.getMessage());
  }
}
