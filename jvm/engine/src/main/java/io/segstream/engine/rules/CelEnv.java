package io.segstream.engine.rules;

import com.google.common.collect.ImmutableList;
import com.google.common.primitives.UnsignedLong;
import dev.cel.common.CelAbstractSyntaxTree;
import dev.cel.common.CelErrorCode;
import dev.cel.common.CelOptions;
import dev.cel.common.CelValidationException;
import dev.cel.common.ast.CelExpr;
import dev.cel.common.ast.CelExpr.CelComprehension;
import dev.cel.common.values.CelByteString;
import dev.cel.parser.CelParser;
import dev.cel.parser.CelParserFactory;
import dev.cel.parser.CelStandardMacro;
import dev.cel.runtime.CelEvaluationException;
import dev.cel.runtime.CelEvaluationExceptionBuilder;
import dev.cel.runtime.CelFunctionBinding;
import dev.cel.runtime.CelRuntime;
import dev.cel.runtime.CelRuntimeFactory;
import dev.cel.runtime.CelStandardFunctions;
import dev.cel.runtime.CelStandardFunctions.StandardFunction;
import dev.cel.runtime.RuntimeEquality;
import dev.cel.runtime.RuntimeHelpers;
import dev.cel.runtime.standard.CelStandardOverload;
import dev.cel.runtime.standard.DoubleFunction.DoubleOverload;
import dev.cel.runtime.standard.EqualsOperator.EqualsOverload;
import dev.cel.runtime.standard.IntFunction.IntOverload;
import dev.cel.runtime.standard.UintFunction.UintOverload;
import dev.cel.runtime.standard.GreaterEqualsOperator.GreaterEqualsOverload;
import dev.cel.runtime.standard.GreaterOperator.GreaterOverload;
import dev.cel.runtime.standard.InOperator.InOverload;
import dev.cel.runtime.standard.IndexOperator.IndexOverload;
import dev.cel.runtime.standard.LessEqualsOperator.LessEqualsOverload;
import dev.cel.runtime.standard.LessOperator.LessOverload;
import dev.cel.runtime.standard.SizeFunction.SizeOverload;
import dev.cel.runtime.standard.StringFunction.StringOverload;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The one CEL-Java configuration of the engine (the spike's {@code rec}, plus the re-bindings that
 * make CEL-Java behave like the Python {@code cel} package; see RULES-CONFORMANCE.md).
 *
 * <p>Parse only (no type-check), {@code plannerRuntimeBuilder}, {@code CelOptions.current()} +
 * heterogeneous numeric comparisons, standard macros, no extensions. Standard overloads that the
 * Python package lacks are removed; {@code size}, string ordering, {@code string(double)}, map/list
 * indexing and {@code in} on maps are re-bound; {@code exists}/{@code all} are made strict by
 * rewriting the step of their comprehension.
 */
final class CelEnv {
  static final CelOptions OPTIONS = CelOptions.current()
      .enableHeterogeneousNumericComparisons(true)
      .enableQuotedIdentifierSyntax(false)
      .enableOptionalSyntax(false)
      .errorOnDuplicateMapKeys(false)
      .build();

  /** Standard overloads cel-rust does not have: removed so that calling them fails as in Python. */
  static final Set<String> REMOVED = Set.of(
      "INT64_TO_TIMESTAMP", "TIMESTAMP_TO_INT64", "BOOL_TO_STRING",
      "TIMESTAMP_TO_DAY_OF_MONTH_1_BASED_WITH_TZ", "TIMESTAMP_TO_DAY_OF_MONTH_WITH_TZ",
      "TIMESTAMP_TO_DAY_OF_WEEK_WITH_TZ", "TIMESTAMP_TO_DAY_OF_YEAR_WITH_TZ", "TIMESTAMP_TO_YEAR_WITH_TZ",
      "TIMESTAMP_TO_HOURS_WITH_TZ", "TIMESTAMP_TO_MILLISECONDS_WITH_TZ", "TIMESTAMP_TO_MINUTES_WITH_TZ",
      "TIMESTAMP_TO_MONTH_WITH_TZ", "TIMESTAMP_TO_SECONDS_WITH_TZ",
      // string(timestamp), string(duration): their text differs from Python's; rules using them are
      // refused at load time anyway (RuleChecks), this makes any other path an error.
      "TIMESTAMP_TO_STRING", "DURATION_TO_STRING");

