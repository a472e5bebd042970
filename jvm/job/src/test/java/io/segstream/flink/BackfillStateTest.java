package io.segstream.flink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.RuntimeExecutionMode;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.runtime.state.hashmap.HashMapStateBackend;
import org.apache.flink.state.api.OperatorIdentifier;
import org.apache.flink.state.api.OperatorTransformation;
import org.apache.flink.state.api.SavepointReader;
import org.apache.flink.state.api.SavepointWriter;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.util.CloseableIterator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Backfill's writer and reader functions through the State Processor API on a local environment:
 * what Restore writes (blob, timers, the rule broadcast state) Read and readBroadcastState give back. */
class BackfillStateTest {
  @TempDir Path tmp;

  static StreamExecutionEnvironment env() {
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    env.setRuntimeMode(RuntimeExecutionMode.BATCH);
    env.setParallelism(2);
    return env;
  }

  static <T> List<T> collect(org.apache.flink.streaming.api.datastream.DataStream<T> stream) throws Exception {
    List<T> out = new ArrayList<>();
    try (CloseableIterator<T> it = stream.executeAndCollect()) {
      it.forEachRemaining(out::add);
    }
    return out;
  }

  @Test
  void blobsTimersAndTheRuleBroadcastStateRoundTrip() throws Exception {
    List<Backfill.User> users = new ArrayList<>();
    for (int i = 0; i < 20; i++) {
      users.add(new Backfill.User(UserKey.of("acme", "u" + i), ("blob" + i).getBytes(StandardCharsets.UTF_8),
          i % 2 == 0 ? new long[] {1_000L + i, 5_000L + i} : new long[0]));
    }
    Map<String, String> rules = Map.of(Outputs.VERSION_KEY, "3", "big", "{\"id\":\"big\"}", "gone", "");
    String path = tmp.resolve("sp").toUri().toString();
    OperatorIdentifier uid = OperatorIdentifier.forUid(Pipeline.EVALUATE_UID);

    StreamExecutionEnvironment env = env();
    SavepointWriter.newSavepoint(env, new HashMapStateBackend(), 128)
        .withOperator(uid, OperatorTransformation.bootstrapWith(env.fromData(TypeInformation.of(Backfill.User.class), users.toArray(new Backfill.User[0])))
            .keyBy(u -> u.key, Types.STRING)
            .transform(new Backfill.Restore(rules)))
        .write(path);
    env.execute("write");

    // Read back with RocksDB, the job's backend: the heap backend's savepoint (canonical format)
    // restores into it, timers included.
    SavepointReader reader = SavepointReader.read(env(), path, new org.apache.flink.state.rocksdb.EmbeddedRocksDBStateBackend());
    Map<String, Backfill.User> read = new HashMap<>();
    for (Backfill.User u : collect(reader.readKeyedState(uid, new Backfill.Read(), Types.STRING,
        TypeInformation.of(Backfill.User.class)))) {
      read.put(u.key, u);
    }
    assertEquals(users.size(), read.size());
    for (Backfill.User u : users) {
      Backfill.User back = read.get(u.key);
      assertArrayEquals(u.state, back.state, u.key);
      long[] timers = back.timers.clone();
      java.util.Arrays.sort(timers);
      assertArrayEquals(u.timers, timers, u.key);
    }
    List<Tuple2<String, String>> broadcast = collect(SavepointReader.read(env(), path, new HashMapStateBackend())
        .readBroadcastState(uid, Outputs.RULE_CHANGES.getName(), Types.STRING, Types.STRING));
    Map<String, String> back = new HashMap<>();
    for (Tuple2<String, String> e : broadcast) back.put(e.f0, e.f1);
    assertEquals(rules, back);
  }
}
