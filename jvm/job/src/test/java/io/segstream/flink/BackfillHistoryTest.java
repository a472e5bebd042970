package io.segstream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import com.google.protobuf.ByteString;
import org.junit.jupiter.api.Test;

/** The batched read groups rows by user through the key's first three fields. */
class BackfillHistoryTest {
  @Test
  void anEventRowKeyNamesItsUsersPrefix() throws Exception {
    // Ids with the separator and the escape character in them: escaped, so still three fields.
    for (String[] who : new String[][] {{"acme", "u_1"}, {"t%5F", "x%_y"}, {"default", "plain"}}) {
      ByteString event = ByteString.copyFrom(BigtableRows.eventKey(who[0], who[1], 1_700_000_000_000L, "e_1", 4));
      ByteString profile = ByteString.copyFrom(BigtableRows.profileKey(who[0], who[1], 4));
      assertEquals(profile.concat(ByteString.copyFromUtf8("_")), BackfillHistory.userPrefix(event), who[1]);
    }
    assertNull(BackfillHistory.userPrefix(ByteString.copyFromUtf8("abcd_acme")));
  }
}
