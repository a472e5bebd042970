"""The batch layer's commands, registered on the `segstream` CLI: `recompute`, `explain`,
`rules try` (docs/batch.md). Beam and the Bigtable client load only when a command runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from segstream.config import Settings, load_settings
from segstream.errors import StackError, one_line_errors

rules_app = typer.Typer(no_args_is_help=True, help="Rule tools over the recomputed history (docs/batch.md).")


def _rules(settings: Settings, rules_file: str | None, with_log: bool = True):
    """The engine's inputs: the catalogue, the initial rules, and the rule log (or a fixed rule file)."""
    import yaml

    from batch.pipeline import Rules
    from batch.rulelog import read_rule_log
    from batch.rulelog import rules_file as read_rules_file

    catalogue = yaml.safe_load(settings.path(settings.stats_file).read_text(encoding="utf-8"))
    initial = read_rules_file(settings.path(settings.rules_file))
    if rules_file is not None:
        return Rules(catalogue, initial, [], fixed=read_rules_file(rules_file))
    from confluent_kafka import KafkaException

    try:
        log = read_rule_log(settings.kafka.bootstrap_servers, settings.kafka.topics.rules_log) if with_log else []
    except KafkaException as exc:
        raise StackError(f"cannot read the rule log {settings.kafka.topics.rules_log!r} from Kafka at "
                         f"{settings.kafka.bootstrap_servers}: {exc}") from None
    return Rules(catalogue, initial, log)


def _probe(settings: Settings) -> None:
    from batch.history import probe
    from sinks.bigtable import BigtableUnavailable

    try:
        probe(settings.bigtable)
    except BigtableUnavailable as exc:
        raise StackError(str(exc)) from None


def _selection(tenant: str | None, users: list[str] | None, sample: float = 1.0):
    from batch.pipeline import Selection

    pairs = []
    for u in users or []:
        t, _, uid = u.rpartition("/")
        pairs.append((t or tenant or "default", uid))
    return Selection(tenant=tenant, users=pairs, fraction=sample)


@one_line_errors
def recompute(
    tenant: str | None = typer.Option(None, help="Only this tenant's users."),
    user: list[str] | None = typer.Option(None, help="Only these users (repeatable; TENANT/USER or USER)."),
    out: Path | None = typer.Option(None, help="Directory for profiles-*.jsonl (and compare-*.jsonl); "
                                               "default batch.out_dir."),
    report: Path | None = typer.Option(None, help="Compare with the live profiles; write the report here."),
    rules: str | None = typer.Option(None, help="Evaluate every event under this rules file instead of "
                                                "the rule log's version of each event."),
    workers: int | None = typer.Option(None, help="Beam worker processes (default batch.workers)."),
):
    """Recompute users from the Bigtable history with Apache Beam and the Python engine."""
    from batch import pipeline
    from batch.compare import summarize

    s = load_settings()
    if report is not None and rules is not None:
        raise StackError("--report compares with the live profiles, which ran under the rule log: drop --rules")
    _probe(s)
    out_dir = out or s.path(s.batch.out_dir)
    result = pipeline.run(s.bigtable, s.batch, _rules(s, rules), _selection(tenant, user), out_dir,
                          report=report is not None, workers=workers)
    rate = result.rows / result.seconds if result.seconds else 0.0
    print(f"recomputed {result.users:,} users from {result.rows:,} events rows in {result.seconds:.1f} s "
          f"({rate:,.0f} rows/s): {out_dir}/profiles-*.jsonl")
    if report is not None:
        summary = summarize(result.lines("compare"), s.bigtable.retention_days)
        report.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"consistency: {summary['equal_pct']:.2f} % of {summary['compared_users']:,} users equal, "
              f"{summary['differing_users']} differ, {summary['missing_users']} missing, "
              f"{summary['extra_users']} extra, {summary['past_retention']['users']} past retention: {report}")


@one_line_errors
def explain(
    user_id: str,
    segment: str,
    tenant: str = typer.Option("default"),
    at: int | None = typer.Option(None, help="After this event (seq) of the user; default: the latest."),
):
    """Why USER is (not) in SEGMENT: the rule, the stats it reads, the deciding clause, entries/exits."""
    from batch.explain import explain as explain_user
    from batch.explain import read_user

    s = load_settings()
    _probe(s)
    rules = _rules(s, None).history()
    try:
        answer = explain_user(read_user(s.bigtable, tenant, user_id, rules), rules, segment, at)
    except LookupError as exc:
        raise StackError(str(exc)) from None
    json.dump(answer, sys.stdout, indent=2, ensure_ascii=False)
    print()


@rules_app.command("try")
@one_line_errors
def rules_try(
    file: str,
    tenant: str | None = typer.Option(None, help="Only this tenant's users."),
    sample: float = typer.Option(1.0, help="Share of the users to recompute (a uniform sample), 0-1."),
    examples: int = typer.Option(5, help="Example users per direction."),
    workers: int | None = typer.Option(None, help="Beam worker processes (default batch.workers)."),
):
    """Dry-run the rule(s) in FILE over every user's recomputed current state: who would enter/exit."""
    import tempfile

    from batch import pipeline
    from batch.explain import dry_run, load_rule_file
    from operators.catalogue import load_catalogue
    from operators.rules import RuleError

    s = load_settings()
    catalogue = load_catalogue(s.path(s.stats_file))
    try:
        new_rules = load_rule_file(file, catalogue)
    except (RuleError, OSError) as exc:
        raise StackError(str(exc)) from None
    _probe(s)
    with tempfile.TemporaryDirectory(prefix="segstream-rules-try-") as tmp:
        result = pipeline.run(s.bigtable, s.batch, _rules(s, None), _selection(tenant, None, sample), Path(tmp),
                              workers=workers)
        answer = dry_run(new_rules, catalogue, result.lines("profiles"), examples)
    json.dump(answer, sys.stdout, indent=2, ensure_ascii=False)
    print()


@one_line_errors
def backfill(
    savepoint: str = typer.Option(..., help="Savepoint of the stopped job (`segstream job stop`)."),
    stats: Path = typer.Option(..., help="The new stat catalogue (conf/stats.yaml's format)."),
    out: str = typer.Option(..., help="Directory for the new savepoint; restart the job from it with "
                                      "--stats' catalogue."),
    parallelism: int = typer.Option(1, help="Parallel readers, rebuilders and writers of the backfill job "
                                            "(above 1 it stalled at 6,700 users here: docs/batch.md 6)."),
):
    """Rebuild a savepoint's user state under a new catalogue from the Bigtable history (docs/batch.md)."""
    from batch.backfill import BackfillOptions, run

    s = load_settings()
    if not stats.is_file():
        raise StackError(f"no catalogue at {stats}")
    _probe(s)
    summary = run(s, BackfillOptions(savepoint=savepoint, stats_file=stats, out=out, parallelism=parallelism,
                                     progress_interval_s=s.batch.progress_interval_s,
                                     stall_timeout_s=s.batch.backfill_stall_timeout_s))
    o = summary["outcomes"]
    rate = summary["users"] / summary["seconds"] if summary["seconds"] else 0.0
    print(f"backfilled {summary['users']:,} users from {summary['rows']:,} history rows in {summary['seconds']:.1f} s "
          f"({rate:,.0f} users/s): {o['rebuilt']} rebuilt, {o['partial']} partial (history past retention or "
          f"with holes), {o['no_history']} without history, {o['unchanged']} unchanged, {o['expired']} expired",
          file=sys.stderr)
    print(json.dumps(summary))
