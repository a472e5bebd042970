package io.segstream.flink;

import com.google.api.core.ApiFuture;
import com.google.api.core.ApiFutureCallback;
import com.google.api.core.ApiFutures;
import com.google.api.gax.batching.BatchingSettings;
import com.google.api.gax.batching.Batcher;
import com.google.api.gax.batching.FlowControlSettings;
import com.google.api.gax.batching.FlowController.LimitExceededBehavior;
import com.google.api.gax.retrying.RetrySettings;
import com.google.cloud.bigtable.data.v2.BigtableDataClient;
import com.google.cloud.bigtable.data.v2.BigtableDataSettings;
import com.google.cloud.bigtable.data.v2.models.BulkMutation;
import com.google.cloud.bigtable.data.v2.models.Filters;
import com.google.cloud.bigtable.data.v2.models.Mutation;
import com.google.cloud.bigtable.data.v2.models.Query;
import com.google.cloud.bigtable.data.v2.models.Row;
import com.google.cloud.bigtable.data.v2.models.RowMutation;
import com.google.cloud.bigtable.data.v2.models.RowMutationEntry;
import com.google.cloud.bigtable.data.v2.stub.BigtableBatchingCallSettings;
import com.google.cloud.bigtable.data.v2.stub.metrics.NoopMetricsProvider;
import com.google.common.util.concurrent.MoreExecutors;
import com.google.protobuf.ByteString;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.flink.api.common.operators.ProcessingTimeService;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.metrics.Counter;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes {@link BigtableRows} to the events and profiles tables (docs/bigtable.md, "The JVM sink"),
 * on Google's Java client and its bulk-mutation batcher.
 *
 * <p>Loss-free across a crash: {@link SinkWriter#flush} runs before every checkpoint barrier is
 * passed on, and it returns only when every row written so far is acknowledged; a row that failed
 * fails the flush, hence the checkpoint, hence the job (which replays from the last completed
 * checkpoint). Rows have deterministic keys and cell timestamps, so replayed writes are no-ops:
 * at-least-once delivery gives exactly the same table.
 *
 * <p>Every event row is written. A user's profile row is written at most once per
 * {@value #PROFILE_LINGER_MS} ms: within that window only the newest evaluation (highest seq) is
 * kept, since the profile family keeps one version and the newest seq wins anyway; the flush before
 * a barrier writes whatever is waiting, so the delivery argument above is unchanged.
 *
 * <p>Transient errors are retried by the client with exponential backoff (capped at
 * {@value #MAX_BACKOFF_S} s) for up to {@value #GIVE_UP_AFTER_S} s ({@link #giveUpAfter}); then the
 * rows fail, and with them the flush, as above. Permanent ones (no such table, bad request) fail at
 * once. Flow control: the batchers block {@code write} once {@value #MAX_OUTSTANDING_ROWS} rows are
 * unacknowledged, which is the backpressure Flink sees.
 */
public class BigtableSink implements Sink<BigtableRows> {
  private static final long serialVersionUID = 1L;
  private static final Logger LOG = LoggerFactory.getLogger(BigtableSink.class);

  static final long MAX_BATCH_ROWS = 500;
  static final long MAX_OUTSTANDING_ROWS = 20_000;
  static final long MAX_OUTSTANDING_BYTES = 64L << 20;
  /** A partial batch waits this long for more rows (a full one goes at once; flush() sends at once).
   * 5 ms gave many small MutateRows calls in the job: 2.0k ev/s against 3.2-3.6k ev/s with 100 ms
   * (docs/benchmarks.md, section 7). */
  static final long LINGER_MS = 100;
  /** A profile row waits this long (or until {@value #MAX_PENDING_PROFILES} users have one waiting, or
   * the next flush) so that a user's later evaluations replace it before it is written: only the
   * newest cells of a profile are kept (GC max versions 1), and on the emulator every profile write
   * costs about 80 µs of its CPU against 5 µs for an event row (docs/benchmarks.md, section 7). */
  static final long PROFILE_LINGER_MS = 1000;
  static final int MAX_PENDING_PROFILES = 5000;
  static final long MAX_BACKOFF_S = 2;
  static final long GIVE_UP_AFTER_S = 300;

  private final String project;
  private final String instance;
  private final String eventsTable;
  private final String profilesTable;
  private final String emulatorHost;
  private long giveUpAfterMs = GIVE_UP_AFTER_S * 1000;

  /**
   * @param emulatorHost host:port of the Bigtable emulator, or empty for the production endpoint
   *     and application-default credentials. Passed explicitly because a cluster's TaskManagers
   *     need not have BIGTABLE_EMULATOR_HOST in their environment.
   */
  public BigtableSink(String project, String instance, String eventsTable, String profilesTable, String emulatorHost) {
    this.project = project;
    this.instance = instance;
    this.eventsTable = eventsTable;
    this.profilesTable = profilesTable;
    this.emulatorHost = emulatorHost == null ? "" : emulatorHost.trim();
    if (!this.emulatorHost.isEmpty()) port(this.emulatorHost);  // fail on the client for a bad host
  }

  /** How long transient errors are retried before the rows fail (default {@value #GIVE_UP_AFTER_S} s). */
  public BigtableSink giveUpAfter(Duration giveUp) {
    if (giveUp.isNegative() || giveUp.isZero()) throw new IllegalArgumentException("give-up time must be positive");
    this.giveUpAfterMs = giveUp.toMillis();
    return this;
  }

  @Override
  public SinkWriter<BigtableRows> createWriter(WriterInitContext context) throws IOException {
    return new Writer(BigtableDataClient.create(settings()), eventsTable, profilesTable,
        context.getProcessingTimeService(), context.metricGroup().counter("bigtableProfilesCoalesced"));
  }

  BigtableDataSettings settings() {
    BigtableDataSettings.Builder b = emulatorHost.isEmpty()
        ? BigtableDataSettings.newBuilder()
        : BigtableDataSettings.newBuilderForEmulator(
            emulatorHost.substring(0, emulatorHost.lastIndexOf(':')), port(emulatorHost));
    b.setProjectId(project).setInstanceId(instance);
    // Client-side metrics go to Cloud Monitoring, which would need its own IAM grant; the job's
    // own metrics are Flink's.
    b.setMetricsProvider(NoopMetricsProvider.INSTANCE).disableInternalMetrics();
    BigtableBatchingCallSettings.Builder bulk = b.stubSettings().bulkMutateRowsSettings();
    bulk.setBatchingSettings(BatchingSettings.newBuilder()
        .setElementCountThreshold(MAX_BATCH_ROWS)
        .setRequestByteThreshold(16L << 20)
        .setDelayThresholdDuration(Duration.ofMillis(LINGER_MS))
        .setFlowControlSettings(FlowControlSettings.newBuilder()
            .setMaxOutstandingElementCount(MAX_OUTSTANDING_ROWS)
            .setMaxOutstandingRequestBytes(MAX_OUTSTANDING_BYTES)
            .setLimitExceededBehavior(LimitExceededBehavior.Block)
            .build())
        .build());
    RetrySettings retry = bulk.getRetrySettings();
    Duration giveUp = Duration.ofMillis(giveUpAfterMs);
    bulk.setRetrySettings(retry.toBuilder()
        .setMaxRetryDelayDuration(Duration.ofSeconds(MAX_BACKOFF_S))
        .setTotalTimeoutDuration(giveUp)
        // No single attempt outlives the give-up time (the client's default attempt is 60 s).
        .setInitialRpcTimeoutDuration(min(retry.getInitialRpcTimeoutDuration(), giveUp))
        .setMaxRpcTimeoutDuration(min(retry.getMaxRpcTimeoutDuration(), giveUp))
        .build());
    return b.build();
  }

  private static Duration min(Duration a, Duration b) {
    return a.compareTo(b) <= 0 ? a : b;
  }

  private static int port(String hostPort) {
    int colon = hostPort.lastIndexOf(':');
    try {
      if (colon > 0) return Integer.parseInt(hostPort.substring(colon + 1));
    } catch (NumberFormatException e) {
      // fall through
    }
    throw new IllegalArgumentException("bigtable emulator host must be host:port, got '" + hostPort + "'");
  }

  /** One per subtask: a client, a batcher per table, and the first failure seen. */
  static final class Writer implements SinkWriter<BigtableRows> {
    private final BigtableDataClient client;
    private final String eventsTable;
    private final String profilesTable;
    private final Batcher<RowMutationEntry, Void> events;
    private final Batcher<RowMutationEntry, Void> profiles;
    private final AtomicReference<Throwable> failure = new AtomicReference<>();
    private final AtomicLong failedRows = new AtomicLong();
    private final ApiFutureCallback<Void> onResult = new ApiFutureCallback<>() {
      @Override
      public void onFailure(Throwable t) {
        failedRows.incrementAndGet();
        if (failure.compareAndSet(null, t)) LOG.error("Bigtable write failed", t);
      }

      @Override
      public void onSuccess(Void result) {}
    };

    /** Profile rows not yet handed to the batcher, newest (highest seq) per row key. */
    private final Map<ByteBuffer, Pending> pendingProfiles = new HashMap<>();
    private final ProcessingTimeService timers;  // null outside Flink
    private final Counter coalesced;  // null outside Flink
    private long coalescedCount;
    private long pendingSinceNanos;
    private boolean drainScheduled;

    private record Pending(long micros, RowMutationEntry entry) {}

    Writer(BigtableDataClient client, String eventsTable, String profilesTable) {
      this(client, eventsTable, profilesTable, null, null);
    }

    Writer(BigtableDataClient client, String eventsTable, String profilesTable, ProcessingTimeService timers,
        Counter coalesced) {
      this.client = client;
      this.eventsTable = eventsTable;
      this.profilesTable = profilesTable;
      this.events = client.newBulkMutationBatcher(eventsTable);
      this.profiles = client.newBulkMutationBatcher(profilesTable);
      this.timers = timers;
      this.coalesced = coalesced;
    }

    @Override
    public void write(BigtableRows rows, Context context) throws IOException {
      check();  // fail fast rather than at the next checkpoint
      if (rows.erasePrefix != null) {
        erase(rows);
        return;
      }
      add(events, rows.eventEntry());
      Pending profile = new Pending(rows.profileMicros, rows.profileEntry());
      if (pendingProfiles.isEmpty()) {
        pendingSinceNanos = System.nanoTime();
        scheduleDrain();
      }
      Pending before = pendingProfiles.putIfAbsent(ByteBuffer.wrap(rows.profileKey), profile);
      if (before != null) {  // an older evaluation of the same user: only the newest is written
        if (profile.micros() >= before.micros()) pendingProfiles.put(ByteBuffer.wrap(rows.profileKey), profile);
        coalescedCount++;
        if (coalesced != null) coalesced.inc();
      }
      if (pendingProfiles.size() >= MAX_PENDING_PROFILES
          || System.nanoTime() - pendingSinceNanos >= PROFILE_LINGER_MS * 1_000_000) {
        drainProfiles();
      }
    }

    /**
     * Delete one user's events rows and profile row (an erasure, docs/security.md). The user's
     * earlier rows came through this writer (the mirror follows the keyed evaluator, forward): they
     * are flushed first, so none lands after the deletion; a profile not yet handed over is dropped.
     * Synchronous on the task thread: erasures are rare. A failure fails the task, and the restart
     * replays the erasure (deleting again is harmless).
     */
    private void erase(BigtableRows rows) throws IOException {
      pendingProfiles.remove(ByteBuffer.wrap(rows.profileKey));
      drainProfiles();
      try {
        events.flush();
        profiles.flush();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted before an erasure", e);
      }
      check();
      Query query = Query.create(eventsTable).prefix(ByteString.copyFrom(rows.erasePrefix))
          .filter(Filters.FILTERS.chain().filter(Filters.FILTERS.limit().cellsPerRow(1))
              .filter(Filters.FILTERS.value().strip()));
      BulkMutation deletes = BulkMutation.create(eventsTable);
      for (Row row : client.readRows(query)) {
        deletes.add(row.getKey(), Mutation.create().deleteRow());
        if (deletes.getEntryCount() >= 1000) {
          client.bulkMutateRows(deletes);
          deletes = BulkMutation.create(eventsTable);
        }
      }
      if (deletes.getEntryCount() > 0) client.bulkMutateRows(deletes);
      client.mutateRow(RowMutation.create(profilesTable, ByteString.copyFrom(rows.profileKey),
          Mutation.create().deleteRow()));
    }

    /** Profile writes saved by coalescing so far. */
    long coalescedProfiles() {
      return coalescedCount;
    }

    /** In Flink, a timer drains the profiles after the linger even if no more rows come (runs on
     * the task thread, like write and flush). */
    private void scheduleDrain() {
      if (timers == null || drainScheduled) return;
      drainScheduled = true;
      timers.registerTimer(timers.getCurrentProcessingTime() + PROFILE_LINGER_MS, time -> {
        drainScheduled = false;
        drainProfiles();
      });
    }

    private void drainProfiles() {
      for (Pending p : pendingProfiles.values()) add(profiles, p.entry());
      pendingProfiles.clear();
    }

    private void add(Batcher<RowMutationEntry, Void> batcher, RowMutationEntry entry) {
      ApiFuture<Void> done = batcher.add(entry);  // blocks while the flow control is full
      ApiFutures.addCallback(done, onResult, MoreExecutors.directExecutor());
    }

    /** Before a checkpoint barrier and at end of input: every row so far acknowledged, or throw. */
    @Override
    public void flush(boolean endOfInput) throws IOException, InterruptedException {
      drainProfiles();
      events.flush();
      profiles.flush();
      check();
    }

    private void check() throws IOException {
      Throwable t = failure.get();
      if (t != null) {
        throw new IOException(failedRows.get() + " rows could not be written to Bigtable (the job fails"
            + " over and replays them from the last checkpoint)", t);
      }
    }

    @Override
    public void close() throws Exception {
      try {
        // No flush: a clean end flushed already; after a failure, what is pending is replayed.
        pendingProfiles.clear();
        events.cancelOutstanding();
        profiles.cancelOutstanding();
        events.close();
        profiles.close();
      } catch (Exception e) {
        LOG.debug("closing the batchers", e);
      } finally {
        client.close();
      }
    }
  }
}
