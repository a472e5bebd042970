package io.segstream.engine;

import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import io.segstream.engine.rules.Ownership;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * An erase command: a control record on the events topic (it carries the {@code segstream-signature}
 * header, which no event does) that clears one user: operators/erasure.py, with the same checks and
 * reasons (docs/security.md, "Erasure"). Value
 * {@code {"control": "erase", "erasure_id", "tenant", "user_id"}}, record key = the user_id (the
 * user's partition, after the user's earlier events), signed by an operator or the user's tenant.
 */
public record Erasure(String erasureId, String tenant, String userId, String owner) {
  static final List<String> FIELDS = List.of("control", "erasure_id", "tenant", "user_id");
  private static final ObjectMapper JSON = JsonMapper.builder()
      .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
      .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
      .build();

  /** A control record that is not a valid erase command; the message is the dead-letter reason. */
  public static final class Invalid extends Exception {
    private static final long serialVersionUID = 1L;

    Invalid(String reason) {
      super(reason, null, false, false);
    }
  }

  /** The erase command of a control record, or {@link Invalid} with the reason. */
  public static Erasure parse(byte[] raw, byte[] recordKey, byte[] signature, List<String> keys) throws Invalid {
    Ownership.Verdict verdict = Ownership.verify(keys, Ownership.ERASE, recordKey, raw, signature);
    if (verdict.owner() == null) throw new Invalid("erase: " + verdict.reason());
    JsonNode data = read(raw);
    if (data == null || !data.isObject()) throw new Invalid("erase: not a JSON object");
    List<String> names = new ArrayList<>();
    data.fieldNames().forEachRemaining(names::add);
    Collections.sort(names);
    boolean strings = names.equals(FIELDS) && FIELDS.stream().allMatch(f -> data.get(f).isTextual());
    if (!strings || !data.get("control").textValue().equals("erase")) {
      throw new Invalid("erase: expected exactly {\"control\": \"erase\", \"erasure_id\", \"tenant\", \"user_id\"}"
          + " as strings");
    }
    for (String field : FIELDS.subList(1, FIELDS.size())) {
      int size = data.get(field).textValue().getBytes(StandardCharsets.UTF_8).length;
      if (size < 1 || size > Events.MAX_FIELD_BYTES) {
        throw new Invalid("erase: `" + field + "` must be 1 to " + Events.MAX_FIELD_BYTES + " bytes of UTF-8");
      }
    }
    String userId = data.get("user_id").textValue();
    if (recordKey == null || !Arrays.equals(recordKey, userId.getBytes(StandardCharsets.UTF_8))) {
      throw new Invalid("erase: the record key is not the user_id");
    }
    String tenant = data.get("tenant").textValue();
    String refused = Ownership.eraseScope(verdict.owner(), tenant);
    if (refused != null) throw new Invalid("erase: " + refused);
    return new Erasure(data.get("erasure_id").textValue(), tenant, userId, verdict.owner());
  }

  private static JsonNode read(byte[] raw) {
    try {
      return raw == null ? null : JSON.readTree(raw);
    } catch (Exception e) {
      return null;
    }
  }

  /** The value of an erase command (operators/erasure.py encode). */
  public static byte[] encode(String erasureId, String tenant, String userId) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("control", "erase");
    m.put("erasure_id", erasureId);
    m.put("tenant", tenant);
    m.put("user_id", userId);
    return Json.render(m).getBytes(StandardCharsets.UTF_8);
  }

  /** The acknowledgement written once the user's keyed state is gone (erasure.py acknowledgement). */
  public Map<String, Object> acknowledgement(boolean hadState) {
    Map<String, Object> ack = new LinkedHashMap<>();
    ack.put("erasure_id", erasureId);
    ack.put("tenant", tenant);
    ack.put("user_id", userId);
    ack.put("owner", owner);
    ack.put("erased", "state");
    ack.put("had_state", hadState);
    return ack;
  }
}
