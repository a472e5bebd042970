package io.segstream.flink;

import com.google.api.core.ApiFuture;
import com.google.api.core.ApiFutureCallback;
import com.google.api.core.ApiFutures;
import com.google.api.gax.batching.BatchingSettings;
import com.google.api.gax.batching.Batcher;
import com.google.api.gax.batching.FlowControlSettings;
import com.google.api.gax.batching.FlowController.LimitExceededBehavior;
import com.google.cloud.bigtable.data.v2.BigtableDataClient;
import com.google.cloud.bigtable.data.v2.BigtableDataSettings;
import com.google.cloud.bigtable.data.v2.models.RowMutationEntry;
import com.google.cloud.bigtable.data.v2.stub.BigtableBatchingCallSettings;
import com.google.cloud.bigtable.data.v2.stub.metrics.NoopMetricsProvider;
import com.google.common.util.concurrent.MoreExecutors;
import java.io.IOException;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes {@link BigtableRows} to the events and profiles tables (docs/bigtable.md, "Delivery"):
 * the JVM counterpart of jobs/bigtable_sink.py, on Google's Java client and its bulk-mutation
 * batcher.
 *
 * <p>Loss-free across a crash: {@link SinkWriter#flush} runs before every checkpoint barrier is
 * passed on, and it returns only when every row written so far is acknowledged; a row that failed
 * fails the flush, hence the checkpoint, hence the job (which replays from the last completed
 * checkpoint). Rows have deterministic keys and cell timestamps, so replayed writes are no-ops:
 * at-least-once delivery gives exactly the same table.
 *
 * <p>Transient errors are retried by the client with exponential backoff (capped at
 * {@value #MAX_BACKOFF_S} s) for up to {@value #GIVE_UP_AFTER_S} s, as the Python writer does;
 * permanent ones (no such table, bad request) fail at once. Flow control: the batchers block
 * {@code write} once {@value #MAX_OUTSTANDING_ROWS} rows are unacknowledged, which is the
 * backpressure Flink sees.
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
  static final long MAX_BACKOFF_S = 2;
  static final long GIVE_UP_AFTER_S = 300;

  private final String project;
  private final String instance;
  private final String eventsTable;
  private final String profilesTable;
  private final String emulatorHost;

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

  @Override
  public SinkWriter<BigtableRows> createWriter(WriterInitContext context) throws IOException {
    return new Writer(BigtableDataClient.create(settings()), eventsTable, profilesTable);
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
    bulk.setRetrySettings(bulk.getRetrySettings().toBuilder()
        .setMaxRetryDelayDuration(Duration.ofSeconds(MAX_BACKOFF_S))
        .setTotalTimeoutDuration(Duration.ofSeconds(GIVE_UP_AFTER_S))
        .build());
    return b.build();
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

    Writer(BigtableDataClient client, String eventsTable, String profilesTable) {
      this.client = client;
      this.events = client.newBulkMutationBatcher(eventsTable);
      this.profiles = client.newBulkMutationBatcher(profilesTable);
    }

    @Override
    public void write(BigtableRows rows, Context context) throws IOException {
      check();  // fail fast rather than at the next checkpoint
      add(events, rows.eventEntry());
      add(profiles, rows.profileEntry());
    }

    private void add(Batcher<RowMutationEntry, Void> batcher, RowMutationEntry entry) {
      ApiFuture<Void> done = batcher.add(entry);  // blocks while the flow control is full
      ApiFutures.addCallback(done, onResult, MoreExecutors.directExecutor());
    }

    /** Before a checkpoint barrier and at end of input: every row so far acknowledged, or throw. */
    @Override
    public void flush(boolean endOfInput) throws IOException, InterruptedException {
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
