package io.segstream.engine;

import io.segstream.engine.rules.Rules;
import io.segstream.engine.rules.TenantRules;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The one call per event: (user state bytes, event) -> (new state bytes, evaluation), a port of
 * operators/evaluator.py. Rules are re-run only when something they read may have changed (a stat,
 * or {@code event}); the others keep their previous result. Semantics: docs/semantics.md.
 */
public final class Evaluator {
  /** Expiry timers are rounded up to 1/64 of expire_after. */
  public static final int TIMER_SLOTS = 64;

  /** @param state the new state; for a duplicate the state given, unchanged
   *  @param evaluation the evaluation (with the caller's extra fields); null for a duplicate
   *  @param expiry the previous life's expiry record if no timer reported it yet, else null
   *  @param timer when to check the user for expiry (event time, ms) if that moved, else null
   *  @param json the evaluation rendered ({@link Json#render}); for a duplicate, the first one's receipt
   *  @param duplicate the event_id was seen recently (catalogue dedup_events): nothing changed
   *      (docs/semantics.md, "Retries") */
  public record Processed(byte[] state, Map<String, Object> evaluation, Map<String, Object> expiry, Long timer,
      String json, boolean duplicate) {}

  /** An expiry timer that found the user due: the tombstone state and the expiry record. */
  public record Expired(byte[] state, Map<String, Object> expiry) {}

  private final Rules rules;
  private final Long expireAfter;
  private final Integer dedupEvents;
  private final Long dedupHorizon;
  private final long timerResolution;
  private final List<String> names;
  private final Stats.Aggregation[] aggs;
  private final int[] fps;
  private final int[] always;
  private final Map<String, int[]> byEvent = new HashMap<>();
  /** Windowed stats grouped by resolution (in first-appearance order). */
  private final List<Long> windowResolutions = new ArrayList<>();
  private final List<int[]> windowMembers = new ArrayList<>();

  public Evaluator(Catalogue catalogue, Rules rules) {
    this.rules = rules;
    this.expireAfter = catalogue.expireAfter();
    this.dedupEvents = catalogue.dedupEvents();
    this.dedupHorizon = catalogue.dedupHorizon();
    this.timerResolution = Math.max(1, (expireAfter == null ? 0 : expireAfter) / TIMER_SLOTS);
    this.names = catalogue.names();
    List<Catalogue.Stat> stats = catalogue.stats();
    this.aggs = new Stats.Aggregation[stats.size()];
    this.fps = new int[stats.size()];
    List<Integer> alwaysList = new ArrayList<>();
    Map<String, List<Integer>> byEventList = new LinkedHashMap<>();
    Map<Long, List<Integer>> windows = new LinkedHashMap<>();
    for (int i = 0; i < stats.size(); i++) {
      Catalogue.Stat spec = stats.get(i);
      aggs[i] = Stats.of(spec);
      fps[i] = spec.fingerprint();
      if (spec.event() == null) alwaysList.add(i);
      else byEventList.computeIfAbsent(spec.event(), k -> new ArrayList<>()).add(i);
      if (aggs[i] instanceof Stats.Windowed w) windows.computeIfAbsent(w.resolution(), k -> new ArrayList<>()).add(i);
    }
    this.always = alwaysList.stream().mapToInt(Integer::intValue).toArray();
    byEventList.forEach((k, v) -> byEvent.put(k, v.stream().mapToInt(Integer::intValue).toArray()));
    windows.forEach((k, v) -> {
      windowResolutions.add(k);
      windowMembers.add(v.stream().mapToInt(Integer::intValue).toArray());
    });
  }

  public Processed process(byte[] blob, Event event) {
    return process(blob, event, Map.of());
  }

