package io.segstream.engine.rules;

import io.segstream.engine.Event;
import com.google.common.collect.ImmutableMap;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bouncycastle.crypto.digests.Blake2bDigest;

/**
 * The rules that apply to one tenant, sorted by id; rule k is bit k of every mask
 * (operators/rules.py TenantRules). Immutable after construction.
 *
 * <p>Ids are sorted by UTF-16 code units ({@link String#compareTo}), Python sorts by code points:
 * the orders differ only for ids mixing astral characters with U+E000..U+FFFF, so ids are compared
 * by code point here, as in Python.
 *
 * <p>The fingerprint is BLAKE2b with an 8-byte digest over {@code json.dumps([id, when]).encode()} of
 * each rule in order, read as a big-endian <b>signed</b> long (Python stores the unsigned
 * {@code int.from_bytes(d, "big")}; the two are equal modulo 2^64: {@link #fingerprintUnsigned()}).
 */
public final class TenantRulesImpl implements TenantRules {
  static final Comparator<String> CODE_POINT_ORDER = CelEnv::codePointCompare;

  private final List<CompiledRule> rules;
  private final List<String> ids;
  private final BitSet allMask = new BitSet();
  private final BitSet eventMask = new BitSet();
  private final BitSet guardedMask = new BitSet();
  private final Map<String, BitSet> guarded = new HashMap<>();
  private final BitSet[] statMasks;
  private final long fingerprint;

  public TenantRulesImpl(Collection<CompiledRule> applicable, List<String> statNames) {
    List<CompiledRule> sorted = new ArrayList<>(applicable);
    sorted.sort(Comparator.comparing(CompiledRule::id, CODE_POINT_ORDER));
    this.rules = List.copyOf(sorted);
    List<String> ids = new ArrayList<>();
    for (CompiledRule r : rules) ids.add(r.id());
    this.ids = List.copyOf(ids);
    Map<String, Integer> index = new HashMap<>();
    for (int i = 0; i < statNames.size(); i++) index.put(statNames.get(i), i);
    statMasks = new BitSet[statNames.size()];
    for (int i = 0; i < statMasks.length; i++) statMasks[i] = new BitSet();
    allMask.set(0, rules.size());
    Blake2bDigest digest = new Blake2bDigest(64);
    for (int k = 0; k < rules.size(); k++) {
      CompiledRule rule = rules.get(k);
      for (String name : rule.stats()) statMasks[index.get(name)].set(k);
      if (rule.eventGuard() != null) {
        guarded.computeIfAbsent(rule.eventGuard(), g -> new BitSet()).set(k);
        guardedMask.set(k);
      } else if (rule.usesEvent()) {
        eventMask.set(k);
      }
      byte[] bytes = PyFormat.jsonPair(rule.id(), rule.rule().when()).getBytes(StandardCharsets.US_ASCII);
      digest.update(bytes, 0, bytes.length);
    }
    byte[] out = new byte[8];
    digest.doFinal(out, 0);
    fingerprint = ByteBuffer.wrap(out).getLong();
  }

  public List<CompiledRule> rules() {
    return rules;
  }

  public List<String> ids() {
    return ids;
  }

  /** Big-endian signed: the Python value is {@code Long.toUnsignedString(fingerprint())}. */
  @Override
  public long fingerprint() {
    return fingerprint;
  }

  public java.math.BigInteger fingerprintUnsigned() {
    return new java.math.BigInteger(Long.toUnsignedString(fingerprint));
  }

  @Override
  public BitSet allMask() {
    return (BitSet) allMask.clone();
  }

  @Override
  public BitSet eventMask() {
    return (BitSet) eventMask.clone();
  }

  @Override
  public BitSet guardedMask() {
    return (BitSet) guardedMask.clone();
  }

  @Override
  public BitSet guardedOn(String eventName) {
    BitSet b = guarded.get(eventName);
    return b == null ? new BitSet() : (BitSet) b.clone();
  }

  @Override
  public BitSet statMask(int statIndex) {
    return (BitSet) statMasks[statIndex].clone();
  }

  @Override
  public List<String> idsOf(BitSet mask) {
    List<String> out = new ArrayList<>(mask.cardinality());
    for (int k = mask.nextSetBit(0); k >= 0 && k < ids.size(); k = mask.nextSetBit(k + 1)) out.add(ids.get(k));
    return out;
  }

  @Override
  public Result evaluate(BitSet run, Map<String, Object> stats, Event event) {
    BitSet matched = new BitSet();
    BitSet errors = new BitSet();
    Map<String, Object> variables = new LinkedHashMap<>();
    boolean usesEvent = false;
    try {
      for (int k = run.nextSetBit(0); k >= 0 && k < rules.size(); k = run.nextSetBit(k + 1)) {
        CompiledRule rule = rules.get(k);
        for (String name : rule.stats()) {
          if (!variables.containsKey(name)) variables.put(name, CelValues.toCel(stats.get(name)));
        }
        usesEvent |= rule.usesEvent();
      }
      if (usesEvent) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("name", event.name());
        e.put("values", CelValues.toCel(event.values() == null ? Map.of() : event.values()));
        e.put("ts", event.ts());
        variables.put(CompiledRule.EVENT_VARIABLE, e);
      }
    } catch (RuntimeException e) {  // a value that cannot be converted: every chosen rule fails
      for (int k = run.nextSetBit(0); k >= 0 && k < rules.size(); k = run.nextSetBit(k + 1)) errors.set(k);
      return new Result(matched, errors);
    }
    // One immutable copy per event: the planner's eval(Map) calls Activation.copyOf, which copies
    // any other map through a stream for every rule, but takes an ImmutableMap as it is. The
    // variables are never null (toCel gives CelValues' NullValue), so the copy drops nothing.
    ImmutableMap<String, Object> activation = ImmutableMap.copyOf(variables);
    for (int k = run.nextSetBit(0); k >= 0 && k < rules.size(); k = run.nextSetBit(k + 1)) {
      Object result;
      try {
        result = rules.get(k).program().eval(activation);
      } catch (Exception | StackOverflowError e) {  // evaluation errors are "not matched"
        errors.set(k);
        continue;
      }
      if (Boolean.TRUE.equals(result)) matched.set(k);
      else if (!Boolean.FALSE.equals(result)) errors.set(k);  // a rule must yield a bool
    }
    return new Result(matched, errors);
  }
}
