package io.segstream.flink;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.google.cloud.bigtable.data.v2.models.RowMutationEntry;
import com.google.protobuf.ByteString;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * The two Bigtable rows of one evaluated event, byte for byte those of the Python sink
 * (sinks/bigtable/keys.py for the keys, mutations.py for the cells, schema.py for the names):
 *
 * <ul>
 *   <li>events row {@code {prefix}_{tenant}_{user_id}_{reversed ts}_{event_id}}: {@code e:payload}
 *       = the event JSON as received, {@code e:name}, {@code e:seq} and {@code e:rules_version} of
 *       its evaluation (what a replay needs: the live order and rule set); cell time = event ts (ms) * 1000.
 *   <li>profile row {@code {prefix}_{tenant}_{user_id}}: {@code p:stats} and {@code p:segments} =
 *       the evaluation's raw JSON values (as msgspec.Raw keeps them), {@code p:ts}, {@code p:event_id},
 *       {@code p:seq}, {@code p:rules_version}; cell time = seq * 1000.
 * </ul>
 *
 * <p>A Flink POJO (public fields, no-arg constructor) so it crosses from {@link ToBigtableRows} to
 * {@link BigtableSink} with Flink's own serializer.
 */
public class BigtableRows {
  public static final String EVENTS_FAMILY = "e";
  public static final String PROFILE_FAMILY = "p";
  static final ByteString PAYLOAD = ByteString.copyFromUtf8("payload");
  static final ByteString NAME = ByteString.copyFromUtf8("name");
  static final ByteString STATS = ByteString.copyFromUtf8("stats");
  static final ByteString SEGMENTS = ByteString.copyFromUtf8("segments");
  static final ByteString TS = ByteString.copyFromUtf8("ts");
  static final ByteString EVENT_ID = ByteString.copyFromUtf8("event_id");
  static final ByteString SEQ = ByteString.copyFromUtf8("seq");
  static final ByteString RULES_VERSION = ByteString.copyFromUtf8("rules_version");

  static final long MAX_TS = Long.MAX_VALUE;
  /** Bigtable's row key limit. */
  public static final int MAX_KEY_BYTES = 4096;
  /** The largest ms value whose microseconds fit a long (mutations.py MAX_CELL_MS). */
  static final long MAX_CELL_MS = Long.MAX_VALUE / 1000;
  private static final JsonFactory JSON = new JsonFactory();

  public byte[] eventKey;
  public long eventMicros;
  public byte[] payload;
  public byte[] name;
  public byte[] profileKey;
  public long profileMicros;
  public byte[] stats;
  public byte[] segments;
  public byte[] ts;
  public byte[] eventId;
  public byte[] seq;
  public byte[] rulesVersion;
  /** Set on an erasure instead of an event's rows: the prefix of the user's events rows
   * ({@code {prefix}_{tenant}_{user_id}_}), all of which go with the profile row {@link #profileKey}. */
  public byte[] erasePrefix;

  public BigtableRows() {}

  /** The deletion of one user's rows (an erasure: EvaluateUsers.erase). */
  public static BigtableRows erasure(String tenant, String userId, int width) throws InvalidRow {
    BigtableRows r = new BigtableRows();
    r.profileKey = profileKey(tenant, userId, width);
    r.erasePrefix = concat(r.profileKey, SEP);
    return r;
  }

  /** A row that Bigtable cannot take (key too long, timestamp out of range): a dead letter. */
  public static final class InvalidRow extends Exception {
    private static final long serialVersionUID = 1L;

    InvalidRow(String message) {
      super(message);
    }
  }

