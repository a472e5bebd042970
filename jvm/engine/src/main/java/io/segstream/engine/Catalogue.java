package io.segstream.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * The stat catalogue (conf/stats.yaml, passed as JSON): operators/catalogue.py, with the same
 * validation (messages modelled on the pydantic ones: {@code stats[3] (spend_7d).window: ...}), the
 * same defaults and the same 32-bit fingerprint per stat (BLAKE2b-4 of Python's
 * {@code json.dumps(model_dump(), sort_keys=True, separators=(",", ":"))}).
 */
public final class Catalogue {
  public static final long MS = 1, S = 1_000, M = 60_000, H = 3_600_000, D = 86_400_000;
  public static final long DEFAULT_GAP_MS = 30 * M;
  public static final long FINE_RESOLUTION_MS = M;
  public static final long COARSE_RESOLUTION_MS = H;
  public static final int MAX_BUCKETS = 10_000;
  public static final List<String> AGGS = List.of(
      "count", "sum", "avg", "min", "max", "first", "last", "distinct", "first_seen", "last_seen", "sessions");
  static final Set<String> NUMERIC_AGGS = Set.of("sum", "avg", "min", "max");
  static final Set<String> FIELD_AGGS = Set.of("sum", "avg", "min", "max", "first", "last", "distinct");
  static final Set<String> WINDOWED_AGGS = Set.of("count", "sum", "avg", "min", "max", "distinct");
  private static final Pattern IDENTIFIER = Pattern.compile("[A-Za-z_][A-Za-z0-9_]*");
  private static final Set<String> RESERVED = Set.of((
      "true false null in as break const continue else for function if import let loop package "
      + "namespace return var void while event").split(" "));
  private static final Set<String> TOP_KEYS = Set.of("stats", "expire_after", "dedup_events", "dedup_horizon");
  private static final Set<String> STAT_KEYS = Set.of("name", "agg", "event", "field", "window", "resolution", "gap");

  /** One stat after defaults; durations in ms, absent values null. */
  public record Stat(String name, String agg, String event, String field, Long window, Long resolution, Long gap) {
    /** The Python fingerprint: canonical JSON of the definition, BLAKE2b with a 4-byte digest, big-endian. */
    public int fingerprint() {
      StringBuilder sb = new StringBuilder("{\"agg\":");
      pyString(sb, agg);
      sb.append(",\"event\":");
      pyString(sb, event);
      sb.append(",\"field\":");
      pyString(sb, field);
      sb.append(",\"gap\":").append(gap);
      sb.append(",\"name\":");
      pyString(sb, name);
      sb.append(",\"resolution\":").append(resolution);
      sb.append(",\"window\":").append(window).append('}');
      byte[] d = Blake2b.digest(sb.toString().getBytes(StandardCharsets.UTF_8), 4);
      return ((d[0] & 0xff) << 24) | ((d[1] & 0xff) << 16) | ((d[2] & 0xff) << 8) | (d[3] & 0xff);
    }
  }

  private final List<Stat> stats;
  private final List<String> names;
  private final Long expireAfter;
  private final Integer dedupEvents;
  private final Long dedupHorizon;

  /** Bounds the receipts a user's state keeps for de-duplication (operators/catalogue.py MAX_DEDUP_EVENTS). */
  public static final int MAX_DEDUP_EVENTS = 1_000;

  private Catalogue(List<Stat> stats, Long expireAfter, Integer dedupEvents, Long dedupHorizon) {
    this.stats = List.copyOf(stats);
    List<String> n = new ArrayList<>();
    for (Stat s : stats) n.add(s.name);
    this.names = Collections.unmodifiableList(n);
    this.expireAfter = expireAfter;
    this.dedupEvents = dedupEvents;
    this.dedupHorizon = dedupHorizon;
  }

  public List<Stat> stats() {
    return stats;
  }

  public List<String> names() {
    return names;
  }

  /** ms, or null: never. */
  public Long expireAfter() {
    return expireAfter;
  }

  /** How many of a user's last event_ids (and receipts) are remembered, or null: no de-duplication. */
  public Integer dedupEvents() {
    return dedupEvents;
  }

  /** ms: an event_id is forgotten once the user's greatest ts moved more than this past it; null: never. */
  public Long dedupHorizon() {
    return dedupHorizon;
  }

  public static Catalogue parseJson(String json) {
    JsonNode root;
    try {
      root = new ObjectMapper().readTree(json);
    } catch (Exception e) {
      throw new CatalogueException("catalogue: not JSON: " + e.getMessage());
    }
    return parse(root);
  }

