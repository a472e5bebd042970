package io.segstream.flink;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.segstream.engine.Catalogue;
import io.segstream.engine.Evaluator;
import io.segstream.engine.Events;
import io.segstream.engine.InvalidEvent;
import io.segstream.engine.NoRules;
import io.segstream.engine.UserState;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * One user's backfill (docs/batch.md, "Backfill when definitions change"): the live state blob of
 * a savepoint and the user's history rows (Bigtable {@code events}) give the state the user would
 * have if the new catalogue had always been live.
 *
 * <ul>
 *   <li>The rows with {@code seq <=} the live state's seq (exactly the events the savepoint holds:
 *       the Kafka offsets in it resume after them), one per seq (at-least-once rewrites are
 *       copies), in seq order (the live order), are replayed through the JVM engine under the new
 *       catalogue, without rules: stats do not depend on rules.
 *   <li>Each stat of the new catalogue whose fingerprint the live state holds keeps its live value
 *       (exact, even for a user whose history is past retention); the others (added, or window or
 *       gap changed: a new fingerprint) take the replayed value.
 *   <li>Everything else is the live state's: seq, max_ts, the segments last announced, the
 *       remembered events (retry receipts). The rules fingerprint is cleared, so the next event
 *       re-runs every rule on the backfilled stats and announces entries and exits against the
 *       segments last announced (as after any catalogue migration).
 * </ul>
 *
 * <p>Pure: no Flink, no Bigtable (BackfillReplayTest).
 */
public final class BackfillReplay {
  /** What happened to one user; the names are those of the progress and summary lines. */
  public enum Outcome {
    /** Every seq 1..seq was in the history: the new stats are exact over the whole history. */
    REBUILT,
    /** The history does not start at seq 1 (its head is past bigtable.retention_days) or has holes:
     * the new stats reflect the retained rows only. */
    PARTIAL,
    /** The state already has the new catalogue's stats: nothing to do. */
    UNCHANGED,
    /** An expired user (tombstone): the next event starts every stat afresh anyway. */
    EXPIRED,
    /** No history row at or below the state's seq: the state is kept, the new stats start empty
     * at the next event (the engine's migration). */
    NO_HISTORY,
  }

  /** One events row: the evaluation's seq (null: written before rows carried it) and the event JSON. */
  public record Row(Long seq, byte[] payload) {}

  /** @param state the state to write (the live one unless rebuilt)
   *  @param timer an expiry timer the state needs under the new catalogue, or null
   *  @param replayed rows replayed */
  public record Result(byte[] state, Long timer, Outcome outcome, int replayed) {}

  /** The new catalogue without de-duplication: every history row is an event the live engine
   * counted (a retry has no row), so none may be taken for a retry here. */
  private final Evaluator evaluator;
  private final int[] fps;

  /** @param catalogueJson the new catalogue ({@link Catalogue#parseJson}) */
  public BackfillReplay(String catalogueJson) {
    ObjectNode root;
    try {
      root = (ObjectNode) new ObjectMapper().readTree(catalogueJson);
    } catch (JsonProcessingException | ClassCastException e) {
      throw new IllegalArgumentException("catalogue: not a JSON object: " + e.getMessage(), e);
    }
    Catalogue catalogue = Catalogue.parse(root);  // validates, with the catalogue's own messages
    root.remove(List.of("dedup_events", "dedup_horizon"));
    // One evaluator for every user: it keeps nothing of a user between calls.
    this.evaluator = new Evaluator(Catalogue.parse(root), new NoRules());
    this.fps = catalogue.stats().stream().mapToInt(Catalogue.Stat::fingerprint).toArray();
  }

  /** @throws InvalidEvent if a history row's payload is not an event (rows are written by the job:
   *      a corrupted table) */
  public Result rebuild(byte[] liveBlob, List<Row> history) throws InvalidEvent {
    UserState live = UserState.decode(liveBlob);
    if (live.expired) return new Result(liveBlob, null, Outcome.EXPIRED, 0);
    if (Arrays.equals(live.statFps, fps)) return new Result(liveBlob, null, Outcome.UNCHANGED, 0);
    List<Row> rows = new ArrayList<>();
    boolean unordered = false;
    for (Row r : history) {
      if (r.seq() == null) unordered = true;
      else if (r.seq() <= live.seq) rows.add(r);
    }
    rows.sort(Comparator.comparingLong(Row::seq));
    List<Row> once = new ArrayList<>(rows.size());
    for (Row r : rows) {
      if (once.isEmpty() || !once.get(once.size() - 1).seq().equals(r.seq())) once.add(r);
    }
    if (once.isEmpty()) return new Result(liveBlob, null, Outcome.NO_HISTORY, 0);
    byte[] blob = null;
    Long timer = null;
    for (Row r : once) {
      Evaluator.Processed p = evaluator.process(blob, Events.parse(r.payload()));
      blob = p.state();
      if (p.timer() != null) timer = p.timer();
    }
    UserState replayed = UserState.decode(blob);
    Map<Integer, Object[]> kept = new HashMap<>();
    for (int i = 0; i < live.statFps.length; i++) kept.put(live.statFps[i], live.stats.get(i));
    List<Object[]> stats = new ArrayList<>(fps.length);
    for (int i = 0; i < fps.length; i++) {
      Object[] value = kept.get(fps[i]);
      stats.add(value != null ? value : replayed.stats.get(i));
    }
    UserState out = new UserState(live.seq, live.maxTs, fps.clone(), stats, live.segments, live.segmentMask,
        live.errorMask, 0L, false);
    out.recent = live.recent;
    boolean complete = !unordered && once.size() == live.seq && once.get(0).seq() == 1;
    return new Result(out.encode(), timer, complete ? Outcome.REBUILT : Outcome.PARTIAL, once.size());
  }
}