  /** Functions re-bound as a whole (the planner keys bindings by function name). */
  static final EnumSet<StandardFunction> REBOUND = EnumSet.of(
      StandardFunction.SIZE, StandardFunction.LESS, StandardFunction.LESS_EQUALS, StandardFunction.GREATER,
      StandardFunction.GREATER_EQUALS, StandardFunction.STRING, StandardFunction.INDEX, StandardFunction.IN,
      StandardFunction.INT, StandardFunction.UINT, StandardFunction.DOUBLE,
      // cel-rust has no bool() at all: removed, not re-bound
      StandardFunction.BOOL);

  static final String STRICT_OR = "segstream_strict_or";
  static final String STRICT_AND = "segstream_strict_and";

  static final CelParser PARSER = CelParserFactory.standardCelParserBuilder()
      .setOptions(OPTIONS)
      .setStandardMacros(CelStandardMacro.STANDARD_MACROS)
      .build();

  static final CelRuntime RUNTIME = buildRuntime();

  private CelEnv() {}

  static CelAbstractSyntaxTree parse(String expression) throws CelValidationException {
    CelAbstractSyntaxTree ast = PARSER.parse(expression).getAst();
    return CelAbstractSyntaxTree.newParsedAst(strictMacros(ast.getExpr()), ast.getSource());
  }

  static CelRuntime.Program plan(CelAbstractSyntaxTree ast) throws Exception {
    return RUNTIME.createProgram(ast);
  }

  // --- strict exists / all ------------------------------------------------------------------------

  /** Rewrites the step of exists/all comprehensions ({@code @result || p}, {@code @result && p}) to a
   * strict function: an erring iteration makes the whole macro err, as in cel-rust. */
  static CelExpr strictMacros(CelExpr e) {
    switch (e.getKind()) {
      case CALL: {
        CelExpr.CelCall call = e.call();
        List<CelExpr> args = new ArrayList<>();
        for (CelExpr a : call.args()) args.add(strictMacros(a));
        return CelExpr.ofCall(e.id(), call.target().map(CelEnv::strictMacros), call.function(),
            ImmutableList.copyOf(args));
      }
      case SELECT: {
        CelExpr.CelSelect s = e.select();
        return CelExpr.ofSelect(e.id(), strictMacros(s.operand()), s.field(), s.testOnly());
      }
      case LIST: {
        CelExpr.CelList l = e.list();
        List<CelExpr> xs = new ArrayList<>();
        for (CelExpr a : l.elements()) xs.add(strictMacros(a));
        return CelExpr.ofList(e.id(), ImmutableList.copyOf(xs), l.optionalIndices());
      }
      case MAP: {
        List<CelExpr.CelMap.Entry> xs = new ArrayList<>();
        for (CelExpr.CelMap.Entry en : e.map().entries()) {
          xs.add(CelExpr.ofMapEntry(en.id(), strictMacros(en.key()), strictMacros(en.value()), en.optionalEntry()));
        }
        return CelExpr.ofMap(e.id(), ImmutableList.copyOf(xs));
      }
      case STRUCT: {
        List<CelExpr.CelStruct.Entry> xs = new ArrayList<>();
        for (CelExpr.CelStruct.Entry en : e.struct().entries()) {
          xs.add(CelExpr.ofStructEntry(en.id(), en.fieldKey(), strictMacros(en.value()), en.optionalEntry()));
        }
        return CelExpr.ofStruct(e.id(), e.struct().messageName(), ImmutableList.copyOf(xs));
      }
      case COMPREHENSION: {
        CelComprehension c = e.comprehension();
        CelExpr step = strictMacros(c.loopStep());
        if (step.getKind() == CelExpr.ExprKind.Kind.CALL && step.call().target().isEmpty()
            && step.call().args().size() == 2
            && step.call().args().get(0).getKind() == CelExpr.ExprKind.Kind.IDENT
            && step.call().args().get(0).ident().name().equals(c.accuVar())) {
          String f = step.call().function();
          String strict = f.equals("_||_") ? STRICT_OR : f.equals("_&&_") ? STRICT_AND : null;
          if (strict != null) {
            step = CelExpr.ofCall(step.id(), java.util.Optional.empty(), strict, step.call().args());
          }
        }
        return CelExpr.ofComprehension(e.id(), c.iterVar(), c.iterVar2(), strictMacros(c.iterRange()), c.accuVar(),
            strictMacros(c.accuInit()), strictMacros(c.loopCondition()), step, strictMacros(c.result()));
      }
      default:
        return e;
    }
  }