  /** parse_catalogue: validate a decoded catalogue document ({"stats": [...]}). */
  public static Catalogue parse(JsonNode root) {
    List<String> problems = new ArrayList<>();
    List<Stat> stats = new ArrayList<>();
    boolean statsOk = true;
    if (root == null || !root.isObject()) {
      throw new CatalogueException("invalid stat catalogue:\ncatalogue: Input should be a valid dictionary or instance of Catalogue");
    }
    JsonNode list = root.get("stats");
    if (list == null) {
      problems.add("stats: Field required");
      statsOk = false;
    } else if (!list.isArray()) {
      problems.add("stats: Input should be a valid list");
      statsOk = false;
    } else {
      for (int i = 0; i < list.size(); i++) {
        JsonNode item = list.get(i);
        String where = "stats[" + i + "]";
        if (item.isObject() && item.get("name") != null && item.get("name").isValueNode()) {
          JsonNode nm = item.get("name");
          where += " (" + (nm.isTextual() ? nm.asText() : pyStr(nm)) + ")";
        }
        List<String> mine = new ArrayList<>();
        Stat s = stat(item, where, mine);
        if (s == null) {
          problems.addAll(mine);
          statsOk = false;
        } else {
          stats.add(s);
        }
      }
    }
    Long expireAfter = optionalDuration(root, "expire_after", problems);
    Integer dedupEvents = null;
    JsonNode events = root.get("dedup_events");
    if (events != null && !events.isNull()) {
      // pydantic strict int with ge=1, le=MAX_DEDUP_EVENTS: no bool, float or string.
      if (!events.isIntegralNumber()) {
        problems.add("dedup_events: Input should be a valid integer");
      } else if (events.bigIntegerValue().signum() < 1) {
        problems.add("dedup_events: Input should be greater than or equal to 1");
      } else if (events.bigIntegerValue().compareTo(BigInteger.valueOf(MAX_DEDUP_EVENTS)) > 0) {
        problems.add("dedup_events: Input should be less than or equal to " + MAX_DEDUP_EVENTS);
      } else {
        dedupEvents = events.intValue();
      }
    }
    Long dedupHorizon = optionalDuration(root, "dedup_horizon", problems);
    Iterator<String> keys = root.fieldNames();
    while (keys.hasNext()) {
      String k = keys.next();
      if (!TOP_KEYS.contains(k)) problems.add(k + ": Extra inputs are not permitted");
    }
    if (problems.isEmpty() && statsOk) {
      Set<String> seen = new HashSet<>();
      for (Stat s : stats) {
        if (!seen.add(s.name)) problems.add("catalogue: duplicate stat name '" + s.name + "'");
      }
      if (problems.isEmpty() && dedupHorizon != null && dedupEvents == null) {
        problems.add("catalogue: dedup_horizon needs dedup_events");
      }
      if (!problems.isEmpty()) problems = List.of(problems.get(0));
    }
    if (!problems.isEmpty()) throw new CatalogueException("invalid stat catalogue:\n" + String.join("\n", problems));
    return new Catalogue(stats, expireAfter, dedupEvents, dedupHorizon);
  }

  /** A top-level duration: null when absent or null; a problem added when invalid. */
  private static Long optionalDuration(JsonNode root, String key, List<String> problems) {
    JsonNode node = root.get(key);
    if (node == null || node.isNull()) return null;
    try {
      return parseDuration(node);
    } catch (IllegalArgumentException e) {
      problems.add(key + ": " + e.getMessage());
      return null;
    }
  }

  private static Stat stat(JsonNode item, String where, List<String> problems) {
    if (!item.isObject()) {
      problems.add(where + ": Input should be a valid dictionary or instance of StatSpec");
      return null;
    }
    String name = null, agg = null, event = null, field = null;
    Long window = null, resolution = null, gap = null;
    JsonNode n = item.get("name");
    if (n == null) problems.add(where + ".name: Field required");
    else if (!n.isTextual()) problems.add(where + ".name: Input should be a valid string");
    else if (!IDENTIFIER.matcher(n.asText()).matches()) {
      problems.add(where + ".name: name " + pyRepr(n.asText())
          + " is not a CEL identifier (letters, digits, _; not starting with a digit)");
    } else if (RESERVED.contains(n.asText())) {
      problems.add(where + ".name: name " + pyRepr(n.asText()) + " is reserved (a CEL keyword or `event`)");
    } else name = n.asText();
    JsonNode a = item.get("agg");
    if (a == null) problems.add(where + ".agg: Field required");
    else if (!a.isTextual() || !AGGS.contains(a.asText())) {
      problems.add(where + ".agg: unknown agg " + pyStr(a) + " (one of " + String.join(", ", AGGS) + ")");
    } else agg = a.asText();
    for (String key : List.of("event", "field")) {
      JsonNode v = item.get(key);
      String value = null;
      if (v != null && !v.isNull()) {
        if (!v.isTextual()) problems.add(where + "." + key + ": Input should be a valid string");
        else if (v.asText().isEmpty()) problems.add(where + "." + key + ": must not be empty");
        else value = v.asText();
      }
      if (key.equals("event")) event = value;
      else field = value;
    }
    Long[] durations = new Long[3];
    List<String> dk = List.of("window", "resolution", "gap");
    for (int k = 0; k < 3; k++) {
      JsonNode v = item.get(dk.get(k));
      if (v != null && !v.isNull()) {
        try {
          durations[k] = parseDuration(v);
        } catch (IllegalArgumentException e) {
          problems.add(where + "." + dk.get(k) + ": " + e.getMessage());
        }
      }
    }
    window = durations[0];
    resolution = durations[1];
    gap = durations[2];
    Iterator<String> keys = item.fieldNames();
    while (keys.hasNext()) {
      String k = keys.next();
      if (!STAT_KEYS.contains(k)) problems.add(where + "." + k + ": Extra inputs are not permitted");
    }
    if (!problems.isEmpty()) return null;
    String err = null;
    if (FIELD_AGGS.contains(agg) && field == null) err = "agg '" + agg + "' needs a `field`";
    else if (!FIELD_AGGS.contains(agg) && field != null) err = "agg '" + agg + "' takes no `field`";
    else if (gap != null && !agg.equals("sessions")) err = "`gap` only applies to agg 'sessions'";
    if (err == null && agg.equals("sessions") && gap == null) gap = DEFAULT_GAP_MS;
    if (err == null && window == null) {
      if (resolution != null) err = "`resolution` needs a `window`";
    } else if (err == null) {
      if (!WINDOWED_AGGS.contains(agg)) {
        err = "agg '" + agg + "' cannot have a `window` (only avg, count, distinct, max, min, sum)";
      } else {
        if (resolution == null) resolution = window <= D ? FINE_RESOLUTION_MS : COARSE_RESOLUTION_MS;
        if (window % resolution != 0) {
          err = "window " + formatDuration(window) + " is not a whole multiple of resolution " + formatDuration(resolution);
        } else if (window / resolution > MAX_BUCKETS) {
          err = "window " + formatDuration(window) + " / resolution " + formatDuration(resolution) + " is "
              + (window / resolution) + " buckets, over the limit of " + MAX_BUCKETS;
        }
      }
    }
    if (err != null) {
      problems.add(where + ": " + err);
      return null;
    }
    return new Stat(name, agg, event, field, window, resolution, gap);
  }

