package io.segstream.flink;

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.common.RuntimeExecutionMode;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.BroadcastState;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.runtime.state.FunctionInitializationContext;
import org.apache.flink.runtime.state.FunctionSnapshotContext;
import org.apache.flink.runtime.state.StateBackend;
import org.apache.flink.runtime.state.hashmap.HashMapStateBackend;
import org.apache.flink.state.api.OperatorIdentifier;
import org.apache.flink.state.api.OperatorTransformation;
import org.apache.flink.state.api.SavepointReader;
import org.apache.flink.state.api.SavepointWriter;
import org.apache.flink.state.api.StateBootstrapTransformation;
import org.apache.flink.state.api.functions.KeyedStateBootstrapFunction;
import org.apache.flink.state.api.functions.KeyedStateReaderFunction;
import org.apache.flink.state.rocksdb.EmbeddedRocksDBStateBackend;
import org.apache.flink.streaming.api.checkpoint.CheckpointedFunction;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.util.CloseableIterator;
import org.apache.flink.util.Collector;

/**
 * Backfill when definitions change (docs/batch.md): from a savepoint of the stopped job, a new
 * savepoint in which every user's state has the new catalogue's stats computed over their whole
 * retained history ({@link BackfillReplay}); every other operator's state (Kafka offsets, sink
 * transactions, windows) is the old savepoint's, so the job restarted from the new savepoint
 * resumes exactly where it stopped. A bounded job of Flink's State Processor API:
 *
 * <pre>
 * evaluate-user keyed state ("user" blob + event-time timers)   SavepointReader.readKeyedState
 *   ▼ Rebuild (map)       the user's Bigtable history, replayed under the new catalogue
 *   ▼ keyBy user key      the job's key, the job's key serializer (String)
 *   ▼ Restore (KeyedStateBootstrapFunction)  "user" blob, the timers, and the rule broadcast state
 * SavepointWriter.fromExistingSavepoint.removeOperator(evaluate-user).withOperator(evaluate-user, ...)
 * </pre>
 *
 * <p>What evaluate-user holds and how each part crosses: the keyed "user" blob (rebuilt); its
 * event-time timers (expiry: each user's registered timers are read and registered again, plus
 * the new catalogue's deadline if it moved); the broadcast state {@link Outputs#RULE_CHANGES}
 * (applied rule changes and the rules version: read first and written again by every subtask of
 * the bootstrap, as every subtask of the job holds a copy). Nothing else: the function keeps no
 * other state. Dedup receipts are inside the blob.
 *
 * <p>Runs on the embedded MiniCluster (segstream backfill): the progress counters are static, read
 * by the main thread. Output: progress lines on stderr, and a last line on stdout, the summary as
 * JSON.
 */
public final class Backfill {
  private Backfill() {}

  /** The ValueState of {@link EvaluateUsers}: same name, same serializer. */
  static final ValueStateDescriptor<byte[]> USER =
      new ValueStateDescriptor<>("user", PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO);

  /** Exit status of a stalled run (see main). */
  public static final int STALLED = 3;

  static final AtomicLong USERS = new AtomicLong();
  static final AtomicLong ROWS = new AtomicLong();
  /** Where the time goes (all subtasks summed): Bigtable reads, the engine's replay; and the span
   * from the first user rebuilt to the last (the steady part, without the jobs' start-up). */
  static final AtomicLong READ_NANOS = new AtomicLong();
  static final AtomicLong REPLAY_NANOS = new AtomicLong();
  static final AtomicLong FIRST_NANOS = new AtomicLong(Long.MAX_VALUE);
  static final AtomicLong LAST_NANOS = new AtomicLong(Long.MIN_VALUE);
  static final Map<BackfillReplay.Outcome, AtomicLong> OUTCOMES = new EnumMap<>(BackfillReplay.Outcome.class);

  static {
    for (BackfillReplay.Outcome o : BackfillReplay.Outcome.values()) OUTCOMES.put(o, new AtomicLong());
  }

  /** One user between the steps: a Flink POJO. */
  public static class User {
    public String key;
    public byte[] state;
    public long[] timers;

    public User() {}

    User(String key, byte[] state, long[] timers) {
      this.key = key;
      this.state = state;
      this.timers = timers;
    }
  }