  // --- the runtime --------------------------------------------------------------------------------

  private static CelRuntime buildRuntime() {
    RuntimeEquality equality = RuntimeEquality.create(RuntimeHelpers.create(), OPTIONS);
    List<CelFunctionBinding> bindings = new ArrayList<>();

    bindings.addAll(CelFunctionBinding.fromOverloads("size", rebind(equality,
        List.of(SizeOverload.values()),
        Set.of(SizeOverload.SIZE_STRING, SizeOverload.STRING_SIZE),
        CelFunctionBinding.from("size_string", String.class, CelEnv::utf8Size),
        CelFunctionBinding.from("string_size", String.class, CelEnv::utf8Size))));
    bindings.addAll(CelFunctionBinding.fromOverloads("_<_", noNaN(rebind(equality,
        List.of(LessOverload.values()), Set.of(LessOverload.LESS_STRING),
        CelFunctionBinding.from("less_string", String.class, String.class, (a, b) -> codePointCompare(a, b) < 0)))));
    bindings.addAll(CelFunctionBinding.fromOverloads("_<=_", noNaN(rebind(equality,
        List.of(LessEqualsOverload.values()), Set.of(LessEqualsOverload.LESS_EQUALS_STRING),
        CelFunctionBinding.from("less_equals_string", String.class, String.class,
            (a, b) -> codePointCompare(a, b) <= 0)))));
    bindings.addAll(CelFunctionBinding.fromOverloads("_>_", noNaN(rebind(equality,
        List.of(GreaterOverload.values()), Set.of(GreaterOverload.GREATER_STRING),
        CelFunctionBinding.from("greater_string", String.class, String.class,
            (a, b) -> codePointCompare(a, b) > 0)))));
    bindings.addAll(CelFunctionBinding.fromOverloads("_>=_", noNaN(rebind(equality,
        List.of(GreaterEqualsOverload.values()), Set.of(GreaterEqualsOverload.GREATER_EQUALS_STRING),
        CelFunctionBinding.from("greater_equals_string", String.class, String.class,
            (a, b) -> codePointCompare(a, b) >= 0)))));
    List<IntOverload> intOverloads = new ArrayList<>();
    for (IntOverload o : IntOverload.values()) if (!REMOVED.contains(o.name())) intOverloads.add(o);
    bindings.addAll(CelFunctionBinding.fromOverloads("int", rebind(equality,
        intOverloads, Set.of(IntOverload.STRING_TO_INT64),
        CelFunctionBinding.from("string_to_int64", String.class, CelEnv::parseInt))));
    bindings.addAll(CelFunctionBinding.fromOverloads("uint", rebind(equality,
        List.of(UintOverload.values()), Set.of(UintOverload.STRING_TO_UINT64),
        CelFunctionBinding.from("string_to_uint64", String.class, CelEnv::parseUint))));
    bindings.addAll(CelFunctionBinding.fromOverloads("double", rebind(equality,
        List.of(DoubleOverload.values()), Set.of(DoubleOverload.STRING_TO_DOUBLE),
        CelFunctionBinding.from("string_to_double", String.class, CelEnv::parseDouble))));
    List<StringOverload> stringOverloads = new ArrayList<>();
    for (StringOverload o : StringOverload.values()) if (!REMOVED.contains(o.name())) stringOverloads.add(o);
    bindings.addAll(CelFunctionBinding.fromOverloads("string", rebind(equality,
        stringOverloads, Set.of(StringOverload.DOUBLE_TO_STRING, StringOverload.BYTES_TO_STRING),
        CelFunctionBinding.from("double_to_string", Double.class, PyFormat::rustDisplay),
        // String.from_utf8_lossy: malformed bytes become U+FFFD instead of an error
        CelFunctionBinding.from("bytes_to_string", CelByteString.class,
            b -> new String(b.toByteArray(), StandardCharsets.UTF_8)))));
    bindings.addAll(CelFunctionBinding.fromOverloads("_[_]", rebind(equality,
        List.of(IndexOverload.values()), Set.of(IndexOverload.INDEX_LIST, IndexOverload.INDEX_MAP),
        CelFunctionBinding.from("index_list", List.class, Object.class, CelEnv::indexList),
        CelFunctionBinding.from("index_map", Map.class, Object.class, CelEnv::indexMap))));
    CelFunctionBinding equals = EqualsOverload.EQUALS.newFunctionBinding(OPTIONS, equality);
    bindings.addAll(CelFunctionBinding.fromOverloads("@in", rebind(equality,
        List.of(InOverload.values()), Set.of(InOverload.IN_MAP, InOverload.IN_LIST),
        CelFunctionBinding.from("in_map", Object.class, Map.class, CelEnv::inMap),
        CelFunctionBinding.from("in_list", Object.class, List.class, (x, list) -> inList(equals, x, list)))));
    bindings.addAll(CelFunctionBinding.fromOverloads(STRICT_OR,
        CelFunctionBinding.from(STRICT_OR + "_bool", Boolean.class, Boolean.class, (a, b) -> a || b)));
    bindings.addAll(CelFunctionBinding.fromOverloads(STRICT_AND,
        CelFunctionBinding.from(STRICT_AND + "_bool", Boolean.class, Boolean.class, (a, b) -> a && b)));

    return CelRuntimeFactory.plannerRuntimeBuilder()
        .setOptions(OPTIONS)
        .setStandardFunctions(CelStandardFunctions.newBuilder()
            .filterFunctions((fn, ov) -> !REBOUND.contains(fn) && !REMOVED.contains(((Enum<?>) ov).name()))
            .build())
        .addFunctionBindings(bindings)
        .build();
  }