  /**
   * Both rows of one mirror record (EvaluateUsers' MIRROR side output).
   *
   * @param width hex digits of the hash prefix (bigtable.hash_prefix_hex)
   * @throws InvalidRow for what keys.py / mutations.py raise ValueError on
   */
  public static BigtableRows of(String eventJson, String evaluationJson, int width) throws InvalidRow, IOException {
    BigtableRows r = new BigtableRows();
    // The event row, from the event JSON (the Python sink decodes it with the Event struct).
    String tenant = "default";
    String userId = null;
    String eventId = null;
    String name = null;
    Long ts = null;
    try (JsonParser p = JSON.createParser(eventJson)) {
      expect(p.nextToken() == JsonToken.START_OBJECT, "event is not a JSON object");
      while (p.nextToken() == JsonToken.FIELD_NAME) {
        String field = p.currentName();
        p.nextToken();
        switch (field) {
          case "tenant" -> tenant = p.getText();
          case "user_id" -> userId = p.getText();
          case "event_id" -> eventId = p.getText();
          case "name" -> name = p.getText();
          case "ts" -> ts = p.getLongValue();
          default -> p.skipChildren();
        }
      }
    }
    expect(userId != null && eventId != null && name != null && ts != null, "event lacks a field");
    r.eventMicros = micros(ts, "event ts");
    r.eventKey = eventKey(tenant, userId, ts, eventId, width);
    r.payload = eventJson.getBytes(StandardCharsets.UTF_8);
    r.name = name.getBytes(StandardCharsets.UTF_8);

    // The profile row, from the evaluation JSON; stats and segments as their raw text.
    String evTenant = null;
    String evUser = null;
    String evEventId = null;
    Long evTs = null;
    Long seq = null;
    long rulesVersion = 0;  // mutations.py Evaluation's default
    try (JsonParser p = JSON.createParser(evaluationJson)) {
      expect(p.nextToken() == JsonToken.START_OBJECT, "evaluation is not a JSON object");
      while (p.nextToken() == JsonToken.FIELD_NAME) {
        String field = p.currentName();
        p.nextToken();
        switch (field) {
          case "tenant" -> evTenant = p.getText();
          case "user_id" -> evUser = p.getText();
          case "event_id" -> evEventId = p.getText();
          case "ts" -> evTs = p.getLongValue();
          case "seq" -> seq = p.getLongValue();
          case "rules_version" -> rulesVersion = p.getLongValue();
          case "stats" -> r.stats = raw(p, evaluationJson);
          case "segments" -> r.segments = raw(p, evaluationJson);
          default -> p.skipChildren();
        }
      }
    }
    expect(evTenant != null && evUser != null && evEventId != null && evTs != null && seq != null
        && r.stats != null && r.segments != null, "evaluation lacks a field");
    r.profileMicros = micros(seq, "seq");
    r.profileKey = profileKey(evTenant, evUser, width);
    r.ts = Long.toString(evTs).getBytes(StandardCharsets.UTF_8);
    r.eventId = evEventId.getBytes(StandardCharsets.UTF_8);
    r.seq = Long.toString(seq).getBytes(StandardCharsets.UTF_8);
    r.rulesVersion = Long.toString(rulesVersion).getBytes(StandardCharsets.UTF_8);
    return r;
  }

  /** The value the parser is on, exactly as it stands in {@code json} (msgspec.Raw's bytes). */
  private static byte[] raw(JsonParser p, String json) throws IOException {
    int start = Math.toIntExact(p.currentTokenLocation().getCharOffset());
    if (p.currentToken().isStructStart()) {
      p.skipChildren();
    } else {
      p.getText();  // a scalar may be read lazily: finish it so the location is past its end
    }
    int end = Math.toIntExact(p.currentLocation().getCharOffset());
    return json.substring(start, end).getBytes(StandardCharsets.UTF_8);
  }

  /** The events-table mutation. */
  public RowMutationEntry eventEntry() {
    return RowMutationEntry.createUnsafe(ByteString.copyFrom(eventKey))
        .setCell(EVENTS_FAMILY, PAYLOAD, eventMicros, ByteString.copyFrom(payload))
        .setCell(EVENTS_FAMILY, NAME, eventMicros, ByteString.copyFrom(name))
        .setCell(EVENTS_FAMILY, SEQ, eventMicros, ByteString.copyFrom(seq))
        .setCell(EVENTS_FAMILY, RULES_VERSION, eventMicros, ByteString.copyFrom(rulesVersion));
  }