  /** Every user's blob and event-time timers. */
  static final class Read extends KeyedStateReaderFunction<String, User> {
    private static final long serialVersionUID = 1L;
    private transient ValueState<byte[]> user;

    @Override
    public void open(OpenContext openContext) {
      user = getRuntimeContext().getState(USER);
    }

    @Override
    public void readKey(String key, Context ctx, Collector<User> out) throws Exception {
      byte[] blob = user.value();
      if (blob == null) return;  // a key with timers only: nothing to rebuild, its timers find no state
      Set<Long> timers = ctx.registeredEventTimeTimers();
      out.collect(new User(key, blob, timers.stream().mapToLong(Long::longValue).toArray()));
    }
  }

  /** The user's history from Bigtable, replayed under the new catalogue. A map, one read per user:
   * a mapPartition reading 100 users a read (BackfillHistory takes several) had a faster steady
   * part, but was tried only while the RocksDB hang (main) was unexplained (docs/benchmarks.md). */
  static final class Rebuild extends RichMapFunction<User, User> {
    private static final long serialVersionUID = 1L;
    private final String catalogueJson;
    private final String project;
    private final String instance;
    private final String eventsTable;
    private final int hashPrefixHex;
    private final String emulatorHost;
    private transient BackfillReplay replay;
    private transient BackfillHistory history;

    Rebuild(String catalogueJson, String project, String instance, String eventsTable, int hashPrefixHex,
        String emulatorHost) {
      this.catalogueJson = catalogueJson;
      this.project = project;
      this.instance = instance;
      this.eventsTable = eventsTable;
      this.hashPrefixHex = hashPrefixHex;
      this.emulatorHost = emulatorHost;
    }

    @Override
    public void open(OpenContext openContext) throws Exception {
      replay = new BackfillReplay(catalogueJson);
      history = new BackfillHistory(project, instance, eventsTable, hashPrefixHex, emulatorHost);
    }

    @Override
    public User map(User user) throws Exception {
      long t0 = System.nanoTime();
      FIRST_NANOS.accumulateAndGet(t0, Math::min);
      String[] who = UserKey.split(user.key);
      List<BackfillReplay.Row> rows = List.of();
      long t1 = t0;
      BackfillReplay.Result r;
      try {
        // Users that need no history (expired, already on the new catalogue) are not read at all.
        r = replay.rebuild(user.state, List.of());
        if (r.outcome() == BackfillReplay.Outcome.NO_HISTORY) {
          rows = history.rows(List.<String[]>of(who)).get(0);
          t1 = System.nanoTime();
          r = replay.rebuild(user.state, rows);
        }
      } catch (Exception e) {
        throw new IllegalStateException("backfill of tenant " + who[0] + " user " + who[1] + ": " + e, e);
      }
      long t2 = System.nanoTime();
      READ_NANOS.addAndGet(t1 - t0);
      REPLAY_NANOS.addAndGet(t2 - t1);
      LAST_NANOS.accumulateAndGet(t2, Math::max);
      USERS.incrementAndGet();
      ROWS.addAndGet(rows.size());
      OUTCOMES.get(r.outcome()).incrementAndGet();
      long[] timers = user.timers;
      if (r.timer() != null) {
        timers = Arrays.copyOf(timers, timers.length + 1);
        timers[timers.length - 1] = r.timer();
      }
      return new User(user.key, r.state(), timers);
    }

    @Override
    public void close() {
      if (history != null) history.close();
    }
  }

  /** Writes each user's state and timers, and the rule broadcast state (as {@link EvaluateUsers} holds them). */
  static final class Restore extends KeyedStateBootstrapFunction<String, User> implements CheckpointedFunction {
    private static final long serialVersionUID = 1L;
    private final HashMap<String, String> ruleChanges;
    private transient ValueState<byte[]> user;

    Restore(Map<String, String> ruleChanges) {
      this.ruleChanges = new HashMap<>(ruleChanges);
    }

    @Override
    public void open(OpenContext openContext) {
      user = getRuntimeContext().getState(USER);
    }

    @Override
    public void initializeState(FunctionInitializationContext context) throws Exception {
      if (ruleChanges.isEmpty()) return;  // the job had seen no rule record: it had no entry either
      BroadcastState<String, String> state = context.getOperatorStateStore().getBroadcastState(Outputs.RULE_CHANGES);
      state.putAll(ruleChanges);
    }