  /** @param extra fields appended to the evaluation (the job's rules_version), kept in its receipt */
  public Processed process(byte[] blob, Event event, Map<String, Object> extra) {
    long ts = event.ts();
    Map<String, Object> expiry = null;
    UserState user;
    boolean migrated;
    if (blob == null) {
      List<Object[]> fresh = new ArrayList<>(aggs.length);
      for (Stats.Aggregation agg : aggs) fresh.add(agg.initial());
      user = new UserState(0, null, fps.clone(), fresh, new ArrayList<>(), new BitSet(), new BitSet(), 0, false);
      migrated = false;
    } else {
      user = UserState.decode(blob);
      if (dedupEvents == null) {
        user.recent.clear();  // de-duplication turned off: forget what an earlier run remembered
      } else if (!user.recent.isEmpty()) {
        // A retry: before anything else, so that it changes nothing (not even an expiry).
        // The bounds are applied first, so that lowered ones hold at once.
        prune(user);
        for (UserState.Recent r : user.recent) {
          if (r.eventId().equals(event.eventId())) {
            return new Processed(blob, null, null, null, new String(r.receipt(), StandardCharsets.UTF_8), true);
          }
        }
      }
      if (expireAfter != null
          && (user.expired || (user.maxTs != null && Stats.greaterThanSum(ts, user.maxTs, expireAfter)))) {
        if (!user.expired) expiry = expiryRecord(user, event.tenant(), event.userId());
        forget(user, false);
      }
      migrated = !java.util.Arrays.equals(user.statFps, fps);
      if (migrated) migrate(user);
    }
    Long deadlineBefore = timer(user.maxTs);
    List<Object[]> states = user.stats;
    BitSet changedStats = new BitSet();
    Long previous = user.maxTs;
    long maxTs;
    if (previous == null || ts > previous) {
      if (previous != null) {
        for (int g = 0; g < windowResolutions.size(); g++) {
          long resolution = windowResolutions.get(g);
          if (Math.floorDiv(ts, resolution) != Math.floorDiv(previous, resolution)) {
            for (int i : windowMembers.get(g)) {
              if (((Stats.Windowed) aggs[i]).advance(states.get(i), ts)) changedStats.set(i);
            }
          }
        }
      }
      user.maxTs = ts;
      maxTs = ts;
    } else {
      maxTs = previous;
    }
    Map<String, Object> values = event.values();
    for (int i : always) {
      if (aggs[i].update(states.get(i), values, ts, maxTs)) changedStats.set(i);
    }
    int[] named = byEvent.get(event.name());
    if (named != null) {
      for (int i : named) {
        if (aggs[i].update(states.get(i), values, ts, maxTs)) changedStats.set(i);
      }
    }
    user.seq += 1;
    Map<String, Object> stats = new LinkedHashMap<>();
    for (int i = 0; i < names.size(); i++) stats.put(names.get(i), states.get(i)[0]);
    List<List<String>> out = evaluateRules(user, event, stats, changedStats, migrated);
    Long deadline = timer(user.maxTs);
    Map<String, Object> evaluation = new LinkedHashMap<>();
    evaluation.put("event_id", event.eventId());
    evaluation.put("tenant", event.tenant());
    evaluation.put("user_id", event.userId());
    evaluation.put("ts", ts);
    evaluation.put("seq", user.seq);
    evaluation.put("stats", stats);
    evaluation.put("segments", out.get(0));
    evaluation.put("entered", out.get(1));
    evaluation.put("exited", out.get(2));
    evaluation.putAll(extra);
    String json = Json.render(evaluation);
    if (dedupEvents != null) remember(user, event.eventId(), json);
    return new Processed(user.encode(), evaluation, expiry,
        deadline != null && !deadline.equals(deadlineBefore) ? deadline : null, json, false);
  }

  /** Keep this event's receipt; forget the oldest beyond dedup_events or the horizon. */
  private void remember(UserState user, String eventId, String json) {
    user.recent.add(new UserState.Recent(eventId, user.maxTs, json.getBytes(StandardCharsets.UTF_8)));
    prune(user);
  }

  private void prune(UserState user) {
    List<UserState.Recent> recent = user.recent;
    long maxTs = user.maxTs;
    int drop = Math.max(0, recent.size() - dedupEvents);
    if (dedupHorizon != null) {
      // Stamps never decrease (each is the greatest ts so far), so the stale ones come first.
      // stamp <= maxTs, so maxTs - stamp is exact as an unsigned 64-bit number.
      while (drop < recent.size() && Long.compareUnsigned(maxTs - recent.get(drop).stamp(), dedupHorizon) > 0) drop++;
    }
    if (drop > 0) recent.subList(0, drop).clear();
  }

  /** An expiry timer at event time {@code now}: the tombstone and the record if the user is due, else null. */
  public Expired expire(byte[] blob, long now, String tenant, String userId) {
    if (expireAfter == null) return null;
    UserState user = UserState.decode(blob);
    if (user.expired || user.maxTs == null
        || BigInteger.valueOf(user.maxTs).add(BigInteger.valueOf(expireAfter)).compareTo(BigInteger.valueOf(now)) > 0) {
      return null;  // not yet due: max_ts + expire_after > now (a newer event moved the deadline)
    }
    Map<String, Object> expiry = expiryRecord(user, tenant, userId);
    forget(user, true);
    return new Expired(user.encode(), expiry);
  }

  /** The expiry timer the state {@code blob} waits for, or null (none, or expired already): an
   * erasure deletes it with the state. */
  public Long pendingTimer(byte[] blob) {
    UserState user = UserState.decode(blob);
    return user.expired ? null : timer(user.maxTs);
  }

  /** ceil((max_ts + expire_after) / resolution) * resolution; Long.MAX_VALUE if that leaves 64 bits. */
  Long timer(Long maxTs) {
    if (expireAfter == null || maxTs == null) return null;
    // In long arithmetic while nothing overflows (every event calls this twice); the BigInteger
    // form below gives the same results and handles the rest.
    long r = timerResolution;
    long sum = maxTs + expireAfter;
    if (((maxTs ^ sum) & (expireAfter ^ sum)) >= 0 && sum != Long.MIN_VALUE) {
      long q = -Math.floorDiv(-sum, r);  // ceil(sum / r)
      try {
        return Math.multiplyExact(q, r);
      } catch (ArithmeticException e) {
        return Long.MAX_VALUE;
      }
    }
    return bigTimer(maxTs);
  }

