package io.segstream.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/** Byte-for-byte comparison with vectors the Python engine computed (src/test/python/generate.py). */
class CrossCheckTest {
  static final ObjectMapper MAPPER = new ObjectMapper();

  static List<String> lines(String name) throws IOException {
    try (InputStream in = CrossCheckTest.class.getResourceAsStream("/crosscheck/" + name)) {
      if (in == null) fail("missing resource " + name + ": run src/test/python/generate.py");
      String text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
      List<String> out = new ArrayList<>();
      for (String l : text.split("\n")) if (!l.isEmpty()) out.add(l);
      return out;
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"small", "many"})
  void replayEqualsPythonEngine(String name) throws IOException {
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    PrintStream out = new PrintStream(buf, false, StandardCharsets.UTF_8);
    Replay replay = new Replay(out);
    for (String line : lines("replay_" + name + ".jsonl")) replay.line(line);
    out.flush();
    List<String> expected = lines("replay_" + name + ".expected.jsonl");
    String[] actual = buf.toString(StandardCharsets.UTF_8).split("\n");
    for (int i = 0; i < Math.min(expected.size(), actual.length); i++) {
      assertEquals(expected.get(i), actual[i], "output line " + (i + 1));
    }
    assertEquals(expected.size(), actual.length, "number of output lines");
  }

  @Test
  void eventsParseLikePython() throws IOException {
    List<String> problems = new ArrayList<>();
    for (String line : lines("events.jsonl")) {
      try {
        checkEvent(line);
      } catch (AssertionError e) {
        problems.add(e.getMessage());
      }
    }
    assertEquals(List.of(), problems);
  }

  private void checkEvent(String line) throws IOException {
    {
      JsonNode row = MAPPER.readTree(line);
      byte[] raw = Base64.getDecoder().decode(row.get("raw_b64").asText());
      String what = new String(raw, 0, Math.min(raw.length, 120), StandardCharsets.UTF_8);
      if (row.has("reason")) {
        try {
          Event e = Events.parse(raw);
          fail("accepted " + what + " as " + e + "; Python: " + row.get("reason").asText());
        } catch (InvalidEvent e) {
          assertEquals(row.get("reason").asText(), e.reason(), what);
        }
      } else {
        Event e;
        try {
          e = Events.parse(raw);
        } catch (InvalidEvent x) {
          fail("refused " + what + ": " + x.reason());
          return;
        }
        JsonNode ev = row.get("event");
        assertEquals(ev.get("event_id").asText(), e.eventId(), what);
        assertEquals(ev.get("tenant").asText(), e.tenant(), what);
        assertEquals(ev.get("user_id").asText(), e.userId(), what);
        assertEquals(ev.get("ts").asLong(), e.ts(), what);
        assertEquals(ev.get("name").asText(), e.name(), what);
        List<String> keys = new ArrayList<>(e.values().keySet());
        assertEquals(ev.get("values").size(), keys.size(), what);
        for (int i = 0; i < keys.size(); i++) {
          JsonNode kv = ev.get("values").get(i);
          assertEquals(kv.get(0).asText(), keys.get(i), what);
          Object v = e.values().get(keys.get(i));
          JsonNode t = kv.get(1);
          if (t.has("bool")) assertEquals(t.get("bool").asBoolean(), v, what);
          else if (t.has("int")) {
            BigInteger big = new BigInteger(t.get("int").asText());
            assertEquals(big.bitLength() <= 63 ? (Object) big.longValue() : (Object) big, v, what);
          } else if (t.has("float")) {
            double d = ByteBuffer.wrap(HexFormat.of().parseHex(t.get("float").asText())).getDouble();
            assertEquals(Double.doubleToRawLongBits(d), Double.doubleToRawLongBits((Double) v), what);
          } else if (t.has("str")) assertEquals(t.get("str").asText(), v, what);
          else assertEquals(null, v, what);
        }
      }
    }
  }

  @Test
  void floatsFormatLikePython() throws IOException {
    int n = 0;
    for (String line : lines("floats.jsonl")) {
      JsonNode row = MAPPER.readTree(line);
      double d = ByteBuffer.wrap(HexFormat.of().parseHex(row.get("bits").asText())).getDouble();
      assertEquals(row.get("json").asText(), Json.render(d), "msgspec JSON of " + row.get("repr"));
      assertEquals(row.get("repr").asText(), PyFloat.repr(d));
      assertEquals(row.get("digest").asText(), HexFormat.of().formatHex(Distinct.digest(d)), "digest of " + row.get("repr"));
      n++;
    }
    assertTrue(n > 5000);
  }

  @Test
  void cataloguesLikePython() throws IOException {
    for (String line : lines("catalogues.jsonl")) {
      JsonNode row = MAPPER.readTree(line);
      JsonNode doc = row.get("doc");
      if (row.has("error")) {
        try {
          Catalogue.parse(doc);
          fail("accepted " + doc + "; Python: " + row.get("error").asText());
        } catch (CatalogueException e) {
          assertEquals(row.get("error").asText(), e.getMessage(), doc.toString());
        }
        continue;
      }
      Catalogue c = Catalogue.parse(doc);
      assertEquals(row.get("names").size(), c.names().size());
      for (int i = 0; i < c.names().size(); i++) {
        Catalogue.Stat s = c.stats().get(i);
        assertEquals(row.get("names").get(i).asText(), s.name());
        assertEquals(row.get("fingerprints").get(i).asLong(), Integer.toUnsignedLong(s.fingerprint()), s.name());
        JsonNode spec = row.get("specs").get(i);
        assertEquals(spec.get("window").isNull() ? null : spec.get("window").asLong(), s.window(), s.name());
        assertEquals(spec.get("resolution").isNull() ? null : spec.get("resolution").asLong(), s.resolution(), s.name());
        assertEquals(spec.get("gap").isNull() ? null : spec.get("gap").asLong(), s.gap(), s.name());
      }
      assertEquals(row.get("expire_after").isNull() ? null : row.get("expire_after").asLong(), c.expireAfter());
      assertEquals(row.get("dedup_events").isNull() ? null : row.get("dedup_events").asInt(), c.dedupEvents());
      assertEquals(row.get("dedup_horizon").isNull() ? null : row.get("dedup_horizon").asLong(), c.dedupHorizon());
    }
  }

  static Map<String, Object> unused() {
    return Map.of();
  }
}
