package io.segstream.flink;

import com.google.cloud.bigtable.data.v2.BigtableDataClient;
import com.google.cloud.bigtable.data.v2.BigtableDataSettings;
import com.google.cloud.bigtable.data.v2.models.Filters;
import com.google.cloud.bigtable.data.v2.models.Query;
import com.google.cloud.bigtable.data.v2.models.Row;
import com.google.cloud.bigtable.data.v2.models.RowCell;
import com.google.cloud.bigtable.data.v2.models.TableId;
import com.google.cloud.bigtable.data.v2.stub.metrics.NoopMetricsProvider;
import com.google.protobuf.ByteString;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * A user's history rows from the Bigtable {@code events} table (the rows {@link BigtableRows}
 * writes): one prefix scan of {@code {hash prefix}_{tenant}_{user_id}_}, which no other user's
 * rows share (escaped fields hold no {@code _}). The Java twin of batch/history.py's reads.
 */
public final class BackfillHistory implements AutoCloseable {
  private final BigtableDataClient client;
  private final String eventsTable;
  private final int width;

  /** @param emulatorHost host:port of the emulator; empty for Cloud Bigtable (application default credentials) */
  public BackfillHistory(String project, String instance, String eventsTable, int hashPrefixHex, String emulatorHost)
      throws IOException {
    BigtableDataSettings.Builder b = emulatorHost.isEmpty()
        ? BigtableDataSettings.newBuilder()
        : BigtableDataSettings.newBuilderForEmulator(emulatorHost.substring(0, emulatorHost.lastIndexOf(':')),
            Integer.parseInt(emulatorHost.substring(emulatorHost.lastIndexOf(':') + 1)));
    b.setProjectId(project).setInstanceId(instance);
    b.setMetricsProvider(NoopMetricsProvider.INSTANCE).disableInternalMetrics();
    this.client = BigtableDataClient.create(b.build());
    this.eventsTable = eventsTable;
    this.width = hashPrefixHex;
  }

  /** The user's events rows (the newest cell of each column), in key order (newest event first). */
  public List<BackfillReplay.Row> rows(String tenant, String userId) throws BigtableRows.InvalidRow {
    byte[] profile = BigtableRows.profileKey(tenant, userId, width);
    ByteString prefix = ByteString.copyFrom(profile).concat(ByteString.copyFromUtf8("_"));
    Query query = Query.create(TableId.of(eventsTable)).prefix(prefix)
        .filter(Filters.FILTERS.limit().cellsPerColumn(1));
    List<BackfillReplay.Row> rows = new ArrayList<>();
    for (Row row : client.readRows(query)) {
      ByteString payload = null;
      Long seq = null;
      for (RowCell cell : row.getCells()) {
        if (cell.getQualifier().equals(BigtableRows.PAYLOAD)) {
          payload = cell.getValue();
        } else if (cell.getQualifier().equals(BigtableRows.SEQ)) {
          seq = Long.parseLong(cell.getValue().toString(StandardCharsets.UTF_8));
        }
      }
      if (payload != null) rows.add(new BackfillReplay.Row(seq, payload.toByteArray()));
    }
    return rows;
  }

  @Override
  public void close() {
    client.close();
  }
}