  /** parse_duration: '500ms' | '90s' | '30m' | '1h' | '1d' -> milliseconds (positive). Python's
   * {@code \d} matches any Unicode decimal digit, so does this. */
  public static long parseDuration(JsonNode node) {
    if (!node.isTextual()) {
      throw new IllegalArgumentException("duration must be a string such as '30m', got " + pyStr(node));
    }
    return parseDuration(node.asText());
  }

  public static long parseDuration(String raw) {
    String text = raw.strip();
    int i = 0;
    StringBuilder digits = new StringBuilder();
    while (i < text.length()) {
      int cp = text.codePointAt(i);
      if (Character.getType(cp) != Character.DECIMAL_DIGIT_NUMBER) break;
      digits.append((char) ('0' + Character.digit(cp, 10)));
      i += Character.charCount(cp);
    }
    String unit = text.substring(i);
    long per = switch (unit) {
      case "ms" -> MS;
      case "s" -> S;
      case "m" -> M;
      case "h" -> H;
      case "d" -> D;
      default -> -1;
    };
    if (digits.length() == 0 || per < 0) {
      throw new IllegalArgumentException("bad duration " + pyRepr(raw)
          + ": expected a whole number and a unit ms, s, m, h or d (e.g. '30m')");
    }
    BigInteger ms = new BigInteger(digits.toString()).multiply(BigInteger.valueOf(per));
    if (ms.signum() == 0) throw new IllegalArgumentException("duration " + pyRepr(raw) + " must be greater than zero");
    // Python holds any size; the JVM engine refuses what does not fit in a long (ms over 292 million years).
    if (ms.bitLength() > 62) throw new IllegalArgumentException("duration " + pyRepr(raw) + " is too long");
    return ms.longValue();
  }

  public static String formatDuration(long ms) {
    for (Map.Entry<String, Long> u : List.of(Map.entry("d", D), Map.entry("h", H), Map.entry("m", M), Map.entry("s", S))) {
      if (ms % u.getValue() == 0) return (ms / u.getValue()) + u.getKey();
    }
    return ms + "ms";
  }

  /** Python json.dumps of a str or None (ensure_ascii=True). */
  static void pyString(StringBuilder sb, String s) {
    if (s == null) {
      sb.append("null");
      return;
    }
    sb.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> sb.append("\\\"");
        case '\\' -> sb.append("\\\\");
        case '\n' -> sb.append("\\n");
        case '\r' -> sb.append("\\r");
        case '\t' -> sb.append("\\t");
        case '\b' -> sb.append("\\b");
        case '\f' -> sb.append("\\f");
        default -> {
          if (c < 0x20 || c > 0x7e) sb.append(String.format("\\u%04x", (int) c));
          else sb.append(c);
        }
      }
    }
    sb.append('"');
  }

  /** Python repr of a str (simplified: single quotes unless the text holds one). */
  static String pyRepr(String s) {
    if (s.indexOf('\'') >= 0 && s.indexOf('"') < 0) return "\"" + s + "\"";
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'";
  }

  private static String pyStr(JsonNode v) {
    if (v.isTextual()) return pyRepr(v.asText());
    if (v.isNull()) return "None";
    if (v.isBoolean()) return v.asBoolean() ? "True" : "False";
    return v.toString();
  }
}