  private static List<CelFunctionBinding> rebind(RuntimeEquality eq, List<? extends CelStandardOverload> all,
      Set<? extends CelStandardOverload> replaced, CelFunctionBinding... replacements) {
    List<CelFunctionBinding> out = new ArrayList<>();
    for (CelStandardOverload o : all) {
      if (!replaced.contains(o)) out.add(o.newFunctionBinding(OPTIONS, eq));
    }
    out.addAll(List.of(replacements));
    return out;
  }

  /** cel-rust has no ordering of NaN (partial_cmp is None): an error, where CEL-Java says false. */
  private static List<CelFunctionBinding> noNaN(List<CelFunctionBinding> bindings) {
    List<CelFunctionBinding> out = new ArrayList<>();
    for (CelFunctionBinding b : bindings) {
      @SuppressWarnings("unchecked")
      Class<Object> first = (Class<Object>) b.getArgTypes().get(0);
      @SuppressWarnings("unchecked")
      Class<Object> second = (Class<Object>) b.getArgTypes().get(1);
      out.add(CelFunctionBinding.from(b.getOverloadId(), first, second, (x, y) -> {
        if ((x instanceof Double && ((Double) x).isNaN()) || (y instanceof Double && ((Double) y).isNaN())) {
          throw error(CelErrorCode.BAD_FORMAT, "NaN has no order");
        }
        return b.getDefinition().apply(new Object[] {x, y});
      }));
    }
    return out;
  }

  // --- the re-bound functions ---------------------------------------------------------------------

  /** `x in list` with the equality of `==` (by value across numeric types, NaN unequal, nested lists). */
  static boolean inList(CelFunctionBinding equals, Object x, List<?> list) throws CelEvaluationException {
    for (Object e : list) {
      if (Boolean.TRUE.equals(equals.getDefinition().apply(new Object[] {e, x}))) return true;
    }
    return false;
  }

  private static final java.util.regex.Pattern INT_TEXT = java.util.regex.Pattern.compile("[+-]?[0-9]+");
  private static final java.util.regex.Pattern UINT_TEXT = java.util.regex.Pattern.compile("\\+?[0-9]+");
  private static final java.util.regex.Pattern DOUBLE_TEXT = java.util.regex.Pattern.compile(
      "[+-]?(?:[0-9]+\\.?[0-9]*|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?");
  private static final java.util.regex.Pattern DOUBLE_SPECIAL = java.util.regex.Pattern.compile(
      "([+-]?)(inf|infinity|nan)", java.util.regex.Pattern.CASE_INSENSITIVE);

  /** Rust's i64::from_str: optional sign, ASCII digits only (Java would accept other Unicode digits). */
  static long parseInt(String s) throws CelEvaluationException {
    if (!INT_TEXT.matcher(s).matches()) throw error(CelErrorCode.BAD_FORMAT, "invalid int: %s", s);
    try {
      return Long.parseLong(s);
    } catch (NumberFormatException e) {
      throw error(CelErrorCode.NUMERIC_OVERFLOW, "int out of range: %s", s);
    }
  }