    @Override
    public void snapshotState(FunctionSnapshotContext context) {
      // The broadcast state is snapshotted by the operator's state backend with the keyed state.
    }

    @Override
    public void processElement(User in, Context ctx) throws Exception {
      try {
        user.update(in.state);
        for (long t : in.timers) ctx.timerService().registerEventTimeTimer(t);
      } catch (Exception | Error e) {
        // This runs in the State Processor API's bootstrap thread, whose feeder waits on it: a
        // failure here must end the program loudly rather than leave the feeder waiting.
        throw fatal("writing user " + in.key, e);
      }
    }

    @Override
    public void close() throws Exception {
      try {
        super.close();
      } catch (Exception | Error e) {
        throw fatal("closing the writer", e);
      }
    }

    private static RuntimeException fatal(String what, Throwable e) {
      System.err.println("backfill: error: " + what + ": " + e);
      e.printStackTrace();
      System.err.flush();
      Runtime.getRuntime().halt(1);
      return new IllegalStateException(what, e);
    }
  }

  static StateBackend backend(String name) {
    return switch (name) {
      case "rocksdb" -> new EmbeddedRocksDBStateBackend();
      case "hashmap" -> new HashMapStateBackend();
      default -> throw new IllegalArgumentException("state backend must be rocksdb or hashmap, got " + name);
    };
  }

