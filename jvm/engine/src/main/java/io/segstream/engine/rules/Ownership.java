package io.segstream.engine.rules;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Who wrote a record: the {@code segstream-signature} header of rule records and erase commands,
 * {@code v1:<64 hex of HMAC-SHA256>:<owner>} (operators/ownership.py: the same message, the same
 * reasons; docs/security.md, "Rule ownership"). The HMAC is over the purpose, the record key, the
 * owner and the value, each prefixed with its length (4 bytes big-endian). Any accepted key
 * verifies; the first signs. Owner: the tenant the writer acts for, empty for an operator.
 */
public final class Ownership {
  private Ownership() {}

  public static final String HEADER = "segstream-signature";
  public static final String RULE = "rule";
  public static final String ERASE = "erase";
  public static final String NO_SIGNATURE = "no signature (header " + HEADER + ")";
  public static final String MALFORMED = "malformed signature (header " + HEADER + ": v1:<64 hex>:<owner>)";
  public static final String MISMATCH = "signature matches no accepted key";

  /** The owner of a verified record, or the reason it is refused (exactly one is non-null). */
  public record Verdict(String owner, String reason) {}

  /** The header value for a record, signed with the first key. */
  public static byte[] sign(List<String> keys, String purpose, byte[] key, String owner, byte[] value) {
    return ("v1:" + mac(keys.get(0), purpose, key, owner, value) + ":" + owner).getBytes(StandardCharsets.UTF_8);
  }

  public static Verdict verify(List<String> keys, String purpose, byte[] key, byte[] value, byte[] header) {
    if (header == null || header.length == 0) return new Verdict(null, NO_SIGNATURE);
    String text;
    try {
      text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(header)).toString();
    } catch (CharacterCodingException e) {
      return new Verdict(null, MALFORMED);
    }
    int first = text.indexOf(':');
    int second = first < 0 ? -1 : text.indexOf(':', first + 1);
    if (second < 0 || !text.substring(0, first).equals("v1")) return new Verdict(null, MALFORMED);
    String mac = text.substring(first + 1, second);
    if (mac.length() != 64 || !mac.chars().allMatch(c -> (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return new Verdict(null, MALFORMED);
    }
    String owner = text.substring(second + 1);
    byte[] presented = mac.getBytes(StandardCharsets.US_ASCII);
    for (String secret : keys) {
      byte[] expected = mac(secret, purpose, key, owner, value).getBytes(StandardCharsets.US_ASCII);
      if (MessageDigest.isEqual(presented, expected)) return new Verdict(owner, null);  // constant time
    }
    return new Verdict(null, MISMATCH);
  }

  /** Null if {@code owner} may write rule id {@code ruleId}, else the reason. */
  public static String ruleScope(String owner, String ruleId) {
    if (!owner.isEmpty() && !ruleId.startsWith(owner + ":")) {
      return "rule id " + PyFormat.repr(ruleId) + " is outside its owner's scope " + PyFormat.repr(owner + ":");
    }
    return null;
  }

  /** Null if a rule of {@code owner} may name {@code tenant} (null: every tenant), else the reason. */
  public static String ruleTenant(String owner, String ruleId, String tenant) {
    if (!owner.isEmpty() && !owner.equals(tenant)) {
      return "rule " + PyFormat.repr(ruleId) + ": tenant " + (tenant == null ? "None" : PyFormat.repr(tenant))
          + " is not its owner's " + PyFormat.repr(owner);
    }
    return null;
  }

  /** Null if {@code owner} may erase users of {@code tenant}, else the reason. */
  public static String eraseScope(String owner, String tenant) {
    if (!owner.isEmpty() && !owner.equals(tenant)) {
      return "tenant " + PyFormat.repr(tenant) + " is not its owner's " + PyFormat.repr(owner);
    }
    return null;
  }

  static String mac(String secret, String purpose, byte[] key, String owner, byte[] value) {
    try {
      Mac hmac = Mac.getInstance("HmacSHA256");
      hmac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
      for (byte[] part : new byte[][] {purpose.getBytes(StandardCharsets.UTF_8), key == null ? new byte[0] : key,
          owner.getBytes(StandardCharsets.UTF_8), value == null ? new byte[0] : value}) {
        hmac.update(ByteBuffer.allocate(4).putInt(part.length).array());
        hmac.update(part);
      }
      return HexFormat.of().formatHex(hmac.doFinal());
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
  }
}