  static UnsignedLong parseUint(String s) throws CelEvaluationException {
    if (!UINT_TEXT.matcher(s).matches()) throw error(CelErrorCode.BAD_FORMAT, "invalid uint: %s", s);
    try {
      return UnsignedLong.fromLongBits(Long.parseUnsignedLong(s.startsWith("+") ? s.substring(1) : s));
    } catch (NumberFormatException e) {
      throw error(CelErrorCode.NUMERIC_OVERFLOW, "uint out of range: %s", s);
    }
  }

  /** Rust's f64::from_str: inf/infinity/nan in any case, no whitespace, no hex, no d/f suffix. */
  static double parseDouble(String s) throws CelEvaluationException {
    java.util.regex.Matcher special = DOUBLE_SPECIAL.matcher(s);
    if (special.matches()) {
      boolean negative = special.group(1).equals("-");
      if (special.group(2).equalsIgnoreCase("nan")) return Double.NaN;
      return negative ? Double.NEGATIVE_INFINITY : Double.POSITIVE_INFINITY;
    }
    if (!DOUBLE_TEXT.matcher(s).matches()) throw error(CelErrorCode.BAD_FORMAT, "invalid double: %s", s);
    return Double.parseDouble(s);
  }

  static long utf8Size(String s) {
    return s.getBytes(StandardCharsets.UTF_8).length;
  }

  /** Code point order (= UTF-8 byte order), as cel-rust compares strings. */
  static int codePointCompare(String a, String b) {
    int i = 0, j = 0;
    while (i < a.length() && j < b.length()) {
      int x = a.codePointAt(i), y = b.codePointAt(j);
      if (x != y) return Integer.compare(x, y);
      i += Character.charCount(x);
      j += Character.charCount(y);
    }
    return Integer.compare(a.length() - i, b.length() - j);
  }

  static CelEvaluationException error(CelErrorCode code, String format, Object... args) {
    return CelEvaluationExceptionBuilder.newBuilder(format, args).setErrorCode(code).build();
  }

  /** List index: an int or a uint (cel-rust refuses a double index). */
  static Object indexList(List<?> list, Object index) throws CelEvaluationException {
    long i;
    if (index instanceof Long) {
      i = (Long) index;
    } else if (index instanceof UnsignedLong) {
      UnsignedLong u = (UnsignedLong) index;
      i = u.compareTo(UnsignedLong.valueOf(Integer.MAX_VALUE)) > 0 ? Long.MAX_VALUE : u.longValue();
    } else {
      throw error(CelErrorCode.BAD_FORMAT, "Unexpected type: got '%s', want 'int|uint'", typeName(index));
    }
    if (i < 0 || i >= list.size()) {
      throw error(CelErrorCode.INDEX_OUT_OF_BOUNDS, "Index out of bounds: %s", i);
    }
    return list.get((int) i);
  }

  /** Map lookup by exact key type (cel-rust: 1u is not the key 1, a double is no key at all). */
  static Object indexMap(Map<?, ?> map, Object key) throws CelEvaluationException {
    checkKey(key);
    Object value = map.get(key);
    if (value == null && !map.containsKey(key)) {
      throw error(CelErrorCode.ATTRIBUTE_NOT_FOUND, "key '%s' is not present in map.", key);
    }
    return value;
  }

  static boolean inMap(Object key, Map<?, ?> map) throws CelEvaluationException {
    checkKey(key);
    return map.containsKey(key);
  }

  private static void checkKey(Object key) throws CelEvaluationException {
    if (!(key instanceof String || key instanceof Long || key instanceof UnsignedLong || key instanceof Boolean)) {
      throw error(CelErrorCode.BAD_FORMAT, "Value of type %s cannot be used as a map key", typeName(key));
    }
  }

  static String typeName(Object v) {
    if (v instanceof Double) return "double";
    if (v instanceof Long) return "int";
    if (v instanceof UnsignedLong) return "uint";
    if (v instanceof String) return "string";
    if (v instanceof Boolean) return "bool";
    if (v instanceof CelByteString) return "bytes";
    if (v instanceof List) return "list";
    if (v instanceof Map) return "map";
    return v == null ? "null" : v.getClass().getSimpleName();
  }
}