  static Map<String, String> args(String[] argv) {
    Map<String, String> a = new LinkedHashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      if (!argv[i].startsWith("--")) throw new IllegalArgumentException("expected --name value, got " + argv[i]);
      a.put(argv[i].substring(2), argv[i + 1]);
    }
    for (String need : List.of("savepoint", "out", "catalogue", "project", "instance", "events-table",
        "hash-prefix-hex")) {
      if (!a.containsKey(need)) throw new IllegalArgumentException("missing --" + need);
    }
    return a;
  }

  /**
   * {@code --savepoint DIR --out DIR --catalogue FILE.json --project P --instance I --events-table T
   * --hash-prefix-hex N [--emulator-host H:P] [--state-backend rocksdb|hashmap] [--parallelism N]
   * [--progress-interval-s S] [--stall-timeout-s S]}
   */
  public static void main(String[] argv) throws Exception {
    // The State Processor API runs the bootstrap operator in a thread of its own, fed through a
    // queue (docs/batch.md, limits): a CLI must fail rather than wait, so any uncaught exception
    // ends the program with its stack trace.
    Thread.setDefaultUncaughtExceptionHandler((thread, e) -> {
      System.err.println("backfill: error: uncaught in thread " + thread.getName() + ": " + e);
      e.printStackTrace();
      System.err.flush();
      Runtime.getRuntime().halt(1);
    });
    Map<String, String> a = args(argv);
    String catalogueJson = Files.readString(Path.of(a.get("catalogue")), StandardCharsets.UTF_8);
    new BackfillReplay(catalogueJson);  // an invalid catalogue fails here, before any job
    // The job's backend (segstream backfill passes flink.state_backend); savepoints are in Flink's
    // canonical format, so either restores into either (BackfillStateTest).
    StateBackend backend = backend(a.getOrDefault("state-backend", "rocksdb"));
    int parallelism = Integer.parseInt(a.getOrDefault("parallelism", "1"));
    long interval = (long) (Double.parseDouble(a.getOrDefault("progress-interval-s", "5")) * 1000);
    PrintStream err = System.err;
    long start = System.nanoTime();

    Configuration conf = new Configuration();
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
    env.setRuntimeMode(RuntimeExecutionMode.BATCH);
    env.setParallelism(parallelism);
    OperatorIdentifier evaluate = OperatorIdentifier.forUid(Pipeline.EVALUATE_UID);

    // 1. The rule broadcast state: small (the rule changes), read whole before the main job.
    Map<String, String> ruleChanges = new HashMap<>();
    SavepointReader reader = SavepointReader.read(env, a.get("savepoint"), backend);
    DataStream<Tuple2<String, String>> rules = reader.readBroadcastState(evaluate, Outputs.RULE_CHANGES.getName(),
        Types.STRING, Types.STRING);
    try (CloseableIterator<Tuple2<String, String>> it = rules.executeAndCollect("segstream backfill: rule state")) {
      while (it.hasNext()) {
        Tuple2<String, String> e = it.next();
        ruleChanges.put(e.f0, e.f1);  // every subtask's copy is the same
      }
    }
    err.printf("backfill: read %d rule broadcast entries (rules_version %s)%n", ruleChanges.size(),
        ruleChanges.getOrDefault(Outputs.VERSION_KEY, "0"));

    // 2. Every user: read, rebuild, write into a new savepoint with the other operators' state.
    reader = SavepointReader.read(env, a.get("savepoint"), backend);
    DataStream<User> users = reader.readKeyedState(evaluate, new Read(), Types.STRING, TypeInformation.of(User.class))
        .map(new Rebuild(catalogueJson, a.get("project"), a.get("instance"), a.get("events-table"),
            Integer.parseInt(a.get("hash-prefix-hex")), a.getOrDefault("emulator-host", "")))
        .returns(TypeInformation.of(User.class)).name("rebuild");
    StateBootstrapTransformation<User> rebuilt = OperatorTransformation.bootstrapWith(users)
        .keyBy(u -> u.key, Types.STRING)
        .transform(new Restore(ruleChanges));
    SavepointWriter.fromExistingSavepoint(env, a.get("savepoint"), backend)
        .removeOperator(evaluate)
        .withOperator(evaluate, rebuilt)
        .write(a.get("out"));

    long stallNanos = (long) (Double.parseDouble(a.getOrDefault("stall-timeout-s", "120")) * 1e9);
    Thread progress = new Thread(() -> {
      try {
        long lastUsers = -1;
        long lastChange = System.nanoTime();
        while (true) {
          Thread.sleep(interval);
          long now = System.nanoTime();
          double s = (now - start) / 1e9;
          long done = USERS.get();
          err.printf("backfill: %.0f s, %,d users (%,.0f/s), %,d history rows (%,.0f/s)%n", s, done,
              done / s, ROWS.get(), ROWS.get() / s);
          if (done != lastUsers) {
            lastUsers = done;
            lastChange = now;
          } else if (done > 0 && now - lastChange > stallNanos) {
            // The State Processor API's bootstrap thread can vanish and leave its feeder waiting
            // forever (docs/batch.md, limits): fail, with a status of its own, so it can be rerun.
            err.printf("backfill: error: stalled: no progress for %.0f s after %,d users%n", (now - lastChange) / 1e9,
                done);
            err.flush();
            Runtime.getRuntime().halt(STALLED);
          }
        }
      } catch (InterruptedException e) {
        // done
      }
    }, "backfill-progress");
    progress.setDaemon(true);
    progress.start();
    try {
      env.execute("segstream backfill");
    } catch (Exception e) {
      Throwable root = e;
      while (root.getCause() != null && root.getCause() != root) root = root.getCause();
      e.printStackTrace();
      System.err.println("backfill: error: " + root);
      System.err.flush();
      System.exit(1);
    } finally {
      progress.interrupt();
    }
    double seconds = (System.nanoTime() - start) / 1e9;
    Map<String, Object> summary = new LinkedHashMap<>();
    summary.put("savepoint", a.get("out"));
    summary.put("users", USERS.get());
    summary.put("rows", ROWS.get());
    summary.put("seconds", Math.round(seconds * 1000) / 1000.0);
    Map<String, Object> outcomes = new LinkedHashMap<>();
    for (var e : OUTCOMES.entrySet()) outcomes.put(e.getKey().name().toLowerCase(java.util.Locale.ROOT), e.getValue().get());
    summary.put("outcomes", outcomes);
    summary.put("rule_entries", ruleChanges.size());
    double steady = USERS.get() == 0 ? 0 : (LAST_NANOS.get() - FIRST_NANOS.get()) / 1e9;
    summary.put("rebuild_seconds", Math.round(steady * 1000) / 1000.0);
    summary.put("read_seconds", Math.round(READ_NANOS.get() / 1e6) / 1000.0);
    summary.put("replay_seconds", Math.round(REPLAY_NANOS.get() / 1e6) / 1000.0);
    System.out.println(io.segstream.engine.Json.render(summary));
  }
}
