package io.segstream.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.segstream.engine.rules.RuleError;
import io.segstream.engine.rules.RuleSet;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Replays a JSON-lines script through the engine, one output line per result:
 *
 * <pre>
 * in:  {"catalogue": {...} or "json text"}   first: the conf/stats.yaml structure
 *      {"rules": [...]}                        the initial rules
 *      {"event": "raw record value"}           or {"event_b64": "..."} for arbitrary bytes
 *      {"rule_change": {"key": "...", "value": "rule json" or null}}
 *      {"timer": {"tenant": "...", "user_id": "...", "now": 123}}
 *      {"pii": {"key_hex", "default", "tenants"}}   a PII policy ({@link Redaction}) from here on
 *      {"signing_keys": ["..."]}              from now on rule changes must be signed (below)
 *      {"control": {"key": "...", "value": "...", "signature": "..." or null}}   an erase command
 *      {"max_future_skew_ms": 60000}           events.max_future_skew_ms for the events after it
 *      an event line may carry "append_time": ms, the record's append time its ts is judged against
 * out: {"evaluation": {...}}  {"expiry": {...}}  {"dead_letter": "reason"}
 *      {"duplicate": {...}}                    a retried event_id: the receipt it is answered with
 *      {"redacted": {...}}                     under a policy: the event the engine sees, when redacted
 *      {"dead_letter_fields": {...}}           under a policy: what a redacted dead letter keeps
 *      {"erased": {...}}                       an erase command's acknowledgement (its user's state is gone)
 * </pre>
 *
 * <p>With {@code signing_keys}, a {@code rule_change} carries {@code "signature"} (its
 * segstream-signature header, or null) and goes to {@link RuleSet#applySignedChange}.
 *
 * Per-user state lives in a HashMap keyed by (tenant, user_id). Lines are written with
 * {@link Json}, so they compare byte for byte with segstream/replay.py (the Python engine).
 *
 * <p>Rules: the CEL {@link RuleSet} built from the initial rules; {@code rule_change} lines go to
 * {@link RuleSet#applyChange(String, String)}.
 */
public final class Replay {
  static RuleSet rulesFor(Catalogue catalogue, JsonNode initialRules) {
    byte[] rules = (initialRules == null ? "[]" : initialRules.toString()).getBytes(StandardCharsets.UTF_8);
    try {
      return RuleSet.load("replay", rules, catalogue.names());
    } catch (RuleError e) {
      throw new IllegalArgumentException("invalid initial rules: " + e.getMessage(), e);
    }
  }

  private static final ObjectMapper MAPPER = new ObjectMapper();

  private Catalogue catalogue;
  private JsonNode initialRules;
  private RuleSet rules;
  private Evaluator evaluator;
  private final Map<String, byte[]> states = new HashMap<>();
  private Redaction policy;
  /** The accepted signing keys, once a {@code signing_keys} line set them. */
  private java.util.List<String> signingKeys;
  private long maxFutureSkewMs = Events.DEFAULT_MAX_FUTURE_SKEW_MS;
  private final PrintStream out;

  Replay(PrintStream out) {
    this.out = out;
  }

  public static void main(String[] args) throws IOException {
    PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
    Replay replay = new Replay(out);
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String line;
    while ((line = in.readLine()) != null) {
      if (!line.isBlank()) replay.line(line);
    }
    out.flush();
  }

  void line(String line) throws IOException {
    JsonNode cmd = MAPPER.readTree(line);
    if (cmd.has("catalogue")) {
      JsonNode c = cmd.get("catalogue");
      catalogue = c.isTextual() ? Catalogue.parseJson(c.asText()) : Catalogue.parse(c);
      evaluator = null;
    } else if (cmd.has("max_future_skew_ms")) {
      maxFutureSkewMs = cmd.get("max_future_skew_ms").asLong();
    } else if (cmd.has("rules")) {
      initialRules = cmd.get("rules");
      evaluator = null;
    } else if (cmd.has("event") || cmd.has("event_b64")) {
      byte[] raw = cmd.has("event") ? cmd.get("event").asText().getBytes(StandardCharsets.UTF_8)
          : Base64.getDecoder().decode(cmd.get("event_b64").asText());
      Event event;
      try {
        event = Events.parse(raw);
        if (cmd.has("append_time")) Events.checkFutureSkew(event, cmd.get("append_time").asLong(), maxFutureSkewMs);
        Redaction.Redacted redacted = policy == null ? null : policy.redact(event);
        if (redacted != null) {
          event = redacted.event();
          emit("redacted", event.toJson());
        }
      } catch (InvalidEvent e) {
        emit("dead_letter", e.reason());
        Map<String, Object> fields = policy == null ? null : policy.deadLetterFields(raw);
        if (fields != null) emit("dead_letter_fields", fields);
        return;
      }
      String key = event.tenant() + "\0" + event.userId();
      Evaluator.Processed p = evaluator().process(states.get(key), event);
      states.put(key, p.state());
      if (p.expiry() != null) emit("expiry", p.expiry());
      // The rendered JSON as is: for a duplicate it is the receipt kept in the state.
      out.print("{\"" + (p.duplicate() ? "duplicate" : "evaluation") + "\":" + p.json() + "}\n");
    } else if (cmd.has("pii")) {
      policy = Redaction.fromJson(cmd.get("pii").toString());
    } else if (cmd.has("rule_change")) {
      JsonNode change = cmd.get("rule_change");
      JsonNode value = change.get("value");
      evaluator();
      String text = value == null || value.isNull() ? null : value.isTextual() ? value.asText() : value.toString();
      String key = change.get("key").asText();
      String reason = signingKeys == null ? rules.applyChange(key, text)
          : rules.applySignedChange(key, text == null ? null : text.getBytes(StandardCharsets.UTF_8),
              bytes(change.get("signature")), signingKeys);
      if (reason != null) emit("dead_letter", "rule: " + reason);
    } else if (cmd.has("signing_keys")) {
      signingKeys = new java.util.ArrayList<>();
      cmd.get("signing_keys").forEach(k -> signingKeys.add(k.asText()));
    } else if (cmd.has("control")) {
      JsonNode control = cmd.get("control");
      Erasure erasure;
      try {
        erasure = Erasure.parse(bytes(control.get("value")), bytes(control.get("key")), bytes(control.get("signature")),
            signingKeys == null ? java.util.List.of() : signingKeys);
      } catch (Erasure.Invalid e) {
        emit("dead_letter", e.getMessage());
        // A refused control record is a dead letter like any other: redacted by the policy.
        byte[] value = bytes(control.get("value"));
        Map<String, Object> fields = policy == null || value == null ? null : policy.deadLetterFields(value);
        if (fields != null) emit("dead_letter_fields", fields);
        return;
      }
      boolean had = states.remove(erasure.tenant() + "\0" + erasure.userId()) != null;
      emit("erased", erasure.acknowledgement(had));
    } else if (cmd.has("timer")) {
      JsonNode t = cmd.get("timer");
      String tenant = t.get("tenant").asText();
      String userId = t.get("user_id").asText();
      byte[] state = states.get(tenant + "\0" + userId);
      if (state == null) return;
      Evaluator.Expired e = evaluator().expire(state, t.get("now").asLong(), tenant, userId);
      if (e != null) {
        states.put(tenant + "\0" + userId, e.state());
        emit("expiry", e.expiry());
      }
    } else {
      throw new IllegalArgumentException("unknown replay line: " + line);
    }
  }

  private Evaluator evaluator() {
    if (evaluator == null) {
      if (catalogue == null) throw new IllegalStateException("the first line must be {\"catalogue\": ...}");
      if (rules == null) rules = rulesFor(catalogue, initialRules);
      evaluator = new Evaluator(catalogue, rules);
    }
    return evaluator;
  }

  private static byte[] bytes(JsonNode text) {
    return text == null || text.isNull() ? null : text.asText().getBytes(StandardCharsets.UTF_8);
  }

  private void emit(String kind, Object value) {
    Map<String, Object> line = new LinkedHashMap<>();
    line.put(kind, value);
    out.print(Json.render(line));
    out.print('\n');
  }
}
