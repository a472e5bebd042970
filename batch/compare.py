"""Live profile vs recomputation (the consistency report's per-user part and its summary), the way
Chronon measures online/offline consistency: per stat mismatch rate and SMAPE, missing and extra
users, segment membership mismatches, and the users that differ with their first differing field."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import orjson

from batch.history import LiveProfile
from batch.replay import Replayed

MAX_EXAMPLES = 100


def _canonical(value: object) -> bytes:
    # Both sides as JSON text: live values were parsed from the job's JSON, recomputed ones are
    # Python values; orjson renders each number one way, so equal text = equal value and type.
    return orjson.dumps(value)


def _is_number(x: object) -> bool:
    return type(x) in (int, float)


def compare_user(live: LiveProfile | None, replayed: Replayed | None) -> dict:
    """One user's comparison record (a line of the report's working files)."""
    tenant = live.tenant if live else replayed.tenant  # type: ignore[union-attr]
    user_id = live.user_id if live else replayed.user_id  # type: ignore[union-attr]
    record: dict = {"tenant": tenant, "user_id": user_id}
    has_history = replayed is not None and bool(replayed.evaluations)
    if live is None:
        record["status"] = "extra"  # history, no live profile
        return record
    record["seq"] = live.seq
    record["rules_version"] = live.rules_version
    if not has_history:
        record["status"] = "missing"  # a live profile, no history at all (past retention, or lost)
        return record
    assert replayed is not None
    recomputed = replayed.evaluations.get(live.seq)
    if recomputed is None:
        # The history does not reach the profile's seq: rows lost, or the profile is ahead of the table.
        record["status"] = "no_history_at_seq"
        record["history_seqs"] = [min(replayed.evaluations), max(replayed.evaluations)]
        return record
    diffs: dict[str, list] = {}
    stats: dict[str, dict] = {}
    for name in sorted(set(live.stats) | set(recomputed["stats"])):
        a, b = live.stats.get(name), recomputed["stats"].get(name)
        equal = _canonical(a) == _canonical(b)
        entry: dict = {"equal": equal}
        if _is_number(a) and _is_number(b):
            denominator = abs(a) + abs(b)  # type: ignore[arg-type]
            entry["smape"] = 0.0 if denominator == 0 else 2 * abs(a - b) / denominator
        stats[name] = entry
        if not equal:
            diffs[f"stats.{name}"] = [a, b]
    live_segments, recomputed_segments = set(live.segments), set(recomputed["segments"])
    if live_segments != recomputed_segments:
        diffs["segments"] = [sorted(live_segments), sorted(recomputed_segments)]
    record["stats"] = stats
    record["segments_only_live"] = sorted(live_segments - recomputed_segments)
    record["segments_only_recomputed"] = sorted(recomputed_segments - live_segments)
    record["past_retention"] = not replayed.complete
    record["status"] = "equal" if not diffs else "differs"
    if diffs:
        first = next(iter(diffs))
        record["first_difference"] = {"field": first, "live": diffs[first][0], "recomputed": diffs[first][1]}
        record["differences"] = len(diffs)
    return record


def summarize(records: Iterable[dict], retention_days: int) -> dict:
    """The report (docs/batch.md, "Consistency report") from every user's comparison record.

    Users whose history does not start at seq 1 (its head past the retention) or has holes are
    reported apart, under `past_retention`, whether or not they happen to be equal."""
    counts: dict[str, int] = defaultdict(int)
    per_stat: dict[str, dict] = defaultdict(lambda: {"compared": 0, "mismatches": 0, "smape_sum": 0.0,
                                                     "numeric": 0})
    per_segment: dict[str, dict] = defaultdict(lambda: {"only_live": 0, "only_recomputed": 0})
    differing: list[dict] = []
    missing: list[dict] = []
    extra: list[dict] = []
    retention_counts = {"users": 0, "equal": 0, "differs": 0}
    retention_examples: list[dict] = []
    compared = equal = segment_mismatch = 0
    for r in records:
        status = r["status"]
        counts[status] += 1
        who = {"tenant": r["tenant"], "user_id": r["user_id"]}
        if status == "extra":
            if len(extra) < MAX_EXAMPLES:
                extra.append(who)
            continue
        if status in ("missing", "no_history_at_seq"):
            if len(missing) < MAX_EXAMPLES:
                missing.append(dict(who, reason=status))
            continue
        if r.get("past_retention"):
            retention_counts["users"] += 1
            retention_counts[status] += 1
            if len(retention_examples) < MAX_EXAMPLES:
                retention_examples.append(dict(who, status=status))
            continue
        compared += 1
        equal += status == "equal"
        for name, s in r["stats"].items():
            p = per_stat[name]
            p["compared"] += 1
            p["mismatches"] += not s["equal"]
            if "smape" in s:
                p["numeric"] += 1
                p["smape_sum"] += s["smape"]
        if r["segments_only_live"] or r["segments_only_recomputed"]:
            segment_mismatch += 1
        for seg in r["segments_only_live"]:
            per_segment[seg]["only_live"] += 1
        for seg in r["segments_only_recomputed"]:
            per_segment[seg]["only_recomputed"] += 1
        if status == "differs" and len(differing) < MAX_EXAMPLES:
            differing.append(dict(who, seq=r["seq"], rules_version=r["rules_version"],
                                  first_difference=r["first_difference"], differences=r["differences"]))
    stats_out = {
        name: {"compared": p["compared"], "mismatches": p["mismatches"],
               "mismatch_rate": p["mismatches"] / p["compared"] if p["compared"] else 0.0,
               "smape": p["smape_sum"] / p["numeric"] if p["numeric"] else None}
        for name, p in sorted(per_stat.items())
    }
    return {
        "compared_users": compared,
        "equal_users": equal,
        "equal_pct": 100.0 * equal / compared if compared else 100.0,
        "differing_users": compared - equal,
        "missing_users": counts["missing"] + counts["no_history_at_seq"],
        "extra_users": counts["extra"],
        "past_retention": dict(retention_counts, examples=retention_examples),
        "retention_days": retention_days,
        "stats": stats_out,
        "segments": {"users_with_membership_mismatch": segment_mismatch,
                     "mismatch_rate": segment_mismatch / compared if compared else 0.0,
                     "by_segment": dict(sorted(per_segment.items()))},
        "differing": differing,
        "missing": missing,
        "extra": extra,
    }
