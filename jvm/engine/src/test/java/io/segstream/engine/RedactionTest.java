package io.segstream.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The PII policy (operators/pii.py's twin); the hashes below are Python's for key "test-key". */
class RedactionTest {
  static final String KEY_HEX = HexFormat.of().formatHex("test-key".getBytes(StandardCharsets.UTF_8));
  static final Redaction POLICY = Redaction.fromJson("{\"key_hex\":\"" + KEY_HEX + "\","
      + "\"default\":{\"values.email\":\"hash\"},"
      + "\"tenants\":{\"open\":{},\"acme\":{\"values.email\":\"drop\",\"values.plan\":\"keep\",\"values.*\":\"hash\"}}}");

  static Event parse(String json) throws InvalidEvent {
    return Events.parse(json.getBytes(StandardCharsets.UTF_8));
  }

  @Test
  void hashesAreTheHmacOfTheValuesJsonAsPythonComputesIt() {
    Map<Object, String> python = new LinkedHashMap<>();
    python.put("a@b.c", "0704367f328398f0e46fbcf1b14cbabe2ed89f8d82180947d0c7e783d2c37d4b");
    python.put(42L, "29a6eb6f6fbb448754e3d58fd69b4abf9dc0e7e82ede86a72cb5162a5aeaa648");
    python.put(4.5, "4a67afd422220cc734e1d2995567cd95c5e7227f638a121ac7621c6a5859463f");
    python.put(true, "d0ce4dcd4c713596c357aefc1b582d84f74d2f89f7cff1dd26fd6adc687b80b6");
    python.put("é", "5964a655919b09f47d26a832b5c2c5c498937ebcbe79c61543839bb89a669a19");
    python.forEach((value, hash) ->
        assertEquals(hash, POLICY.hash(Json.render(value).getBytes(StandardCharsets.UTF_8)), value.toString()));
    assertEquals("07f8e04469d9c53389fa1f531522a3ec7dad1d3b1826d1e71ca2b278a335d60d",
        POLICY.hash("null".getBytes(StandardCharsets.UTF_8)));
  }

  @Test
  void eachTenantGetsItsPolicyAndTheRestTheDefault() throws InvalidEvent {
    Event acme = parse("{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1,\"name\":\"n\",\"tenant\":\"acme\","
        + "\"values\":{\"email\":\"a@b.c\",\"plan\":\"pro\",\"amount\":42}}");
    Redaction.Redacted r = POLICY.redact(acme);
    assertEquals(Map.of("plan", "pro", "amount", "29a6eb6f6fbb448754e3d58fd69b4abf9dc0e7e82ede86a72cb5162a5aeaa648"),
        r.event().values());
    assertEquals(Json.render(r.event().toJson()), new String(r.json(), StandardCharsets.UTF_8));
    assertEquals(acme.userId(), r.event().userId());
    assertEquals(r.event(), Events.parse(r.json()), "the redacted JSON is a valid event, the same");

    Event other = parse("{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1,\"name\":\"n\",\"tenant\":\"zeta\","
        + "\"values\":{\"email\":\"a@b.c\",\"amount\":42}}");
    assertEquals(Map.of("email", "0704367f328398f0e46fbcf1b14cbabe2ed89f8d82180947d0c7e783d2c37d4b", "amount", 42L),
        POLICY.redact(other).event().values());
    Event open = parse("{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1,\"name\":\"n\",\"tenant\":\"open\","
        + "\"values\":{\"email\":\"a@b.c\"}}");
    assertNull(POLICY.redact(open), "a tenant whose policy keeps everything goes on untouched");
  }

  @Test
  void aRedactedEventOverTheContractsSizeIsRefused() throws InvalidEvent {
    StringBuilder values = new StringBuilder();
    for (int i = 0; i < 3000; i++) values.append(i == 0 ? "" : ",").append("\"v").append(i).append("\":1");
    Event big = parse("{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1,\"name\":\"n\",\"tenant\":\"acme\",\"values\":{"
        + values + "}}");
    InvalidEvent e = assertThrows(InvalidEvent.class, () -> POLICY.redact(big));
    assertTrue(e.reason().matches("record is \\d+ bytes after redaction, over the 65536 byte limit"), e.reason());
  }

  @Test
  void deadLettersOfPolicedRecordsKeepTheHmacLengthAndRedactedFields() {
    byte[] raw = "{\"tenant\":\"acme\",\"user_id\":\"u\",\"ts\":\"x\",\"values\":{\"email\":\"a@b.c\",\"plan\":\"pro\",\"n\":[1]}}"
        .getBytes(StandardCharsets.UTF_8);
    Map<String, Object> f = POLICY.deadLetterFields(raw);
    assertNotNull(f);
    assertEquals((long) raw.length, f.get("original_length"));
    assertEquals(POLICY.hash(raw), f.get("original_hmac"));
    assertEquals(Map.of("tenant", "acme", "user_id", "u", "values", Map.of("plan", "pro")), f.get("redacted"));
    assertFalse(Json.render(f).contains("a@b.c"));

    assertNull(POLICY.deadLetterFields("{\"tenant\":\"open\",\"values\":{\"email\":\"a@b.c\"}}".getBytes(StandardCharsets.UTF_8)),
        "an unpoliced tenant's dead letter keeps its original");
    Map<String, Object> unreadable = POLICY.deadLetterFields("not json a@b.c".getBytes(StandardCharsets.UTF_8));
    assertEquals(Map.of("original_length", 14L, "original_hmac",
        POLICY.hash("not json a@b.c".getBytes(StandardCharsets.UTF_8))), unreadable, "unreadable: the default policy");
    Map<String, Object> tombstone = POLICY.deadLetterFields(null);
    assertEquals(0L, tombstone.get("original_length"));
  }

  @Test
  void noPolicyAndKeepOnlyPoliciesAreInactive() throws InvalidEvent {
    assertNull(Redaction.fromJson(""));
    assertFalse(Redaction.fromJson("{\"key_hex\":\"00\",\"default\":{\"values.a\":\"keep\"},\"tenants\":{}}").active());
    assertTrue(POLICY.active());
    assertThrows(IllegalArgumentException.class,
        () -> Redaction.fromJson("{\"key_hex\":\"00\",\"default\":{\"user_id\":\"hash\"}}"));
    Event e = new Event("e", "open", "u", 1, "n", Map.of());
    assertNull(POLICY.redact(e));
  }

}
