package io.segstream.flink;

import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;

/**
 * The types and side-output tags of segstream's operators, the Java counterparts of jobs/functions.py
 * (same tag ids and row layouts, so the Kafka sink tables take them unchanged).
 */
public final class Outputs {
  private Outputs() {}

  /** (k BYTES, v BYTES): a dead letter, for the dead-letters sink table (= DEAD_LETTER_TYPE). */
  public static final TypeInformation<Row> DEAD_LETTER_TYPE =
      Types.ROW_NAMED(new String[] {"k", "v"}, Types.PRIMITIVE_ARRAY(Types.BYTE), Types.PRIMITIVE_ARRAY(Types.BYTE));
  /** (k STRING = user_id, v STRING = JSON): an evaluation or an expiry record (= EVALUATION_TYPE). */
  public static final TypeInformation<Row> EVALUATION_TYPE =
      Types.ROW_NAMED(new String[] {"k", "v"}, Types.STRING, Types.STRING);
  /** (event JSON, evaluation JSON) for the Bigtable mirror (= MIRROR_TYPE, a Python Types.TUPLE). */
  public static final TypeInformation<Tuple2<String, String>> MIRROR_TYPE = Types.TUPLE(Types.STRING, Types.STRING);
  /** The rows of one event between {@link ToBigtableRows} and {@link BigtableSink}. */
  public static final TypeInformation<BigtableRows> BIGTABLE_ROWS_TYPE = Types.POJO(BigtableRows.class);
  /** Valid events between {@link ParseEvents} and {@link EvaluateUsers}. */
  public static final TypeInformation<ParsedEvent> PARSED_EVENT_TYPE = Types.POJO(ParsedEvent.class);
  /** The Kafka source rows of both topics: (record_key BYTES, record_value BYTES, record_partition INT,
   * record_offset BIGINT), as `SELECT record_key, record_value, record_partition, record_offset`
   * gives them. */
  public static final TypeInformation<Row> RECORD_TYPE = Types.ROW_NAMED(
      new String[] {"record_key", "record_value", "record_partition", "record_offset"},
      Types.PRIMITIVE_ARRAY(Types.BYTE), Types.PRIMITIVE_ARRAY(Types.BYTE), Types.INT, Types.LONG);

  /** The events source rows: {@link #RECORD_TYPE}, reply_to BYTES (the record's
   * {@code segstream-reply} header, naming the serving front's reply topic; null without it) and
   * record_time TIMESTAMP_LTZ(3) (the record timestamp: the broker's append time, LogAppendTime). */
  public static final TypeInformation<Row> EVENT_RECORD_TYPE = Types.ROW_NAMED(
      new String[] {"record_key", "record_value", "record_partition", "record_offset", "reply_to", "record_time"},
      Types.PRIMITIVE_ARRAY(Types.BYTE), Types.PRIMITIVE_ARRAY(Types.BYTE), Types.INT, Types.LONG,
      Types.PRIMITIVE_ARRAY(Types.BYTE), Types.INSTANT);
  /** The events source rows with a seventh column, signature BYTES (the {@code segstream-signature}
   * header, which marks a control record: an erase command), after record_time. */
  public static final TypeInformation<Row> CONTROL_RECORD_TYPE = Types.ROW_NAMED(
      new String[] {"record_key", "record_value", "record_partition", "record_offset", "reply_to", "record_time",
          "signature"},
      Types.PRIMITIVE_ARRAY(Types.BYTE), Types.PRIMITIVE_ARRAY(Types.BYTE), Types.INT, Types.LONG,
      Types.PRIMITIVE_ARRAY(Types.BYTE), Types.INSTANT, Types.PRIMITIVE_ARRAY(Types.BYTE));
  /** The rules source rows: {@link #RECORD_TYPE} and signature BYTES (the {@code segstream-signature} header). */
  public static final TypeInformation<Row> RULE_RECORD_TYPE = Types.ROW_NAMED(
      new String[] {"record_key", "record_value", "record_partition", "record_offset", "signature"},
      Types.PRIMITIVE_ARRAY(Types.BYTE), Types.PRIMITIVE_ARRAY(Types.BYTE), Types.INT, Types.LONG,
      Types.PRIMITIVE_ARRAY(Types.BYTE));
  /** (topic STRING, k STRING = event_id, v STRING = evaluation JSON): an answer for a serving front. */
  public static final TypeInformation<Row> REPLY_TYPE =
      Types.ROW_NAMED(new String[] {"topic", "k", "v"}, Types.STRING, Types.STRING, Types.STRING);

  public static final OutputTag<Row> DEAD_LETTERS = new OutputTag<>("dead-letters", DEAD_LETTER_TYPE);
  public static final OutputTag<Row> EXPIRATIONS = new OutputTag<>("expirations", EVALUATION_TYPE);
  public static final OutputTag<Row> REPLIES = new OutputTag<>("replies", REPLY_TYPE);
  /** (k STRING = erasure_id, v STRING = acknowledgement JSON): erasures done, for the erasures topic. */
  public static final OutputTag<Row> ERASURES = new OutputTag<>("erasures", EVALUATION_TYPE);
  /** (k STRING = rules_version, v STRING = JSON): the versioned rule log (docs/batch.md), from subtask 0. */
  public static final OutputTag<Row> RULE_LOG = new OutputTag<>("rule-log", EVALUATION_TYPE);
  public static final OutputTag<Tuple2<String, String>> MIRROR = new OutputTag<>("bigtable-mirror", MIRROR_TYPE);

  /** The broadcast state of the rules side: rule id -> the rule JSON of an accepted change, or ""
   * for a deletion, over the initial rules; plus {@link #VERSION_KEY} -> the count of rule records
   * seen (decimal). Pass it to {@code DataStream.broadcast}. */
  public static final MapStateDescriptor<String, String> RULE_CHANGES =
      new MapStateDescriptor<>("rule-changes", Types.STRING, Types.STRING);
  /** The version entry of {@link #RULE_CHANGES}; a rule record with this key is refused. */
  public static final String VERSION_KEY = "\u0000version";
}
