package io.segstream.flink;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.google.cloud.bigtable.data.v2.BigtableDataClient;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * {@link BigtableSink}'s writer outside Flink, from the job jar: for the emulator tests
 * (tests/sinks/test_bigtable_sink_jvm.py: the reference rows, outages, errors) and the writer's
 * throughput ceiling (bench/bigtable_write.py jvm-writer).
 *
 * <pre>java -cp segstream-job.jar io.segstream.flink.BigtableSinkTool [--stream] [--give-up-after-s S] \
 *     EMULATOR_HOST PROJECT INSTANCE EVENTS_TABLE PROFILES_TABLE HASH_PREFIX_HEX &lt; records.jsonl</pre>
 *
 * Input: one JSON array [event JSON, evaluation JSON] per line (the mirror's records). By default
 * all are read before the clock starts; with {@code --stream} each is written as it is read (a test
 * can then pause the emulator mid-stream), and "flushing after N records" goes to stderr at the end
 * of input, before the final flush. {@code --give-up-after-s} sets {@link BigtableSink#giveUpAfter}.
 * Output: one JSON line {"records", "seconds", "records_per_s"}, the time from the first write to
 * the final flush (rows built and written, every one acknowledged). A failed flush throws: exit
 * status 1, "N rows could not be written to Bigtable" on stderr.
 */
public final class BigtableSinkTool {
  private BigtableSinkTool() {}

  public static void main(String[] argv) {
    try {
      run(argv);
    } catch (Exception e) {
      e.printStackTrace();
      System.exit(1);  // whatever client threads are left (they are not daemons)
    }
    System.exit(0);
  }

  private static void run(String[] argv) throws Exception {
    List<String> args = new ArrayList<>(Arrays.asList(argv));
    boolean stream = args.remove("--stream");
    Duration giveUp = null;
    int at = args.indexOf("--give-up-after-s");
    if (at >= 0 && at + 1 < args.size()) {
      giveUp = Duration.ofMillis(Math.round(Double.parseDouble(args.get(at + 1)) * 1000));
      args.subList(at, at + 2).clear();
    }
    if (args.size() != 6) {
      System.err.println("usage: BigtableSinkTool [--stream] [--give-up-after-s S] EMULATOR_HOST PROJECT INSTANCE"
          + " EVENTS_TABLE PROFILES_TABLE HASH_PREFIX_HEX < records.jsonl");
      System.exit(2);
    }
    int width = Integer.parseInt(args.get(5));
    BigtableSink sink = new BigtableSink(args.get(1), args.get(2), args.get(3), args.get(4), args.get(0));
    if (giveUp != null) sink.giveUpAfter(giveUp);
    ObjectMapper mapper = new ObjectMapper();
    long records = 0;
    long start;
    long end;
    try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
         BigtableSink.Writer writer = new BigtableSink.Writer(
             BigtableDataClient.create(sink.settings()), args.get(3), args.get(4))) {
      List<String[]> pending = new ArrayList<>();
      start = System.nanoTime();
      for (String line = in.readLine(); line != null; line = in.readLine()) {
        if (line.isBlank()) continue;
        JsonNode pair = mapper.readTree(line);
        String[] r = {pair.get(0).asText(), pair.get(1).asText()};
        records++;
        if (stream) {
          writer.write(BigtableRows.of(r[0], r[1], width), null);
        } else {
          pending.add(r);
        }
      }
      if (!stream) {
        start = System.nanoTime();
        for (String[] r : pending) writer.write(BigtableRows.of(r[0], r[1], width), null);
      }
      System.err.println("flushing after " + records + " records");
      writer.flush(true);
      end = System.nanoTime();
    }
    double seconds = (end - start) / 1e9;
    System.out.printf("{\"records\":%d,\"seconds\":%.3f,\"records_per_s\":%.0f}%n",
        records, seconds, records / seconds);
  }
}
