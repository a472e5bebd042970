package io.segstream.engine.rules;

/** A rule (or rule list) that cannot be used; the message is the reason (operators/rules.py RuleError). */
public final class RuleError extends Exception {
  public RuleError(String reason) {
    super(reason, null, false, false);
  }
}
