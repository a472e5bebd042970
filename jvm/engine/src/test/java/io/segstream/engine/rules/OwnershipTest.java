package io.segstream.engine.rules;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.segstream.engine.Erasure;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Signatures and owner scopes (operators/ownership.py, the same vectors in tests/operators/test_ownership.py). */
class OwnershipTest {
  static final List<String> KEYS = List.of("k-new", "k-old");

  static byte[] b(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  @Test
  void signaturesArePythonsByteForByte() {
    // Printed by operators.ownership.sign with the same inputs.
    assertEquals("v1:f2ecc3d4ec588109fa9de32c26c6a90c1b9726aacfdb588a811605147227af6c:acme",
        new String(Ownership.sign(KEYS, Ownership.RULE, b("acme:r"), "acme", b("{\"id\":\"acme:r\"}")),
            StandardCharsets.UTF_8));
    assertEquals("v1:248bcba0318512788fbfc72264b92d7531de4944b1aacbdfb283daf774410583:",
        new String(Ownership.sign(List.of("k-new"), Ownership.ERASE, b("u"), "",
            Erasure.encode("x1", "acme", "u")), StandardCharsets.UTF_8));
  }

  @Test
  void onlyTheSignedRecordVerifiesWithAnAcceptedKey() {
    byte[] header = Ownership.sign(KEYS, Ownership.RULE, b("acme:r"), "acme", b("v"));
    assertEquals(new Ownership.Verdict("acme", null), Ownership.verify(KEYS, Ownership.RULE, b("acme:r"), b("v"), header));
    assertEquals("acme", Ownership.verify(List.of("k-old", "k-new"), Ownership.RULE, b("acme:r"), b("v"), header).owner());
    assertEquals(Ownership.MISMATCH, Ownership.verify(List.of("k-old"), Ownership.RULE, b("acme:r"), b("v"), header).reason());
    assertEquals(Ownership.MISMATCH, Ownership.verify(KEYS, Ownership.ERASE, b("acme:r"), b("v"), header).reason());
    assertEquals(Ownership.MISMATCH, Ownership.verify(KEYS, Ownership.RULE, b("acme:s"), b("v"), header).reason());
    assertEquals(Ownership.MISMATCH, Ownership.verify(KEYS, Ownership.RULE, b("acme:r"), b("w"), header).reason());
    byte[] otherOwner = b(new String(header, StandardCharsets.UTF_8).replace(":acme", ":globex"));
    assertEquals(Ownership.MISMATCH, Ownership.verify(KEYS, Ownership.RULE, b("acme:r"), b("v"), otherOwner).reason());
    assertEquals(Ownership.NO_SIGNATURE, Ownership.verify(KEYS, Ownership.RULE, b("r"), b("v"), null).reason());
    for (String bad : List.of("x", "v1:", "v2:" + "0".repeat(64) + ":", "v1:" + "0".repeat(63) + ":",
        "v1:" + "A".repeat(64) + ":", "v1:" + "0".repeat(64))) {
      assertEquals(Ownership.MALFORMED, Ownership.verify(KEYS, Ownership.RULE, b("r"), b("v"), b(bad)).reason(), bad);
    }
    assertEquals(Ownership.MALFORMED, Ownership.verify(KEYS, Ownership.RULE, b("r"), b("v"), new byte[] {(byte) 0xff})
        .reason());
  }

  @Test
  void aTenantWritesOnlyItsOwnRules() throws Exception {
    RuleSet rules = new RuleSet(List.of("visits"));
    String mine = "{\"id\":\"acme:r\",\"tenant\":\"acme\",\"description\":\"d\",\"when\":\"visits > 1\"}";
    String every = "{\"id\":\"r\",\"description\":\"d\",\"when\":\"visits > 1\"}";
    String theirs = "{\"id\":\"acme:t\",\"tenant\":\"globex\",\"description\":\"d\",\"when\":\"visits > 1\"}";
    assertEquals("rule id 'r' is outside its owner's scope 'acme:'",
        rules.applySignedChange("r", b(every), Ownership.sign(KEYS, Ownership.RULE, b("r"), "acme", b(every)), KEYS));
    assertEquals("rule 'acme:t': tenant 'globex' is not its owner's 'acme'", rules.applySignedChange("acme:t",
        b(theirs), Ownership.sign(KEYS, Ownership.RULE, b("acme:t"), "acme", b(theirs)), KEYS));
    assertEquals(Ownership.NO_SIGNATURE, rules.applySignedChange("r", b(every), null, KEYS));
    assertEquals(0, rules.size());
    assertNull(rules.applySignedChange("acme:r", b(mine),
        Ownership.sign(KEYS, Ownership.RULE, b("acme:r"), "acme", b(mine)), KEYS));
    assertNull(rules.applySignedChange("r", b(every), Ownership.sign(KEYS, Ownership.RULE, b("r"), "", b(every)), KEYS));
    assertEquals(2, rules.size());
    assertNull(rules.applySignedChange("acme:r", null, Ownership.sign(KEYS, Ownership.RULE, b("acme:r"), "acme", null),
        KEYS));
    assertEquals(1, rules.size());
  }

  @Test
  void eraseCommandsAreCheckedLikePythons() throws Exception {
    byte[] value = Erasure.encode("x1", "acme", "u");
    Erasure ok = Erasure.parse(value, b("u"), Ownership.sign(KEYS, Ownership.ERASE, b("u"), "acme", value), KEYS);
    assertEquals(new Erasure("x1", "acme", "u", "acme"), ok);
    assertEquals("erase: tenant 'acme' is not its owner's 'globex'", assertThrows(Erasure.Invalid.class,
        () -> Erasure.parse(value, b("u"), Ownership.sign(KEYS, Ownership.ERASE, b("u"), "globex", value), KEYS))
        .getMessage());
    assertEquals("erase: the record key is not the user_id", assertThrows(Erasure.Invalid.class,
        () -> Erasure.parse(value, b("w"), Ownership.sign(KEYS, Ownership.ERASE, b("w"), "", value), KEYS)).getMessage());
    assertEquals("erase: " + Ownership.MISMATCH, assertThrows(Erasure.Invalid.class,
        () -> Erasure.parse(value, b("u"), Ownership.sign(List.of("guessed"), Ownership.ERASE, b("u"), "", value), KEYS))
        .getMessage());
    byte[] extra = b("{\"control\":\"erase\",\"erasure_id\":\"x\",\"tenant\":\"a\",\"user_id\":\"u\",\"more\":1}");
    assertTrue(assertThrows(Erasure.Invalid.class,
        () -> Erasure.parse(extra, b("u"), Ownership.sign(KEYS, Ownership.ERASE, b("u"), "", extra), KEYS))
        .getMessage().startsWith("erase: expected exactly"));
  }
}
