package io.segstream.flink;

import io.segstream.engine.Erasure;
import io.segstream.engine.Event;
import io.segstream.engine.Events;
import io.segstream.engine.InvalidEvent;
import io.segstream.engine.Redaction;
import io.segstream.flink.windows.WindowInputs;
import io.segstream.flink.windows.WindowPipeline;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The event contract on each Kafka record (jobs/functions.py ParseEvent): a valid event goes on as
 * a {@link ParsedEvent} keyed by {@link UserKey}; anything else goes to {@link Outputs#DEAD_LETTERS}
 * as (record key, {@link DeadLetters#value}). A tombstone (null value) is a dead letter with reason
 * {@link #TOMBSTONE}. Nothing a record holds makes this function throw.
 *
 * <p>Input: {@link Outputs#RECORD_TYPE} rows (record_key, record_value, record_partition,
 * record_offset), or {@link Outputs#EVENT_RECORD_TYPE} rows with a fifth column reply_to (the
 * {@code segstream-reply} header's bytes, or null), carried on as {@link ParsedEvent#replyTo}, and
 * a sixth, record_time: the record's timestamp, which on the events topic (LogAppendTime) is the
 * broker's append time. An event whose ts is more than {@code maxFutureSkewMs} after it is a dead
 * letter ({@link Events#checkFutureSkew}, operators/event_time.py): it never reaches the watermark
 * assigner that follows this operator ({@link EventTime}). Rows without it are not judged. Or
 * {@link Outputs#CONTROL_RECORD_TYPE} rows with a seventh, signature: an erase command goes on keyed
 * by its user with {@link ParsedEvent#erasureId} set.
 * Output: {@link Outputs#PARSED_EVENT_TYPE}; with window definitions also
 * {@link WindowPipeline#INPUTS}. Metric: {@code deadLetters}.
 */
public class ParseEvents extends ProcessFunction<Row, ParsedEvent> {
  private static final long serialVersionUID = 1L;

  public static final String TOMBSTONE = "record has no value (a tombstone)";

  private final String topic;
  /** events.max_future_skew_ms. */
  private final long maxFutureSkewMs;
  /** The window definitions' extractor, or null: the job computes no windows. */
  private WindowInputs windows;
  /** The accepted signing keys of control records (erase commands; docs/security.md, "Erasure"). */
  private ArrayList<String> signingKeys = new ArrayList<>();
  private transient Counter deadLetters;
  /** The PII policy (docs/security.md, "Item 6"), or null: events go on as they came. */
  private Redaction redaction;

  /** @param topic the events topic, named in dead letters */
  public ParseEvents(String topic) {
    this(topic, null);
  }

  /**
   * @param topic the events topic, named in dead letters
   * @param windows with it, every valid event also goes to {@link WindowPipeline#INPUTS}, once per
   *     window definition that counts it: the windows branch reuses this parse (docs/windows.md)
   */
  public ParseEvents(String topic, WindowInputs windows) {
    this(topic, windows, Events.DEFAULT_MAX_FUTURE_SKEW_MS);
  }

  /** @param maxFutureSkewMs events.max_future_skew_ms: how far ts may be after the record's append time */
  public ParseEvents(String topic, WindowInputs windows, long maxFutureSkewMs) {
    this.topic = topic;
    this.windows = windows;
    this.maxFutureSkewMs = maxFutureSkewMs;
  }

  /** From now on, also emit {@link WindowPipeline#INPUTS} ({@link Pipeline#attachWindows},
   * before the job graph is built). */
  void emitWindowInputs(WindowInputs windows) {
    this.windows = windows;
  }

  /** From now on, redact each event by this PII policy before anything else sees it
   * ({@link Pipeline#redactPii}, before the job graph is built). */
  void redactWith(Redaction redaction) {
    this.redaction = redaction;
  }

  /** Accept erase commands signed with one of {@code keys} ({@link Pipeline#build}). A record with a
   * sixth column (the segstream-signature header) is a control record: {@link Erasure#parse}. */
  void signingKeys(List<String> keys) {
    this.signingKeys = new ArrayList<>(keys);
  }

  @Override
  public void open(OpenContext openContext) {
    deadLetters = getRuntimeContext().getMetricGroup().counter("deadLetters");
  }

  @Override
  public void processElement(Row row, Context ctx, Collector<ParsedEvent> out) {
    byte[] key = null;
    byte[] raw = null;
    Integer partition = null;
    Long offset = null;
    String reason;
    Event event = null;
    try {
      key = (byte[]) row.getField(0);
      raw = (byte[]) row.getField(1);
      partition = row.getField(2) == null ? null : ((Number) row.getField(2)).intValue();
      offset = row.getField(3) == null ? null : ((Number) row.getField(3)).longValue();
      byte[] signature = row.getArity() >= 7 && row.getField(6) instanceof byte[] b ? b : null;
      if (raw == null) {
        reason = TOMBSTONE;
      } else if (signature != null) {
        Erasure erasure = Erasure.parse(raw, key, signature, signingKeys);
        ParsedEvent control = new ParsedEvent(UserKey.of(erasure.tenant(), erasure.userId()), key, raw, partition,
            offset, replyTo(row));
        control.erasureId = erasure.erasureId();
        control.erasureOwner = erasure.owner();
        out.collect(control);
        reason = null;
      } else {
        event = Events.parse(raw);
        Long appended = appendTime(row);
        if (appended != null) Events.checkFutureSkew(event, appended, maxFutureSkewMs);
        byte[] value = raw;
        Redaction.Redacted redacted = redaction == null ? null : redaction.redact(event);
        if (redacted != null) {  // from here on only the redacted event exists: state, mirror, windows
          event = redacted.event();
          value = redacted.json();
        }
        ParsedEvent parsed = new ParsedEvent(UserKey.of(event.tenant(), event.userId()), key, value, partition, offset,
            replyTo(row));
        parsed.ts = event.ts();
        out.collect(parsed);
        reason = null;
      }
    } catch (InvalidEvent e) {
      reason = e.reason();
    } catch (Erasure.Invalid e) {
      reason = e.getMessage();
    } catch (RuntimeException | StackOverflowError e) {
      reason = "internal: " + e;
    }
    if (reason == null) {
      // Outside the try: the event has gone on to the evaluator, it is no dead letter whatever happens here.
      // An erase command (event null) is no event: nothing for the windows.
      if (windows != null && event != null) {
        windows.extractOrTick(event, partition, in -> ctx.output(WindowPipeline.INPUTS, in));
      }
      return;
    }
    if (deadLetters != null) deadLetters.inc();
    ctx.output(Outputs.DEAD_LETTERS,
        Row.of(DeadLetters.key(key), DeadLetters.value(raw, reason, topic, partition, offset, key, redaction)));
  }

  /** The record_time of an {@link Outputs#EVENT_RECORD_TYPE} row (its sixth column, epoch ms), if any. */
  public static Long appendTime(Row row) {
    if (row.getArity() < 6) return null;
    Object t = row.getField(5);
    if (t instanceof java.time.Instant i) return i.toEpochMilli();
    if (t instanceof Number n) return n.longValue();
    return null;
  }

  /** The reply topic of an {@link Outputs#EVENT_RECORD_TYPE} row: its fifth column as UTF-8, if any. */
  static String replyTo(Row row) {
    if (row.getArity() < 5 || !(row.getField(4) instanceof byte[] bytes) || bytes.length == 0) return null;
    return new String(bytes, java.nio.charset.StandardCharsets.UTF_8);
  }
}
