package io.segstream.flink;

import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * (event JSON, evaluation JSON) of the mirror -> {@link BigtableRows} for {@link BigtableSink}.
 *
 * <p>An event whose row Bigtable cannot take goes to {@link Outputs#DEAD_LETTERS} (reason
 * {@code bigtable: ...}, original = the event JSON) and is counted in {@code bigtableInvalidRows},
 * instead of failing the job: a row key over 4096 bytes is reachable, since the event contract
 * bounds the record (64 KiB) and user_id (256 bytes) but not event_id or tenant, and a failure
 * here would be replayed on every restart. ts and seq out of a cell timestamp's range are not
 * reachable (the contract bounds ts to year 9999; seq counts one user's events) and take the same
 * path. The event's evaluation has gone to Kafka all the same: only its mirror is missing.
 */
public class ToBigtableRows extends ProcessFunction<Tuple2<String, String>, BigtableRows> {
  private static final long serialVersionUID = 1L;
  private static final Logger LOG = LoggerFactory.getLogger(ToBigtableRows.class);

  private final int hashPrefixHex;
  private final String eventsTopic;
  private transient Counter invalidRows;

  public ToBigtableRows(int hashPrefixHex, String eventsTopic) {
    BigtableRows.hashPrefix("", "", hashPrefixHex);  // fail on the client for a bad width
    this.hashPrefixHex = hashPrefixHex;
    this.eventsTopic = eventsTopic;
  }

  @Override
  public void open(OpenContext openContext) {
    invalidRows = getRuntimeContext().getMetricGroup().counter("bigtableInvalidRows");
  }

  @Override
  public void processElement(Tuple2<String, String> in, Context ctx, Collector<BigtableRows> out) {
    String reason = null;
    BigtableRows rows;
    try {
      if (EvaluateUsers.ERASE_MARK.equals(in.f0)) {  // an erasure: f1 is the user's key
        String[] user = UserKey.split(in.f1);
        rows = BigtableRows.erasure(user[0], user[1], hashPrefixHex);
      } else {
        rows = BigtableRows.of(in.f0, in.f1, hashPrefixHex);
      }
    } catch (BigtableRows.InvalidRow e) {
      rows = null;
      reason = "bigtable: " + e.getMessage();
    } catch (Exception e) {  // our own JSON: a bug, but one record must not stop the job
      rows = null;
      reason = "internal: " + e;
    }
    if (rows != null) {
      // Outside the try: the chained sink's failure (Bigtable unreachable past its give-up time) must
      // fail the task, which restarts from the checkpoint; it is not this record's fault.
      out.collect(rows);
      return;
    }
    invalidRows.inc();
    LOG.warn("not mirrored to Bigtable, dead-lettered: {}", reason);
    byte[] event = in.f0.getBytes(StandardCharsets.UTF_8);
    ctx.output(Outputs.DEAD_LETTERS, Row.of(null, DeadLetters.value(event, reason, eventsTopic, null, null)));
  }
}
