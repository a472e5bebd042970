package io.segstream.flink;

import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.types.Row;

/**
 * segstream's two operators wired for jobs/user_stats.py, a caller on py4j:
 * {@code Pipeline.build(eventRecords, ruleRecords, ...)} then the four streams for the sinks.
 * Inputs are {@link Outputs#RECORD_TYPE} rows (record_key, record_value, record_partition,
 * record_offset) of the events and rules source tables.
 *
 * <p>Operator uids are {@value #PARSE_UID} and {@value #EVALUATE_UID}, as in the former Python
 * job, and never change (savepoints map state by uid). A savepoint of that Python job does not
 * restore into this one: its state has other names and a Row key, and Flink refuses the restore
 * (CHANGELOG.md gives the errors).
 */
public final class Pipeline {
  public static final String PARSE_UID = "parse-validate";
  public static final String EVALUATE_UID = "evaluate-user";

  public final SingleOutputStreamOperator<ParsedEvent> parsed;
  public final SingleOutputStreamOperator<Row> evaluations;
  private final boolean mirror;

  private Pipeline(SingleOutputStreamOperator<ParsedEvent> parsed, SingleOutputStreamOperator<Row> evaluations,
      boolean mirror) {
    this.parsed = parsed;
    this.evaluations = evaluations;
    this.mirror = mirror;
  }

  /** See {@link EvaluateUsers#EvaluateUsers} for the arguments. */
  public static Pipeline build(DataStream<Row> eventRecords, DataStream<Row> ruleRecords, String eventsTopic,
      String rulesTopic, String catalogueJson, String initialRulesJson, boolean mirror) {
    SingleOutputStreamOperator<ParsedEvent> parsed = eventRecords
        .process(new ParseEvents(eventsTopic), Outputs.PARSED_EVENT_TYPE)
        .name("parse-validate").uid(PARSE_UID);
    SingleOutputStreamOperator<Row> evaluations = parsed
        .keyBy(new UserKey.Selector(), org.apache.flink.api.common.typeinfo.Types.STRING)
        .connect(ruleRecords.broadcast(Outputs.RULE_CHANGES))
        .process(new EvaluateUsers(catalogueJson, initialRulesJson, eventsTopic, rulesTopic, mirror),
            Outputs.EVALUATION_TYPE)
        .name("evaluate-user").uid(EVALUATE_UID);
    return new Pipeline(parsed, evaluations, mirror);
  }

  /** (user_id, evaluation JSON): for the evaluations sink. */
  public DataStream<Row> evaluations() {
    return evaluations;
  }

  /** (user_id, expiry JSON): for the expirations sink. */
  public DataStream<Row> expirations() {
    return evaluations.getSideOutput(Outputs.EXPIRATIONS);
  }

  /** (record key, dead letter) of both operators: for the dead-letters sink. */
  public DataStream<Row> deadLetters() {
    return parsed.getSideOutput(Outputs.DEAD_LETTERS).union(evaluations.getSideOutput(Outputs.DEAD_LETTERS));
  }

  /** (event JSON, evaluation JSON) for the Bigtable sink; null unless built with mirror. */
  public DataStream<Tuple2<String, String>> mirror() {
    return mirror ? evaluations.getSideOutput(Outputs.MIRROR) : null;
  }
}
