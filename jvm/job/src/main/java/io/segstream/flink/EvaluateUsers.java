package io.segstream.flink;

import io.segstream.engine.Catalogue;
import io.segstream.engine.Erasure;
import io.segstream.engine.Evaluator;
import io.segstream.engine.Event;
import io.segstream.engine.Events;
import io.segstream.engine.Json;
import io.segstream.engine.rules.RuleError;
import io.segstream.engine.rules.RuleLimits;
import io.segstream.engine.rules.RuleSet;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.BroadcastState;
import org.apache.flink.api.common.state.ReadOnlyBroadcastState;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.co.KeyedBroadcastProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Per user: update the engine state, evaluate the rules, emit the evaluation (jobs/functions.py
 * EvaluateUser, on the JVM engine).
 *
 * <ul>
 *   <li>Keyed input: {@link ParsedEvent} keyed by {@link UserKey.Selector} (key type String).
 *   <li>Broadcast input: {@link Outputs#RECORD_TYPE} rows of the rules topic (record_key = rule id
 *       bytes, record_value = rule JSON bytes or null/empty for a deletion, partition, offset),
 *       broadcast with {@link Outputs#RULE_CHANGES}.
 *   <li>Output: {@link Outputs#EVALUATION_TYPE} rows (user_id, evaluation JSON with
 *       {@code rules_version}): the same JSON as the Python job.
 *   <li>Side outputs: {@link Outputs#EXPIRATIONS} (user_id, expiry JSON); {@link Outputs#DEAD_LETTERS}
 *       (record key, dead letter) for refused rule changes (reported by subtask 0 only, as every
 *       subtask sees every change) and records the engine failed on; {@link Outputs#MIRROR}
 *       (event JSON, evaluation JSON) when constructed with {@code mirror}; {@link Outputs#REPLIES}
 *       (reply topic, event_id, evaluation JSON) for events that name a reply topic
 *       ({@link ParsedEvent#replyTo}, set by a serving front): the same JSON as on the main output.
 * </ul>
 *
 * <p>State: keyed {@code ValueState<byte[]>} "user" (the engine's state blob); broadcast
 * {@link Outputs#RULE_CHANGES}; event-time timers for expiry. {@code rules_version} counts the rule
 * records seen, valid or not, as in the Python job. Every subtask keeps the RuleSet of the initial
 * rules with the changes of the broadcast state applied; when the version in broadcast state is not
 * the one its RuleSet was built for (after a restore), the first element rebuilds it.
 *
 * <p>Rule log ({@link Outputs#RULE_LOG}, subtask 0 only, as every subtask sees the same records in
 * the same order: the rules topic has one partition): one record per rule record, valid or not,
 * {@code {"version": v, "rule_id", "value": rule JSON or null, "accepted": bool, "reason"}}, v =
 * the rules_version of the evaluations after it; and, at the first element after each start,
 * {@code {"version": v, "initial": "<initial rules JSON array>"}}: the initial rules live from
 * version v on. With them a replay (batch/) rebuilds the rule set of any rules_version, which the
 * compacted rules topic cannot: it keeps only each rule's latest record.
 *
 * <p>An exception from the engine on one record does not fail the job: the record is
 * dead-lettered with reason {@code internal: <exception>} and counted in the metric
 * {@code internalErrors}. Metric {@code ruleErrors}: failed rule evaluations (a gauge);
 * {@code tenantRuleViews}: the per-tenant rule views cached (a gauge, at most max_cached_tenants + 1).
 *
 * <p>A retried event (an event_id the user remembers, catalogue {@code dedup_events};
 * docs/semantics.md, "Retries") changes no state and emits nothing but its answer: the first
 * evaluation's JSON, kept in the user's state, on {@link Outputs#REPLIES} when it names a reply
 * topic. Not on the main output (the evaluation is there once already), not on the mirror (no
 * second Bigtable row), not a dead letter (a retry is not bad input). Metric {@code duplicates}.
 */
public class EvaluateUsers extends KeyedBroadcastProcessFunction<String, ParsedEvent, Row, Row> {
  private static final long serialVersionUID = 1L;

  /** The watermark at the end of a bounded input: it fires every timer, but no time has passed. */
  static final long END_OF_INPUT = Long.MAX_VALUE;
  public static final String NO_KEY = "rule record has no key (the rule id)";
  /** The key of the version entry in broadcast state: not a rule id (the Python job does not check). */
  public static final String RESERVED_KEY = "rule id '\\x00version' is reserved";

  private final String catalogueJson;
  private final String initialRulesJson;
  private final String eventsTopic;
  private final String rulesTopic;
  private final boolean mirror;
  /** segstream's `rule_limits` section as JSON (RuleLimits.fromJson; empty: the defaults). */
  private final String ruleLimitsJson;
  /** The accepted signing keys of rule records (docs/security.md, "Rule ownership"); null: rule
   * records are not checked (the constructors without keys: tests of other things). */
  private final ArrayList<String> signingKeys;
  /** Where erasures are acknowledged (through {@link Outputs#REPLIES}), or null. */
  private String erasuresTopic;

  private transient Catalogue catalogue;
  private transient RuleSet rules;
  /** The rules version {@link #rules} holds (the count of rule records applied to it). */
  private transient long rulesVersion;
  private transient boolean rulesChecked;
  private transient Evaluator evaluator;
  private transient ValueState<byte[]> userState;
  private transient Counter internalErrors;
  private transient Counter duplicates;
  private transient int subtask;
  /** Whether this subtask has logged the initial rules since it started (subtask 0 only). */
  private transient boolean initialLogged;

  /**
   * @param catalogueJson the stat catalogue as JSON (conf/stats.yaml's structure, {@link Catalogue#parseJson})
   * @param initialRulesJson the initial rules, a JSON array of rule objects (conf/rules.json)
   * @param eventsTopic named in dead letters of events the engine failed on
   * @param rulesTopic named in dead letters of refused rule changes
   * @param mirror also emit (event, evaluation) on {@link Outputs#MIRROR}
   * @throws IllegalArgumentException if the catalogue or the rules are invalid (checked here, on the client)
   */
  public EvaluateUsers(String catalogueJson, String initialRulesJson, String eventsTopic, String rulesTopic,
      boolean mirror) {
    this(catalogueJson, initialRulesJson, eventsTopic, rulesTopic, mirror, "");
  }

  /** @param ruleLimitsJson the limits every rule is judged by, as JSON ({@link RuleLimits#fromJson}) */
  public EvaluateUsers(String catalogueJson, String initialRulesJson, String eventsTopic, String rulesTopic,
      boolean mirror, String ruleLimitsJson) {
    this(catalogueJson, initialRulesJson, eventsTopic, rulesTopic, mirror, ruleLimitsJson, null);
  }

  /** @param signingKeys the accepted signing keys: a rule record must be signed with one
   *     ({@link RuleSet#applySignedChange}, its fifth column the segstream-signature header) */
  public EvaluateUsers(String catalogueJson, String initialRulesJson, String eventsTopic, String rulesTopic,
      boolean mirror, String ruleLimitsJson, List<String> signingKeys) {
    this.signingKeys = signingKeys == null ? null : new ArrayList<>(signingKeys);
    this.ruleLimitsJson = ruleLimitsJson;
    this.catalogueJson = catalogueJson;
    this.initialRulesJson = initialRulesJson;
    this.eventsTopic = eventsTopic;
    this.rulesTopic = rulesTopic;
    this.mirror = mirror;
    loadRules(Catalogue.parseJson(catalogueJson));
  }

  private RuleSet loadRules(Catalogue catalogue) {
    try {
      return RuleSet.load("initial rules", initialRulesJson.getBytes(StandardCharsets.UTF_8), catalogue.names(),
          RuleLimits.fromJson(ruleLimitsJson));
    } catch (RuleError e) {
      throw new IllegalArgumentException(e.getMessage(), e);
    }
  }

  @Override
  public void open(OpenContext openContext) {
    catalogue = Catalogue.parseJson(catalogueJson);
    setRules(loadRules(catalogue), 0);
    userState = getRuntimeContext().getState(new ValueStateDescriptor<>("user", PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
    internalErrors = getRuntimeContext().getMetricGroup().counter("internalErrors");
    duplicates = getRuntimeContext().getMetricGroup().counter("duplicates");
    getRuntimeContext().getMetricGroup().gauge("ruleErrors", () -> rules.errorCount());
    // Bounded by rule_limits.max_cached_tenants + 1 (the LRU of per-tenant views): the hostile-input
    // test reads it to show that hostile tenants do not grow the heap (docs/security.md).
    getRuntimeContext().getMetricGroup().gauge("tenantRuleViews", () -> rules.cachedViews());
    subtask = getRuntimeContext().getTaskInfo().getIndexOfThisSubtask();
  }

  private void setRules(RuleSet rules, long version) {
    this.rules = rules;
    this.rulesVersion = version;
    this.evaluator = new Evaluator(catalogue, rules);
  }

  /** Bring the RuleSet up to the broadcast state (after a restore: initial rules + kept changes). */
  private void syncRules(ReadOnlyBroadcastState<String, String> state) throws Exception {
    String v = state.get(Outputs.VERSION_KEY);
    long version = v == null ? 0 : Long.parseLong(v);
    if (version == rulesVersion) return;
    RuleSet fresh = loadRules(catalogue);
    for (Map.Entry<String, String> change : state.immutableEntries()) {
      if (change.getKey().equals(Outputs.VERSION_KEY)) continue;
      String value = change.getValue();
      String reason = fresh.applyChange(change.getKey(), value.isEmpty() ? null : value);
      if (reason != null) {
        // Accepted when it arrived; refused now only if the catalogue changed since (a stat gone).
        internalErrors.inc();
      }
    }
    setRules(fresh, version);
  }

  @Override
  public void processElement(ParsedEvent in, ReadOnlyContext ctx, Collector<Row> out) throws Exception {
    syncRules(ctx.getBroadcastState(Outputs.RULE_CHANGES));
    if (!initialLogged) {
      Row initial = initialRulesEntry();
      if (initial != null) ctx.output(Outputs.RULE_LOG, initial);
    }
    if (in.erasureId != null) {
      erase(in, ctx);
      return;
    }
    Row evaluationRow = null;
    Row expiryRow = null;
    Tuple2<String, String> mirrored = null;
    Row reply = null;
    byte[] state = null;
    Long timer = null;
    boolean duplicate;
    try {
      Event event = Events.parse(in.value);  // accepted upstream: the same bytes give the same event
      Evaluator.Processed p = evaluator.process(userState.value(), event, Map.of("rules_version", rulesVersion));
      String payload = p.json();
      duplicate = p.duplicate();
      if (in.replyTo != null) reply = Row.of(in.replyTo, event.eventId(), payload);
      if (!duplicate) {
        if (p.expiry() != null) expiryRow = Row.of(event.userId(), Json.render(p.expiry()));
        evaluationRow = Row.of(event.userId(), payload);
        if (mirror) mirrored = Tuple2.of(Json.render(eventJson(event)), payload);
        state = p.state();
        timer = p.timer();
      }
    } catch (Exception | StackOverflowError e) {
      internalErrors.inc();
      ctx.output(Outputs.DEAD_LETTERS, Row.of(DeadLetters.key(in.recordKey),
          DeadLetters.value(in.value, "internal: " + e, eventsTopic, in.partition, in.offset, in.recordKey)));
      return;
    }
    if (duplicate) {
      duplicates.inc();
      if (reply != null) ctx.output(Outputs.REPLIES, reply);
      return;
    }
    userState.update(state);
    if (expiryRow != null) ctx.output(Outputs.EXPIRATIONS, expiryRow);
    if (timer != null) ctx.timerService().registerEventTimeTimer(timer);
    out.collect(evaluationRow);
    if (mirrored != null) ctx.output(Outputs.MIRROR, mirrored);
    if (reply != null) ctx.output(Outputs.REPLIES, reply);
  }

  /**
   * An erase command (docs/security.md, "Erasure"): the user's keyed state goes (statistics, seq,
   * segments, de-duplication receipts: one blob) with its pending expiry timer; the acknowledgement
   * goes to {@link Outputs#ERASURES}, to the erasures topic and the front that asked (both on
   * {@link Outputs#REPLIES}, key = erasure_id) and, with the mirror, to Bigtable as ("", the user's key): {@link ToBigtableRows}
   * turns it into the deletion of the user's rows, after the user's earlier rows on the same subtask.
   */
  private void erase(ParsedEvent in, ReadOnlyContext ctx) throws Exception {
    String[] user = UserKey.split(in.key);
    byte[] blob = userState.value();
    if (blob != null) {
      Long timer = evaluator.pendingTimer(blob);
      if (timer != null) ctx.timerService().deleteEventTimeTimer(timer);
    }
    userState.clear();
    Erasure erasure = new Erasure(in.erasureId, user[0], user[1], in.erasureOwner);
    String ack = Json.render(erasure.acknowledgement(blob != null));
    ctx.output(Outputs.ERASURES, Row.of(in.erasureId, ack));
    // The erasures topic through the reply sink: a sink of its own would shift the generated
    // operator ids of the Kafka sink tables, and a savepoint of the release before would not restore.
    if (erasuresTopic != null) ctx.output(Outputs.REPLIES, Row.of(erasuresTopic, in.erasureId, ack));
    if (mirror) ctx.output(Outputs.MIRROR, Tuple2.of(ERASE_MARK, in.key));
    if (in.replyTo != null) ctx.output(Outputs.REPLIES, Row.of(in.replyTo, in.erasureId, ack));
  }

  /** Also acknowledge erasures on {@code topic} (the erasures topic; {@link Pipeline#build}). */
  void acknowledgeErasuresOn(String topic) {
    this.erasuresTopic = topic;
  }

  /** The event side of a mirror record that is an erasure (the other side: the user's key), not an event. */
  public static final String ERASE_MARK = "";

  /** The event as operators/events.py encode_event writes it (msgspec, the Event struct's field order). */
  static Map<String, Object> eventJson(Event event) {
    return event.toJson();
  }

  /** The rule-log entry of the initial rules, live from the version this subtask's rule set is
   * at, once after each start; null after that and on subtasks other than 0. */
  private Row initialRulesEntry() {
    if (initialLogged || subtask != 0) {
      initialLogged = true;
      return null;
    }
    initialLogged = true;
    Map<String, Object> entry = new LinkedHashMap<>();
    entry.put("version", rulesVersion);
    entry.put("initial", initialRulesJson);
    return Row.of(Long.toString(rulesVersion), Json.render(entry));
  }

  @Override
  public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
    if (ctx.timerService().currentWatermark() >= END_OF_INPUT) return;
    byte[] blob = userState.value();
    if (blob == null) return;
    String[] user = UserKey.split(ctx.getCurrentKey());
    Evaluator.Expired expired;
    String payload;
    try {
      expired = evaluator.expire(blob, timestamp, user[0], user[1]);
      if (expired == null) return;
      payload = Json.render(expired.expiry());
    } catch (Exception | StackOverflowError e) {
      internalErrors.inc();
      byte[] key = user[1].getBytes(StandardCharsets.UTF_8);
      ctx.output(Outputs.DEAD_LETTERS, Row.of(key, DeadLetters.value(null,
          "internal: expiry timer at " + timestamp + " for tenant " + user[0] + ": " + e, eventsTopic, null, null)));
      return;
    }
    userState.update(expired.state());
    ctx.output(Outputs.EXPIRATIONS, Row.of(user[1], payload));
  }

  @Override
  public void processBroadcastElement(Row row, Context ctx, Collector<Row> out) throws Exception {
    BroadcastState<String, String> state = ctx.getBroadcastState(Outputs.RULE_CHANGES);
    syncRules(state);
    Row initial = initialRulesEntry();
    if (initial != null) ctx.output(Outputs.RULE_LOG, initial);
    byte[] key = null;
    byte[] value = null;
    Integer partition = null;
    Long offset = null;
    String reason;
    String ruleId = "";
    try {
      key = (byte[]) row.getField(0);
      value = (byte[]) row.getField(1);
      partition = row.getField(2) == null ? null : ((Number) row.getField(2)).intValue();
      offset = row.getField(3) == null ? null : ((Number) row.getField(3)).longValue();
      ruleId = key == null ? "" : new String(key, StandardCharsets.UTF_8);
      if (ruleId.isEmpty()) {
        reason = NO_KEY;
      } else if (ruleId.equals(Outputs.VERSION_KEY)) {
        reason = RESERVED_KEY;
      } else {
        reason = signingKeys == null ? rules.applyChange(ruleId, value)
            : rules.applySignedChange(ruleId, value, row.getArity() >= 5 ? (byte[]) row.getField(4) : null,
                signingKeys);
      }
      if (reason != null) reason = "rule: " + reason;
    } catch (Exception | StackOverflowError e) {
      internalErrors.inc();
      reason = "internal: " + e;
    }
    rulesVersion += 1;
    state.put(Outputs.VERSION_KEY, Long.toString(rulesVersion));
    if (subtask == 0) {
      Map<String, Object> entry = new LinkedHashMap<>();
      entry.put("version", rulesVersion);
      entry.put("rule_id", ruleId);
      entry.put("value", value == null || value.length == 0 ? null : new String(value, StandardCharsets.UTF_8));
      entry.put("accepted", reason == null);
      entry.put("reason", reason);
      ctx.output(Outputs.RULE_LOG, Row.of(Long.toString(rulesVersion), Json.render(entry)));
    }
    if (reason == null) {
      state.put(ruleId, value == null ? "" : new String(value, StandardCharsets.UTF_8));
    } else if (subtask == 0) {
      ctx.output(Outputs.DEAD_LETTERS, Row.of(DeadLetters.key(key),
          DeadLetters.value(value, reason, rulesTopic, partition, offset, key)));
    }
  }
}
