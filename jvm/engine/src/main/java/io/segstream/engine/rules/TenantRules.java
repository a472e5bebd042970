package io.segstream.engine.rules;

import io.segstream.engine.Event;
import java.util.BitSet;
import java.util.List;
import java.util.Map;

/** The rules that apply to one tenant, sorted by id; rule k is bit k of every mask
 * (operators/rules.py TenantRules). Implementations are immutable. */
public interface TenantRules {
  /** BLAKE2b-8 over the sorted (id, when) pairs, exactly as the Python engine computes it. */
  long fingerprint();

  BitSet allMask();

  /** Rules that read {@code event} and have no event-name guard: run on every event. */
  BitSet eventMask();

  /** Rules with an event-name guard ({@code event.name == "x" && ...}). */
  BitSet guardedMask();

  /** Guarded rules that may match an event with this name (empty if none). */
  BitSet guardedOn(String eventName);

  /** Rules that read the stat at this catalogue index. */
  BitSet statMask(int statIndex);

  /** Run the rules in {@code run} on the stat values (by name) and the event; never throws. */
  Result evaluate(BitSet run, Map<String, Object> stats, Event event);

  /** Sorted ids of the rules in the mask. */
  List<String> idsOf(BitSet mask);

  record Result(BitSet matched, BitSet errors) {}
}
