package io.segstream.flink;

import io.segstream.engine.Redaction;
import io.segstream.flink.windows.WindowInputs;
import io.segstream.flink.windows.WindowPipeline;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.DataStreamSink;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.types.Row;

/**
 * segstream's two operators wired for jobs/user_stats.py, a caller on py4j:
 * {@code Pipeline.build(eventRecords, ruleRecords, ...)} then the four streams for the sinks.
 * Inputs are {@link Outputs#RECORD_TYPE} rows (record_key, record_value, record_partition,
 * record_offset) of the events and rules source tables.
 *
 * <p>Operator uids are {@value #PARSE_UID}, {@value #EVALUATE_UID} and {@value #BIGTABLE_SINK_UID},
 * as in the former Python job, and never change (savepoints map state by uid). The watermark
 * assigners after parse-validate ({@link EventTime}: {@value #EVENT_TIME_UID}, on the rules input
 * {@value #RULES_TIME_UID}, on the window branch {@link WindowPipeline#EVENT_TIME_UID}) hold no
 * state: a savepoint from before them restores (docs/operations.md). The window branch
 * ({@link #attachWindows}) adds {@link WindowPipeline#PREAGGREGATE_UID} and
 * {@link WindowPipeline#AGGREGATE_UID} (docs/windows.md). A savepoint of
 * that Python job does not restore into this one: its state has other names and a Row key, and
 * Flink refuses the restore (CHANGELOG.md gives the errors).
 */
public final class Pipeline {
  public static final String PARSE_UID = "parse-validate";
  public static final String EVALUATE_UID = "evaluate-user";
  public static final String BIGTABLE_ROWS_UID = "bigtable-rows";
  public static final String BIGTABLE_SINK_UID = "bigtable-sink";
  public static final String REPLY_TOPICS_UID = "reply-topics";
  public static final String REPLY_SINK_UID = "reply-sink";
  /** The watermark assigner after parse-validate ({@link EventTime}; stateless). */
  public static final String EVENT_TIME_UID = "event-time";
  /** The rules input's: idle for good ({@link EventTime#never}; stateless). */
  public static final String RULES_TIME_UID = "rules-event-time";

  public final SingleOutputStreamOperator<ParsedEvent> parsed;
  public final SingleOutputStreamOperator<Row> evaluations;
  private final ParseEvents parse;
  /** The window branch, once attached. */
  private WindowPipeline windows;
  private final boolean mirror;
  private final String eventsTopic;
  /** The erasures topic the reply sink also writes to, or null. */
  private final String erasuresTopic;
  /** flink.watermark_out_of_orderness_ms and flink.watermark_idleness_ms, for the window branch. */
  private final long outOfOrdernessMs;
  private final long idlenessMs;
  /** Dead letters of the Bigtable mirror, once attached. */
  private SingleOutputStreamOperator<BigtableRows> bigtableRows;

  private Pipeline(ParseEvents parse, SingleOutputStreamOperator<ParsedEvent> parsed,
      SingleOutputStreamOperator<Row> evaluations, boolean mirror, String eventsTopic, String erasuresTopic,
      long outOfOrdernessMs, long idlenessMs) {
    this.erasuresTopic = erasuresTopic;
    this.outOfOrdernessMs = outOfOrdernessMs;
    this.idlenessMs = idlenessMs;
    this.parse = parse;
    this.parsed = parsed;
    this.evaluations = evaluations;
    this.mirror = mirror;
    this.eventsTopic = eventsTopic;
  }

  /** See {@link EvaluateUsers#EvaluateUsers} for the arguments; the default rule limits. */
  public static Pipeline build(DataStream<Row> eventRecords, DataStream<Row> ruleRecords, String eventsTopic,
      String rulesTopic, String catalogueJson, String initialRulesJson, boolean mirror) {
    return build(eventRecords, ruleRecords, eventsTopic, rulesTopic, catalogueJson, initialRulesJson, mirror, "");
  }

  /** See {@link EvaluateUsers#EvaluateUsers} for the arguments; rule records are not checked for a signature. */
  public static Pipeline build(DataStream<Row> eventRecords, DataStream<Row> ruleRecords, String eventsTopic,
      String rulesTopic, String catalogueJson, String initialRulesJson, boolean mirror, String ruleLimitsJson) {
    return build(eventRecords, ruleRecords, eventsTopic, rulesTopic, catalogueJson, initialRulesJson, mirror,
        ruleLimitsJson, null);
  }

