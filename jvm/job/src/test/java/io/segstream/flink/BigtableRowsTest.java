package io.segstream.flink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.google.bigtable.v2.MutateRowsRequest;
import com.google.bigtable.v2.Mutation;
import com.google.cloud.bigtable.data.v2.models.RowMutationEntry;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Rows built in Java equal those of the Python sink (fixtures: src/test/python/gen_bigtable_fixtures.py). */
class BigtableRowsTest {
  private static final ObjectMapper MAPPER = new ObjectMapper();

  static List<JsonNode> fixtures() throws Exception {
    List<JsonNode> cases = new ArrayList<>();
    try (BufferedReader in = new BufferedReader(new InputStreamReader(
        BigtableRowsTest.class.getResourceAsStream("/bigtable/rows.jsonl"), StandardCharsets.UTF_8))) {
      for (String line = in.readLine(); line != null; line = in.readLine()) cases.add(MAPPER.readTree(line));
    }
    return cases;
  }

  @Test
  void rowsEqualThePythonSinks() throws Exception {
    List<JsonNode> cases = fixtures();
    assertTrue(cases.size() >= 10);
    int errors = 0;
    for (JsonNode c : cases) {
      String eventJson = c.get("event_json").asText();
      String evaluationJson = c.get("evaluation_json").asText();
      int width = c.get("width").asInt();
      if (c.has("error")) {
        errors++;
        BigtableRows.InvalidRow e = assertThrows(BigtableRows.InvalidRow.class,
            () -> BigtableRows.of(eventJson, evaluationJson, width), eventJson);
        assertEquals(c.get("error").asText(), e.getMessage());
        continue;
      }
      BigtableRows rows = BigtableRows.of(eventJson, evaluationJson, width);
      assertRow(c.get("event"), rows.eventEntry(), eventJson);
      assertRow(c.get("profile"), rows.profileEntry(), evaluationJson);
    }
    assertTrue(errors >= 2);
  }

  private static void assertRow(JsonNode expected, RowMutationEntry entry, String what) {
    MutateRowsRequest.Entry proto = entry.toProto();
    assertArrayEquals(b64(expected.get("key_b64")), proto.getRowKey().toByteArray(), what);
    JsonNode cells = expected.get("cells");
    assertEquals(cells.size(), proto.getMutationsCount(), what);
    for (int i = 0; i < cells.size(); i++) {
      JsonNode cell = cells.get(i);
      Mutation.SetCell set = proto.getMutations(i).getSetCell();
      assertEquals(cell.get(0).asText(), set.getFamilyName(), what);
      assertArrayEquals(b64(cell.get(1)), set.getColumnQualifier().toByteArray(), what);
      assertArrayEquals(b64(cell.get(2)), set.getValue().toByteArray(), what + " " + set.getColumnQualifier().toStringUtf8());
      assertEquals(cell.get(3).asLong(), set.getTimestampMicros(), what);
    }
  }

  private static byte[] b64(JsonNode node) {
    return Base64.getDecoder().decode(node.asText());
  }

  @Test
  void keysEscapeAndReverse() throws Exception {
    assertEquals("a%5Fb%255F", new String(BigtableRows.escape("a_b%5F"), StandardCharsets.UTF_8));
    assertEquals("9223372036854775807", BigtableRows.reverseTs(0));
    assertEquals("0000000000000000000", BigtableRows.reverseTs(Long.MAX_VALUE));
    assertThrows(BigtableRows.InvalidRow.class, () -> BigtableRows.reverseTs(-1));
    assertThrows(BigtableRows.InvalidRow.class, () -> BigtableRows.micros(BigtableRows.MAX_CELL_MS + 1, "seq"));
    assertThrows(IllegalArgumentException.class, () -> BigtableRows.hashPrefix("t", "u", 65));
  }
}
