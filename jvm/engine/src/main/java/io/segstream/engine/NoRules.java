package io.segstream.engine;

import io.segstream.engine.rules.Rules;
import io.segstream.engine.rules.TenantRules;
import java.nio.ByteBuffer;
import java.util.BitSet;
import java.util.List;
import java.util.Map;

/** A rule set without rules (every mask empty), to run the engine without CEL. Its fingerprint is
 * Python's for an empty tenant view: BLAKE2b-8 of nothing, read big-endian. */
public final class NoRules implements Rules {
  private static final long EMPTY_FINGERPRINT = ByteBuffer.wrap(Blake2b.digest(new byte[0], 8)).getLong();

  private static final TenantRules NONE = new TenantRules() {
    @Override
    public long fingerprint() {
      return EMPTY_FINGERPRINT;
    }

    @Override
    public BitSet allMask() {
      return new BitSet();
    }

    @Override
    public BitSet eventMask() {
      return new BitSet();
    }

    @Override
    public BitSet guardedMask() {
      return new BitSet();
    }

    @Override
    public BitSet guardedOn(String eventName) {
      return new BitSet();
    }

    @Override
    public BitSet statMask(int statIndex) {
      return new BitSet();
    }

    @Override
    public Result evaluate(BitSet run, Map<String, Object> stats, Event event) {
      return new Result(new BitSet(), new BitSet());
    }

    @Override
    public List<String> idsOf(BitSet mask) {
      return List.of();
    }
  };

  private long errors;

  @Override
  public TenantRules forTenant(String tenant) {
    return NONE;
  }

  @Override
  public void countErrors(int failed) {
    errors += failed;
  }

  public long errorCount() {
    return errors;
  }
}
