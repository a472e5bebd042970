package io.segstream.flink;

import io.segstream.engine.Json;
import io.segstream.engine.Redaction;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The dead-letter record value, byte for byte that of operators/events.py {@code dead_letter}:
 * {@code {"reason", "topic", "partition", "offset", "original_b64"}} (msgspec's JSON: no spaces).
 *
 * <p>One difference, for records Python would turn into dead letters too large for Kafka: when
 * the whole original value is over {@link #MAX_ORIGINAL_BYTES} (384 KiB, so the dead letter's
 * base64 stays under 512 KiB, half of Kafka's default {@code max.message.bytes} of 1 MiB, leaving
 * room for the key and headers), {@code original_b64} holds only its first MAX_ORIGINAL_BYTES bytes
 * and three fields follow: {@code "original_truncated": true, "original_length": <bytes>,
 * "original_sha256": "<hex of the whole value>"}. Record keys over {@link #MAX_KEY_BYTES} (64 KiB)
 * are cut to that many bytes the same way, with {@code "key_length"} and {@code "key_sha256"}.
 * Records under the bounds (every valid-sized event: they are at most 64 KiB) are unchanged.
 */
public final class DeadLetters {
  private DeadLetters() {}

  /** The most original bytes a dead letter carries (base64: 4/3 of it). */
  public static final int MAX_ORIGINAL_BYTES = 384 * 1024;
  /** The longest record key a dead letter keeps. */
  public static final int MAX_KEY_BYTES = 64 * 1024;

  /** The dead-letter value for {@code raw} (null: a tombstone, treated as empty). */
  public static byte[] value(byte[] raw, String reason, String topic, Integer partition, Long offset) {
    return value(raw, reason, topic, partition, offset, null);
  }

  /** As {@link #value(byte[], String, String, Integer, Long)}; {@code key} only to describe a cut key. */
  static byte[] value(byte[] raw, String reason, String topic, Integer partition, Long offset, byte[] key) {
    return value(raw, reason, topic, partition, offset, key, null);
  }

  /**
   * As above, under a PII policy (null: none): when the policy of the record's tenant redacts
   * anything, the original is not kept: {@code "original_redacted": true} and
   * {@link Redaction#deadLetterFields} (its length, HMAC and readable fields, redacted) take the
   * place of {@code original_b64}, as operators/events.py {@code dead_letter} with a policy.
   */
  static byte[] value(byte[] raw, String reason, String topic, Integer partition, Long offset, byte[] key,
      Redaction redaction) {
    if (raw == null) raw = new byte[0];
    Map<String, Object> letter = new LinkedHashMap<>();
    letter.put("reason", reason);
    letter.put("topic", topic);
    letter.put("partition", partition == null ? null : (long) partition);
    letter.put("offset", offset);
    Map<String, Object> redacted = redaction == null ? null : redaction.deadLetterFields(raw);
    if (redacted != null) {
      letter.put("original_redacted", true);
      letter.putAll(redacted);
    } else if (raw.length <= MAX_ORIGINAL_BYTES) {
      letter.put("original_b64", Base64.getEncoder().encodeToString(raw));
    } else {
      letter.put("original_b64", Base64.getEncoder().encodeToString(Arrays.copyOf(raw, MAX_ORIGINAL_BYTES)));
      letter.put("original_truncated", true);
      letter.put("original_length", (long) raw.length);
      letter.put("original_sha256", sha256(raw));
    }
    if (key != null && key.length > MAX_KEY_BYTES) {
      letter.put("key_length", (long) key.length);
      letter.put("key_sha256", sha256(key));
    }
    return Json.render(letter).getBytes(StandardCharsets.UTF_8);
  }

  /** The dead-letter record key: the original key, cut to {@link #MAX_KEY_BYTES}. */
  public static byte[] key(byte[] key) {
    return key == null || key.length <= MAX_KEY_BYTES ? key : Arrays.copyOf(key, MAX_KEY_BYTES);
  }

  static String sha256(byte[] bytes) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
