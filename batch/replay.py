"""One user's history through the Python engine, in the live engine's order (seq)."""

from __future__ import annotations

from dataclasses import dataclass, field

from batch.history import HistoryRow
from batch.rulelog import RuleHistory
from operators.events import Event, parse_record


@dataclass
class Replayed:
    tenant: str
    user_id: str
    # Evaluations by seq (only those of the events in the history).
    evaluations: dict[int, dict] = field(default_factory=dict)
    events: dict[int, Event] = field(default_factory=dict)
    first_seq: int | None = None  # > 1: the earliest events are past the retention
    unordered: int = 0  # rows without a seq (written before event rows carried it): not replayed
    gaps: list[int] = field(default_factory=list)  # seqs missing inside the history
    last_event: Event | None = None

    @property
    def last(self) -> dict | None:
        return self.evaluations[max(self.evaluations)] if self.evaluations else None

    @property
    def complete(self) -> bool:
        return self.first_seq == 1 and not self.gaps and not self.unordered


def replay_user(tenant: str, user_id: str, rows: list[HistoryRow], rules: RuleHistory,
                keep_events: bool = False) -> Replayed:
    """Replay the rows of one user. Rows sharing a seq are copies of one event (at-least-once)."""
    out = Replayed(tenant, user_id)
    by_seq: dict[int, HistoryRow] = {}
    for row in rows:
        if row.seq is None:
            out.unordered += 1
        else:
            by_seq[row.seq] = row
    if not by_seq:
        return out
    seqs = sorted(by_seq)
    out.first_seq = seqs[0]
    out.gaps = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
    blob: bytes | None = None
    for seq in seqs:
        row = by_seq[seq]
        event = parse_record(row.payload)
        result = rules.evaluator(row.rules_version).process(blob, event)
        blob = result.blob
        evaluation = result.evaluation
        # A history that starts past the retention (or has gaps) counts from its own first event:
        # its seqs are renumbered by the engine, so keep the job's.
        evaluation["seq"] = seq
        evaluation["rules_version"] = row.rules_version
        out.evaluations[seq] = evaluation
        if keep_events:
            out.events[seq] = event
        out.last_event = event
    return out