  /** The profiles-table mutation. */
  public RowMutationEntry profileEntry() {
    return RowMutationEntry.createUnsafe(ByteString.copyFrom(profileKey))
        .setCell(PROFILE_FAMILY, STATS, profileMicros, ByteString.copyFrom(stats))
        .setCell(PROFILE_FAMILY, SEGMENTS, profileMicros, ByteString.copyFrom(segments))
        .setCell(PROFILE_FAMILY, TS, profileMicros, ByteString.copyFrom(ts))
        .setCell(PROFILE_FAMILY, EVENT_ID, profileMicros, ByteString.copyFrom(eventId))
        .setCell(PROFILE_FAMILY, SEQ, profileMicros, ByteString.copyFrom(seq))
        .setCell(PROFILE_FAMILY, RULES_VERSION, profileMicros, ByteString.copyFrom(rulesVersion));
  }

  // ---- keys.py ----

  /** {@code %} -> {@code %25}, then {@code _} -> {@code %5F}: an escaped field has no separator. */
  static byte[] escape(String field) {
    return field.replace("%", "%25").replace("_", "%5F").getBytes(StandardCharsets.UTF_8);
  }

  /** Lowercase hex of sha256(escape(tenant) _ escape(user_id)), its first {@code width} digits. */
  static String hashPrefix(String tenant, String userId, int width) {
    if (width < 1 || width > 64) {
      throw new IllegalArgumentException("hash prefix width must be 1..64 hex digits, got " + width);
    }
    try {
      MessageDigest sha = MessageDigest.getInstance("SHA-256");
      sha.update(escape(tenant));
      sha.update((byte) '_');
      sha.update(escape(userId));
      return HexFormat.of().formatHex(sha.digest()).substring(0, width);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** 19-digit decimal of MAX_TS - ts: newer events sort first. */
  static String reverseTs(long ts) throws InvalidRow {
    if (ts < 0) throw new InvalidRow("ts " + ts + " is outside 0.." + MAX_TS);
    return String.format("%019d", MAX_TS - ts);
  }

  static byte[] profileKey(String tenant, String userId, int width) throws InvalidRow {
    return checked(concat(hashPrefix(tenant, userId, width).getBytes(StandardCharsets.US_ASCII), SEP,
        escape(tenant), SEP, escape(userId)));
  }

  static byte[] eventKey(String tenant, String userId, long ts, String eventId, int width) throws InvalidRow {
    return checked(concat(hashPrefix(tenant, userId, width).getBytes(StandardCharsets.US_ASCII), SEP,
        escape(tenant), SEP, escape(userId), SEP, reverseTs(ts).getBytes(StandardCharsets.US_ASCII), SEP,
        escape(eventId)));
  }

  private static final byte[] SEP = {'_'};

  private static byte[] concat(byte[]... parts) {
    int n = 0;
    for (byte[] part : parts) n += part.length;
    byte[] out = new byte[n];
    int at = 0;
    for (byte[] part : parts) {
      System.arraycopy(part, 0, out, at, part.length);
      at += part.length;
    }
    return out;
  }

  private static byte[] checked(byte[] key) throws InvalidRow {
    if (key.length > MAX_KEY_BYTES) {
      throw new InvalidRow("row key is " + key.length + " bytes, over Bigtable's " + MAX_KEY_BYTES);
    }
    return key;
  }

  static long micros(long ms, String what) throws InvalidRow {
    if (ms < 0 || ms > MAX_CELL_MS) {
      throw new InvalidRow(what + " " + ms + " is outside 0.." + MAX_CELL_MS + ", not storable as a cell timestamp");
    }
    return ms * 1000;
  }

  private static void expect(boolean ok, String what) throws IOException {
    if (!ok) throw new IOException(what);
  }
}