  /**
   * See {@link EvaluateUsers#EvaluateUsers} for the arguments. {@code signingKeysJson}: the accepted
   * signing keys as a JSON array (the `ownership:` section, docs/security.md): rule records
   * ({@link Outputs#RULE_RECORD_TYPE}) must be signed with one, and event records with a signature
   * ({@link Outputs#CONTROL_RECORD_TYPE}) are erase commands; null: neither.
   */
  public static Pipeline build(DataStream<Row> eventRecords, DataStream<Row> ruleRecords, String eventsTopic,
      String rulesTopic, String catalogueJson, String initialRulesJson, boolean mirror, String ruleLimitsJson,
      String signingKeysJson) {
    return build(eventRecords, ruleRecords, eventsTopic, rulesTopic, catalogueJson, initialRulesJson, mirror,
        ruleLimitsJson, signingKeysJson, null);
  }

  /** As above; {@code erasuresTopic}: where {@link #attachReplySink} also writes the acknowledgement of
   * every erasure (the {@link #erasures()} stream), or null. */
  public static Pipeline build(DataStream<Row> eventRecords, DataStream<Row> ruleRecords, String eventsTopic,
      String rulesTopic, String catalogueJson, String initialRulesJson, boolean mirror, String ruleLimitsJson,
      String signingKeysJson, String erasuresTopic) {
    return build(eventRecords, ruleRecords, eventsTopic, rulesTopic, catalogueJson, initialRulesJson, mirror,
        ruleLimitsJson, signingKeysJson, erasuresTopic, "");
  }

  /**
   * As above, with {@code eventTimeJson}: {@code {"max_future_skew_ms", "out_of_orderness_ms",
   * "idleness_ms"}} (events.max_future_skew_ms, flink.watermark_out_of_orderness_ms,
   * flink.watermark_idleness_ms; a missing key or "": the default, 60 s skew, 5 s out of order, 10 s
   * idleness). Watermarks come from {@link EventTime} after parse-validate, never from the sources.
   */
  public static Pipeline build(DataStream<Row> eventRecords, DataStream<Row> ruleRecords, String eventsTopic,
      String rulesTopic, String catalogueJson, String initialRulesJson, boolean mirror, String ruleLimitsJson,
      String signingKeysJson, String erasuresTopic, String eventTimeJson) {
    EventTimeOptions time = EventTimeOptions.fromJson(eventTimeJson);
    java.util.List<String> keys = signingKeysJson == null ? null : signingKeys(signingKeysJson);
    ParseEvents parse = new ParseEvents(eventsTopic, null, time.maxFutureSkewMs());
    if (keys != null) parse.signingKeys(keys);
    EvaluateUsers evaluate = new EvaluateUsers(catalogueJson, initialRulesJson, eventsTopic, rulesTopic, mirror,
        ruleLimitsJson, keys);
    evaluate.acknowledgeErasuresOn(erasuresTopic);
    SingleOutputStreamOperator<ParsedEvent> parsed = eventRecords
        .process(parse, Outputs.PARSED_EVENT_TYPE)
        .name("parse-validate").uid(PARSE_UID);
    SingleOutputStreamOperator<Row> evaluations = parsed
        .assignTimestampsAndWatermarks(EventTime.ofEvents(time.outOfOrdernessMs(), time.idlenessMs()))
        .name("event-time").uid(EVENT_TIME_UID)
        .keyBy(new UserKey.Selector(), org.apache.flink.api.common.typeinfo.Types.STRING)
        .connect(ruleRecords
            .assignTimestampsAndWatermarks(EventTime.<Row>never()).name("rules-event-time").uid(RULES_TIME_UID)
            .broadcast(Outputs.RULE_CHANGES))
        .process(evaluate, Outputs.EVALUATION_TYPE)
        .name("evaluate-user").uid(EVALUATE_UID);
    return new Pipeline(parse, parsed, evaluations, mirror, eventsTopic, erasuresTopic, time.outOfOrdernessMs(),
        time.idlenessMs());
  }

  /**
   * The window branch (docs/windows.md): parse-validate also hands every valid event's window
   * inputs to {@link WindowPipeline#aggregate}. Call it before the job is executed (the parse
   * function is serialized with the job graph, window definitions included).
   *
   * @param specsJson the window definitions (segstream/windows.py's JSON)
   * @return the branch, whose aggregates, alerts and late events go to the three sink tables
   */
  public WindowPipeline attachWindows(String specsJson) {
    if (windows != null) throw new IllegalStateException("the windows are attached already");
    parse.emitWindowInputs(new WindowInputs(specsJson));
    windows = WindowPipeline.aggregate(parsed.getSideOutput(WindowPipeline.INPUTS)
        .assignTimestampsAndWatermarks(EventTime.ofWindowInputs(outOfOrdernessMs, idlenessMs))
        .name("windows-event-time").uid(WindowPipeline.EVENT_TIME_UID), specsJson);
    return windows;
  }

  /**
   * The PII policy (docs/security.md, "Item 6"): parse-validate redacts each event by it before
   * anything else sees it, and dead letters of policed records keep no original. Call it before the
   * job is executed (the parse function is serialized with the job graph, the policy included).
   *
   * @param policyJson operators/pii.py {@code Policy.to_json()}; empty: no policy
   */
  public void redactPii(String policyJson) {
    Redaction policy = Redaction.fromJson(policyJson);
    if (policy != null && policy.active()) parse.redactWith(policy);
  }

