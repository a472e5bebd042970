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
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A user's history rows from the Bigtable {@code events} table (the rows {@link BigtableRows}
 * writes): one prefix scan of {@code {hash prefix}_{tenant}_{user_id}_}, which no other user's
 * rows share (escaped fields hold no {@code _}), for many users in one read. The Java twin of
 * batch/history.py's reads.
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

  /**
   * The events rows of several users in one read (a prefix per user: one round trip for all of
   * them), newest cell of each column, grouped by user: element i holds users[i]'s rows in key order.
   *
   * @param users {tenant, user_id} pairs
   */
  public List<List<BackfillReplay.Row>> rows(List<String[]> users) throws BigtableRows.InvalidRow {
    Query query = Query.create(TableId.of(eventsTable)).filter(Filters.FILTERS.limit().cellsPerColumn(1));
    Map<ByteString, Integer> index = new HashMap<>();
    List<List<BackfillReplay.Row>> out = new ArrayList<>(users.size());
    for (String[] user : users) {
      ByteString prefix = ByteString.copyFrom(BigtableRows.profileKey(user[0], user[1], width)).concat(SEP);
      index.put(prefix, out.size());
      out.add(new ArrayList<>());
      query.prefix(prefix);
    }
    for (Row row : client.readRows(query)) {
      Integer i = index.get(userPrefix(row.getKey()));
      if (i == null) continue;  // not a row of this table's shape
      ByteString payload = null;
      Long seq = null;
      for (RowCell cell : row.getCells()) {
        if (cell.getQualifier().equals(BigtableRows.PAYLOAD)) {
          payload = cell.getValue();
        } else if (cell.getQualifier().equals(BigtableRows.SEQ)) {
          seq = Long.parseLong(cell.getValue().toString(StandardCharsets.UTF_8));
        }
      }
      if (payload != null) out.get(i).add(new BackfillReplay.Row(seq, payload.toByteArray()));
    }
    return out;
  }

  private static final ByteString SEP = ByteString.copyFromUtf8("_");

  /** {prefix}_{tenant}_{user_id}_ of an events row key (escaped fields hold no _), or null. */
  static ByteString userPrefix(ByteString key) {
    int seen = 0;
    for (int i = 0; i < key.size(); i++) {
      if (key.byteAt(i) == '_' && ++seen == 3) return key.substring(0, i + 1);
    }
    return null;
  }

  @Override
  public void close() {
    client.close();
  }
}
