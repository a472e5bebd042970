package io.segstream.flink;

import java.util.Arrays;
import java.util.Objects;

/**
 * A record that passed the event contract, on its way from {@link ParseEvents} to
 * {@link EvaluateUsers} (a Flink POJO: public fields, no-arg constructor). It carries the original
 * value, which the evaluator decodes again (the same bytes, so the same event), and where it came
 * from, so that a record the engine fails on can still be dead-lettered like the original.
 */
public class ParsedEvent {
  /** {@link UserKey#of}(tenant, user_id): the key of keyed state. */
  public String key;
  /** The Kafka record key (may be null). */
  public byte[] recordKey;
  /** The Kafka record value: one valid event, at most 64 KiB. */
  public byte[] value;
  public Integer partition;
  public Long offset;
  /** The reply topic named by the record's {@code segstream-reply} header (a serving front), or null. */
  public String replyTo;
  /** The event's ts, its event time ({@link EventTime} assigns watermarks from it). */
  public long ts;

  /** Set on an erase command instead of an event ({@link ParseEvents}): its erasure_id; the value is
   * then the command, {@link #key} its user's. */
  public String erasureId;
  /** Who signed the erase command: its tenant, or "" for an operator. */
  public String erasureOwner;

  public ParsedEvent() {}

  public ParsedEvent(String key, byte[] recordKey, byte[] value, Integer partition, Long offset) {
    this.key = key;
    this.recordKey = recordKey;
    this.value = value;
    this.partition = partition;
    this.offset = offset;
  }

  public ParsedEvent(String key, byte[] recordKey, byte[] value, Integer partition, Long offset, String replyTo) {
    this(key, recordKey, value, partition, offset);
    this.replyTo = replyTo;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof ParsedEvent p && Objects.equals(key, p.key) && Arrays.equals(recordKey, p.recordKey)
        && Arrays.equals(value, p.value) && Objects.equals(partition, p.partition) && Objects.equals(offset, p.offset)
        && Objects.equals(replyTo, p.replyTo) && Objects.equals(erasureId, p.erasureId)
        && Objects.equals(erasureOwner, p.erasureOwner);  // ts: a function of value
  }

  @Override
  public int hashCode() {
    return Objects.hash(key, Arrays.hashCode(value), partition, offset);
  }

  @Override
  public String toString() {
    return "ParsedEvent{" + key + " @" + partition + "/" + offset + "}";
  }
}
