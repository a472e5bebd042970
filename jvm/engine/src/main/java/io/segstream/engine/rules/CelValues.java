package io.segstream.engine.rules;

import com.google.common.primitives.UnsignedLong;
import dev.cel.common.values.NullValue;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Java values (stats, event values as decoded from JSON) -> CEL-Java values, as the Python `cel`
 * package converts Python values: int in int64 -> int, in [2^63, 2^64) -> uint, other ints -> double;
 * null -> CEL null; lists and maps element-wise. */
final class CelValues {
  private CelValues() {}

  private static final BigInteger I64_MIN = BigInteger.valueOf(Long.MIN_VALUE);
  private static final BigInteger I64_MAX = BigInteger.valueOf(Long.MAX_VALUE);
  private static final BigInteger U64_LIMIT = BigInteger.ONE.shiftLeft(64);

  static Object toCel(Object v) {
    if (v == null) return NullValue.NULL_VALUE;
    if (v instanceof Long || v instanceof String || v instanceof Boolean || v instanceof Double) return v;
    if (v instanceof Integer || v instanceof Short || v instanceof Byte) return ((Number) v).longValue();
    if (v instanceof Float) return ((Float) v).doubleValue();
    if (v instanceof BigInteger) {
      BigInteger b = (BigInteger) v;
      if (b.compareTo(I64_MIN) >= 0 && b.compareTo(I64_MAX) <= 0) return b.longValue();
      if (b.signum() > 0 && b.compareTo(U64_LIMIT) < 0) return UnsignedLong.valueOf(b);
      return b.doubleValue();
    }
    if (v instanceof Number) return ((Number) v).doubleValue();  // BigDecimal and others
    if (v instanceof List) {
      List<Object> out = new ArrayList<>(((List<?>) v).size());
      for (Object x : (List<?>) v) out.add(toCel(x));
      return out;
    }
    if (v instanceof Map) {
      Map<Object, Object> out = new LinkedHashMap<>();
      for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) out.put(toCel(e.getKey()), toCel(e.getValue()));
      return out;
    }
    return v;
  }
}
