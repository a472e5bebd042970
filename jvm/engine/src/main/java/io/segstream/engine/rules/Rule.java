package io.segstream.engine.rules;

import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * One rule as the pydantic model {@code Rule} of operators/rules.py accepts it: {@code id} (1..200
 * characters), {@code tenant} (absent, null or 1+ characters), {@code description}, {@code when}
 * (1+ characters); strict strings, no other field. Lengths count code points, as Python's len().
 */
public record Rule(String id, String tenant, String description, String when) {
  static final List<String> FIELDS = List.of("id", "tenant", "description", "when");

  /** Like Python's json.loads: NaN/Infinity accepted, trailing data refused, the last duplicate key wins. */
  static final ObjectMapper JSON = JsonMapper.builder()
      .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
      .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
      .build();

  /** The JSON value of a rules-topic record -> the parsed object; RuleError as rules.py _decode. */
  public static JsonNode decode(byte[] raw) throws RuleError {
    String text;
    try {
      text = StandardCharsets.UTF_8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(raw)).toString();
    } catch (CharacterCodingException e) {
      throw new RuleError("rule is not UTF-8");
    }
    return decode(text);
  }

  public static JsonNode decode(String text) throws RuleError {
    if (text.startsWith("\ufeff")) {
      throw new RuleError("rule is not JSON: Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)");
    }
    JsonNode node;
    try {
      nonNumericLikePython(text);
      node = JSON.readTree(text);
    } catch (Exception e) {  // the detail is Jackson's, not Python's
      String m = String.valueOf(e.getMessage());
      int nl = m.indexOf('\n');
      throw new RuleError("rule is not JSON: " + (nl >= 0 ? m.substring(0, nl) : m));
    }
    if (node == null || node.isMissingNode()) {
      throw new RuleError("rule is not JSON: Expecting value: line 1 column 1 (char 0)");
    }
    if (!node.isObject()) {
      throw new RuleError("rule must be a JSON object, got " + pythonType(node));
    }
    return node;
  }

  /** Python's json accepts exactly NaN, Infinity and -Infinity; Jackson's option a few more spellings. */
  private static void nonNumericLikePython(String text) throws java.io.IOException {
    try (com.fasterxml.jackson.core.JsonParser p = JSON.createParser(text)) {
      for (com.fasterxml.jackson.core.JsonToken t = p.nextToken(); t != null; t = p.nextToken()) {
        if (t == com.fasterxml.jackson.core.JsonToken.VALUE_NUMBER_FLOAT && p.isNaN()
            && !java.util.Set.of("NaN", "Infinity", "-Infinity").contains(p.getText())) {
          throw new com.fasterxml.jackson.core.JsonParseException(p, "Non-standard token '" + p.getText() + "'");
        }
      }
    }
  }

  /** Python's type name of what json.loads makes of the node. */
  static String pythonType(JsonNode node) {
    if (node.isArray()) return "list";
    if (node.isTextual()) return "str";
    if (node.isBoolean()) return "bool";
    if (node.isNull()) return "NoneType";
    if (node.isIntegralNumber()) return "int";
    if (node.isNumber()) return "float";
    if (node.isObject()) return "dict";
    return node.getNodeType().toString();
  }

  /** Validate a decoded object like Rule.model_validate; the reason joins pydantic's errors with "; ". */
  public static Rule validate(JsonNode obj) throws RuleError {
    List<String> errors = new ArrayList<>();
    String id = string(obj, "id", false, 1, 200, errors);
    String tenant = string(obj, "tenant", true, 1, Integer.MAX_VALUE, errors);
    String description = string(obj, "description", false, 0, Integer.MAX_VALUE, errors);
    String when = string(obj, "when", false, 1, Integer.MAX_VALUE, errors);
    for (Iterator<Map.Entry<String, JsonNode>> it = obj.fields(); it.hasNext(); ) {
      String key = it.next().getKey();
      if (!FIELDS.contains(key)) errors.add("`" + key + "`: Extra inputs are not permitted");
    }
    if (!errors.isEmpty()) throw new RuleError(String.join("; ", errors));
    return new Rule(id, tenant, description, when);
  }

  private static String string(JsonNode obj, String field, boolean optional, int min, int max, List<String> errors) {
    JsonNode v = obj.get(field);
    if (v == null || (optional && v.isNull())) {
      if (!optional) errors.add("`" + field + "`: Field required");
      return null;
    }
    if (!v.isTextual()) {
      errors.add("`" + field + "`: Input should be a valid string");
      return null;
    }
    String s = v.textValue();
    if (hasLoneSurrogate(s)) {
      errors.add("`" + field + "`: Input should be a valid string, unable to parse raw data as a unicode string");
      return null;
    }
    int n = s.codePointCount(0, s.length());
    if (n < min) {
      errors.add("`" + field + "`: String should have at least " + min + " character" + (min == 1 ? "" : "s"));
      return null;
    }
    if (n > max) {
      errors.add("`" + field + "`: String should have at most " + max + " character" + (max == 1 ? "" : "s"));
      return null;
    }
    return s;
  }

  static boolean hasLoneSurrogate(String s) {
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (Character.isHighSurrogate(c)) {
        if (i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) i++;
        else return true;
      } else if (Character.isLowSurrogate(c)) {
        return true;
      }
    }
    return false;
  }

  /** Python's repr of the id, as in the reasons "rule 'x': ...". */
  String reprId() {
    return PyFormat.repr(id);
  }
}