  private static java.util.List<String> signingKeys(String json) {
    try {
      java.util.List<String> keys = new java.util.ArrayList<>();
      new com.fasterxml.jackson.databind.ObjectMapper().readTree(json).forEach(k -> keys.add(k.asText()));
      if (keys.isEmpty()) throw new IllegalArgumentException("no signing key");
      return keys;
    } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
      throw new IllegalArgumentException("signing keys: not a JSON array", e);
    }
  }

  /** (erasure_id, acknowledgement JSON) of every erase command done: for the erasures sink. */
  public DataStream<Row> erasures() {
    return evaluations.getSideOutput(Outputs.ERASURES);
  }

  /** (user_id, evaluation JSON): for the evaluations sink. */
  public DataStream<Row> evaluations() {
    return evaluations;
  }

  /** (user_id, expiry JSON): for the expirations sink. */
  public DataStream<Row> expirations() {
    return evaluations.getSideOutput(Outputs.EXPIRATIONS);
  }

  /** (record key, dead letter) of every operator: for the dead-letters sink. Call it after
   * {@link #attachBigtableSink}, whose rows Bigtable cannot take are dead letters too. */
  public DataStream<Row> deadLetters() {
    DataStream<Row> letters =
        parsed.getSideOutput(Outputs.DEAD_LETTERS).union(evaluations.getSideOutput(Outputs.DEAD_LETTERS));
    return bigtableRows == null ? letters : letters.union(bigtableRows.getSideOutput(Outputs.DEAD_LETTERS));
  }

  /**
   * Mirror every evaluated event to Bigtable ({@link ToBigtableRows} then {@link BigtableSink});
   * the pipeline must have been built with mirror. Arguments are the {@code bigtable:} settings
   * (sinks/bigtable/config.py); an empty emulatorHost means production.
   */
  public DataStreamSink<BigtableRows> attachBigtableSink(String project, String instance, String eventsTable,
      String profilesTable, int hashPrefixHex, String emulatorHost) {
    return attachBigtableSink(project, instance, eventsTable, profilesTable, hashPrefixHex, emulatorHost,
        BigtableSink.GIVE_UP_AFTER_S);
  }

  /** As above, with {@link BigtableSink#giveUpAfter} (bigtable.give_up_after_s). */
  public DataStreamSink<BigtableRows> attachBigtableSink(String project, String instance, String eventsTable,
      String profilesTable, int hashPrefixHex, String emulatorHost, long giveUpAfterS) {
    if (!mirror) throw new IllegalStateException("the pipeline was built without mirror");
    if (bigtableRows != null) throw new IllegalStateException("the Bigtable sink is attached already");
    bigtableRows = mirror()
        .process(new ToBigtableRows(hashPrefixHex, eventsTopic), Outputs.BIGTABLE_ROWS_TYPE)
        .name("Bigtable rows").uid(BIGTABLE_ROWS_UID);
    return bigtableRows
        .sinkTo(new BigtableSink(project, instance, eventsTable, profilesTable, emulatorHost)
            .giveUpAfter(java.time.Duration.ofSeconds(giveUpAfterS)))
        .name("Bigtable sink").uid(BIGTABLE_SINK_UID);
  }

  /** (rules_version, log record JSON): every rule record and the initial rules, for the rules-log
   * topic ({@link EvaluateUsers}, "Rule log"). */
  public DataStream<Row> ruleLog() {
    return evaluations.getSideOutput(Outputs.RULE_LOG);
  }

  /** (reply topic, event_id, evaluation JSON) of the events that named a reply topic. */
  public DataStream<Row> replies() {
    return evaluations.getSideOutput(Outputs.REPLIES);
  }

  /**
   * Write {@link #replies()} whose topic starts with {@code topicPrefix} and exists to that topic,
   * at-least-once and never transactionally ({@link ReplySink}). {@code producerProperties}: extra
   * client properties (Properties text), for the producer and the admin client that lists topics.
   */
  public DataStreamSink<Row> attachReplySink(String bootstrapServers, String topicPrefix, String producerProperties) {
    return replies()
        .filter(new ReplySink.Topics(topicPrefix, erasuresTopic, bootstrapServers, producerProperties))
        .name("reply-topics").uid(REPLY_TOPICS_UID)
        .sinkTo(ReplySink.build(bootstrapServers, producerProperties)).name("reply sink").uid(REPLY_SINK_UID);
  }

  /** (event JSON, evaluation JSON) for the Bigtable sink; null unless built with mirror. */
  public DataStream<Tuple2<String, String>> mirror() {
    return mirror ? evaluations.getSideOutput(Outputs.MIRROR) : null;
  }
}
