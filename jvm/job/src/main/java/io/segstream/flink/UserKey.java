package io.segstream.flink;

import org.apache.flink.api.java.functions.KeySelector;

/**
 * The keyed-state key of a user: {@code <n>:<tenant><user_id>}, n = the tenant's length in code
 * points (Python: {@code f"{len(tenant)}:{tenant}{user_id}"}). Unlike the NUL-separated key of the
 * Python job ({@code tenant \0 user_id}), no two (tenant, user_id) pairs share a key: with NUL,
 * ("acme", "x\0y") and ("acme\0x", "y") did.
 */
public final class UserKey {
  private UserKey() {}

  public static String of(String tenant, String userId) {
    return tenant.codePointCount(0, tenant.length()) + ":" + tenant + userId;
  }

  /** {tenant, user_id} of a key made by {@link #of}. */
  public static String[] split(String key) {
    int colon = key.indexOf(':');
    int n = Integer.parseInt(key.substring(0, colon));
    int end = key.offsetByCodePoints(colon + 1, n);
    return new String[] {key.substring(colon + 1, end), key.substring(end)};
  }

  /** key_by for the parsed events. */
  public static final class Selector implements KeySelector<ParsedEvent, String> {
    private static final long serialVersionUID = 1L;

    @Override
    public String getKey(ParsedEvent event) {
      return event.key;
    }
  }
}