  Long bigTimer(long maxTs) {
    BigInteger due = BigInteger.valueOf(maxTs).add(BigInteger.valueOf(expireAfter));
    BigInteger r = BigInteger.valueOf(timerResolution);
    BigInteger[] qr = due.divideAndRemainder(r);
    BigInteger q = qr[0];
    if (qr[1].signum() > 0) q = q.add(BigInteger.ONE);
    BigInteger t = q.multiply(r);
    return t.bitLength() > 63 ? Long.MAX_VALUE : t.longValue();
  }

  private Map<String, Object> expiryRecord(UserState user, String tenant, String userId) {
    Map<String, Object> r = new LinkedHashMap<>();
    r.put("tenant", tenant);
    r.put("user_id", userId);
    r.put("seq", user.seq);
    r.put("last_ts", user.maxTs);
    BigInteger at = BigInteger.valueOf(user.maxTs).add(BigInteger.valueOf(expireAfter));
    r.put("expired_at", at.bitLength() > 63 ? (Object) at : (Object) at.longValue());
    r.put("exited", user.segments);
    return r;
  }

  /** Re-key state written under another catalogue: keep unchanged stats, start the rest empty. */
  private void migrate(UserState user) {
    Map<Integer, Object[]> stored = new HashMap<>();
    for (int i = 0; i < user.statFps.length; i++) stored.put(user.statFps[i], user.stats.get(i));
    List<Object[]> stats = new ArrayList<>(aggs.length);
    for (int i = 0; i < aggs.length; i++) {
      Object[] s = stored.get(fps[i]);
      stats.add(s != null ? s : aggs[i].initial());
    }
    user.stats = stats;
    user.statFps = fps.clone();
  }

  /** Keep only seq; the next event starts every stat afresh (empty fingerprints: it migrates). */
  private static void forget(UserState user, boolean expired) {
    user.maxTs = null;
    user.statFps = new int[0];
    user.stats = new ArrayList<>();
    user.segments = new ArrayList<>();
    user.segmentMask = new BitSet();
    user.errorMask = new BitSet();
    user.rulesFp = 0;
    user.expired = expired;
    user.recent = new ArrayList<>();  // an expired user remembers no event_ids: a retry is a new event
  }

  /** Update the user's segments and masks; return [segments, entered, exited]. */
  private List<List<String>> evaluateRules(UserState user, Event event, Map<String, Object> stats, BitSet changed,
      boolean migrated) {
    TenantRules tr = rules.forTenant(event.tenant());
    BitSet guardedHere = tr.guardedOn(event.name());
    BitSet knownFalse = (BitSet) tr.guardedMask().clone();
    knownFalse.andNot(guardedHere);
    boolean reuse = !migrated && user.rulesFp == tr.fingerprint();
    BitSet run;
    BitSet keep;
    BitSet previous;
    BitSet previousErrors;
    if (reuse) {
      run = (BitSet) tr.eventMask().clone();
      run.or(guardedHere);
      for (int i = changed.nextSetBit(0); i >= 0; i = changed.nextSetBit(i + 1)) run.or(tr.statMask(i));
      run.andNot(knownFalse);
      // keep = ~(run | known_false): every other rule of the tenant keeps its previous result
      keep = (BitSet) tr.allMask().clone();
      keep.andNot(run);
      keep.andNot(knownFalse);
      previous = user.segmentMask;
      previousErrors = user.errorMask;
    } else {
      run = (BitSet) tr.allMask().clone();
      run.andNot(knownFalse);
      keep = new BitSet();
      previous = new BitSet();
      previousErrors = new BitSet();
    }
    BitSet matched;
    BitSet errors;
    if (run.isEmpty()) {
      matched = new BitSet();
      errors = new BitSet();
    } else {
      TenantRules.Result r = tr.evaluate(run, stats, event);
      matched = (BitSet) r.matched().clone();
      errors = (BitSet) r.errors().clone();
    }
    BitSet kept = (BitSet) previous.clone();
    kept.and(keep);
    matched.or(kept);
    BitSet keptErrors = (BitSet) previousErrors.clone();
    keptErrors.and(keep);
    errors.or(keptErrors);
    rules.countErrors(errors.cardinality());
    user.segmentMask = matched;
    user.errorMask = errors;
    user.rulesFp = tr.fingerprint();
    if (reuse) {
      if (matched.equals(previous)) return List.of(user.segments, List.of(), List.of());
      user.segments = tr.idsOf(matched);
      BitSet entered = (BitSet) matched.clone();
      entered.andNot(previous);
      BitSet exited = (BitSet) previous.clone();
      exited.andNot(matched);
      return List.of(user.segments, tr.idsOf(entered), tr.idsOf(exited));
    }
    List<String> before = user.segments;
    Set<String> beforeSet = new HashSet<>(before);
    List<String> segments = tr.idsOf(matched);
    user.segments = segments;
    Set<String> now = new HashSet<>(segments);
    List<String> entered = new ArrayList<>();
    for (String id : segments) if (!beforeSet.contains(id)) entered.add(id);
    List<String> exited = new ArrayList<>();
    for (String id : before) if (!now.contains(id)) exited.add(id);
    return List.of(segments, entered, exited);
  }
}
