package io.segstream.flink;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.google.cloud.bigtable.data.v2.BigtableDataClient;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link BigtableSink}'s writer outside Flink, from the job jar: for the emulator test
 * (tests/sinks/test_bigtable_sink_jvm.py: the same table as the Python writer) and the writer's
 * throughput ceiling (bench/bigtable_write.py --jvm).
 *
 * <pre>java -cp segstream-job.jar io.segstream.flink.BigtableSinkTool \
 *     EMULATOR_HOST PROJECT INSTANCE EVENTS_TABLE PROFILES_TABLE HASH_PREFIX_HEX &lt; records.jsonl</pre>
 *
 * Input: one JSON array [event JSON, evaluation JSON] per line (the mirror's records), all read
 * before the clock starts. Output: one JSON line {"records", "seconds", "records_per_s"}, the time
 * from the first write to the final flush (rows built and written, every one acknowledged).
 */
public final class BigtableSinkTool {
  private BigtableSinkTool() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 6) {
      System.err.println("usage: BigtableSinkTool EMULATOR_HOST PROJECT INSTANCE EVENTS_TABLE PROFILES_TABLE"
          + " HASH_PREFIX_HEX < records.jsonl");
      System.exit(2);
    }
    int width = Integer.parseInt(args[5]);
    ObjectMapper mapper = new ObjectMapper();
    List<String[]> records = new ArrayList<>();
    try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
      for (String line = in.readLine(); line != null; line = in.readLine()) {
        if (line.isBlank()) continue;
        JsonNode pair = mapper.readTree(line);
        records.add(new String[] {pair.get(0).asText(), pair.get(1).asText()});
      }
    }
    BigtableSink sink = new BigtableSink(args[1], args[2], args[3], args[4], args[0]);
    long start;
    long end;
    try (BigtableSink.Writer writer = new BigtableSink.Writer(
        BigtableDataClient.create(sink.settings()), args[3], args[4])) {
      start = System.nanoTime();
      for (String[] r : records) writer.write(BigtableRows.of(r[0], r[1], width), null);
      writer.flush(true);
      end = System.nanoTime();
    }
    double seconds = (end - start) / 1e9;
    System.out.printf("{\"records\":%d,\"seconds\":%.3f,\"records_per_s\":%.0f}%n",
        records.size(), seconds, records.size() / seconds);
    System.exit(0);  // the client's executor threads are not daemons
  }
}
