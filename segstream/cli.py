"""`segstream` command line: local stack, traffic, the job, and reading results back."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from batch import cli as batch_cli
from segstream.cluster_cli import cluster_app, job_app
from segstream.config import Settings, load_settings
from segstream.errors import StackError, one_line_errors

if TYPE_CHECKING:
    from segstream.produce import Record

# Google's client libraries warn about Python/grpcio support windows on every import.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")
app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
stack_app = typer.Typer(no_args_is_help=True, help="Local broker, Bigtable emulator, topics and tables.")
app.add_typer(stack_app, name="stack")
app.add_typer(cluster_app, name="cluster")
app.add_typer(job_app, name="job")
windows_app = typer.Typer(no_args_is_help=True,
                          help="The window job: aggregates, surges, late events (docs/windows.md).")
app.add_typer(windows_app, name="windows")
alerts_app = typer.Typer(no_args_is_help=True, help="Surge alerts: list them, send them to webhooks.")
app.add_typer(alerts_app, name="alerts")
tenant_app = typer.Typer(no_args_is_help=True, help="Tenant keys of the tracking front (segstream serve).")
app.add_typer(tenant_app, name="tenant")
# The batch layer (batch/, docs/batch.md): recompute, explain, rules try.
app.command("recompute")(batch_cli.recompute)
app.command("explain")(batch_cli.explain)
app.command("backfill")(batch_cli.backfill)
app.add_typer(batch_cli.rules_app, name="rules")
console = Console()


def settings() -> Settings:
    return load_settings()


@stack_app.command("up")
@one_line_errors
def stack_up(durable: bool = typer.Option(False, help="Keep the Kafka log directory across restarts "
                                                       "(else every `up` starts an empty broker).")):
    """Start Apache Kafka (KRaft) and the Bigtable emulator, create topics and tables."""
    import time

    from segstream.stack import Stack

    s = settings()
    started = time.monotonic()
    Stack(s).up(durable=durable)
    console.print(f"stack up in {time.monotonic() - started:.1f} s: Apache Kafka {s.kafka.bootstrap_servers}"
                  + (f", Bigtable emulator 127.0.0.1:{s.stack.emulator_port}" if s.bigtable.enabled else ""))


@stack_app.command("down")
@one_line_errors
def stack_down():
    """Stop every stack process (idempotent)."""
    from segstream.stack import Stack

    stopped = Stack(settings()).down()
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack_app.command("status")
@one_line_errors
def stack_status():
    """Show which stack processes run."""
    from segstream.stack import Stack

    for name, pid in Stack(settings()).status().items():
        console.print(f"{name:18} {'running, pid ' + str(pid) if pid else 'stopped'}")


@stack_app.command("provision")
@one_line_errors
def stack_provision():
    """Create the topics and Bigtable tables on clusters started elsewhere (docker compose, Kubernetes)."""
    from segstream.stack import provision

    s = settings()
    provision(s)
    console.print(f"topics on {s.kafka.bootstrap_servers}"
                  + (f", tables in {s.bigtable.project}/{s.bigtable.instance}" if s.bigtable.enabled else "")
                  + ": present")


@app.command()
@one_line_errors
def produce(
    events: int = typer.Option(20_000, help="How many events to generate."),
    users: int = typer.Option(1_000, help="How many distinct users."),
    rate: float = typer.Option(0, help="Events per second, live: stamped at about the wall-clock time they are "
                                       "sent. 0 = a history ending now, sent as fast as possible."),
    seed: int = typer.Option(42),
    invalid_ratio: float = typer.Option(0.002, help="Share of deliberately invalid records."),
    tenants: int = typer.Option(1, help="How many tenants (tenant-0 is 'default')."),
    replay: Path | None = typer.Option(None, help="Replay a JSONL file instead of generating."),
    surge: int = typer.Option(0, help="Inject a surge: this many extra page views of the default tenant within "
                                      "2 minutes of one 5-minute window, 80 % into a generated history."),
):
    """Send sample traffic (or a JSONL file) to the events topic.

    Generated traffic is anchored at now: without a rate, a history whose last event is now (and
    none later); with a rate, live traffic from now on, each event sent when its time comes."""
    from segstream import produce as traffic
    from segstream.produce import TrafficSpec, generate, live, produce_records, read_jsonl

    s = settings()
    spec = TrafficSpec(events=events, users=users, seed=seed, invalid_ratio=invalid_ratio, tenants=tenants)
    records: Iterable[Record]
    if replay:  # the file's own timestamps, paced by count
        records, pace = read_jsonl(replay), rate
    elif rate > 0:  # paced by the records' timestamps
        records, pace = live(spec, rate), 0
    elif surge > 0:
        history = list(generate(spec))
        records, pace = traffic.with_burst(history, traffic.Burst(traffic.burst_start(history), surge)), 0
        events += surge
    else:
        records, pace = generate(spec), 0
    sent = produce_records(s.kafka.bootstrap_servers, s.kafka.topics.events, records, rate=pace,
                           total=None if replay else events)
    console.print(f"produced {sent} records to {s.kafka.topics.events}")


@app.command()
@one_line_errors
def run(bounded: bool = typer.Option(False, help="Stop at the end offsets found at start.")):
    """Run the job on the embedded MiniCluster (same as `python jobs/user_stats.py`)."""
    from jobs.user_stats import main

    main(["--bounded"] if bounded else [])


@windows_app.command("run")
@one_line_errors
def windows_run(bounded: bool = typer.Option(False, help="Stop at the end offsets found at start."),
                savepoint: str | None = typer.Option(None, help="Start from this savepoint or checkpoint.")):
    """Run the window job on the embedded MiniCluster (same as `python jobs/windows.py`)."""
    from jobs.windows import main

    main((["--bounded"] if bounded else []) + (["--savepoint", savepoint] if savepoint else []))


@alerts_app.command("list")
@one_line_errors
def alerts_list():
    """Print the alerts of the alerts topic (read_committed)."""
    from segstream.demo import read_alerts

    for alert in read_alerts(settings()):
        console.print_json(data=alert)


@alerts_app.command("notify")
@one_line_errors
def alerts_notify(webhook: list[str] = typer.Option([], help="Webhook URL (repeatable; default alerts.webhooks)."),
                  once: bool = typer.Option(False, help="Stop at the end of the alerts found at start.")):
    """POST each alert to the webhooks, at least once (offsets committed after delivery)."""
    from segstream.notifier import Notifier

    s = settings()
    config = s.alerts.model_copy(update={"webhooks": webhook}) if webhook else s.alerts
    if not config.webhooks:
        raise StackError("no webhook: set alerts.webhooks in conf/segstream.yaml or pass --webhook URL")
    delivered = Notifier(s, config, log=console.print).run(once=once)
    console.print(f"delivered {delivered} alerts")


@app.command()
@one_line_errors
def demo(events: int = typer.Option(20_000), users: int = typer.Option(1_000)):
    """Fresh local stack, sample traffic, the jobs, a summary of the results, and requests through the front."""
    from segstream.demo import run_demo

    run_demo(settings(), events, users, console)


@app.command()
@one_line_errors
def summary():
    """Summarize what is in the evaluations and dead-letters topics (and one user's Bigtable history)."""
    from segstream.demo import summarize

    summarize(settings(), console)


@app.command()
@one_line_errors
def history(user_id: str, tenant: str = typer.Option("default"), limit: int = typer.Option(20),
            since: int | None = typer.Option(None, help="Only events at or after this epoch-ms ts.")):
    """A user's events from the Bigtable event log, newest first."""
    from sinks.bigtable import BigtableUnavailable
    from sinks.bigtable.reader import read_history

    try:
        rows = read_history(settings().bigtable, tenant, user_id, limit=limit, since_ts=since)
    except BigtableUnavailable as exc:
        raise StackError(f"Bigtable is unreachable: {exc}") from None
    if not rows:
        raise StackError(f"no events for user {user_id!r} in tenant {tenant!r}")
    for row in rows:
        console.print_json(data=row)


@app.command()
@one_line_errors
def profile(user_id: str, tenant: str = typer.Option("default")):
    """A user's latest profile (stats and segments) from Bigtable."""
    from sinks.bigtable import BigtableUnavailable
    from sinks.bigtable.reader import read_profile

    try:
        row = read_profile(settings().bigtable, tenant, user_id)
    except BigtableUnavailable as exc:
        raise StackError(f"Bigtable is unreachable: {exc}") from None
    if row is None:
        raise StackError(f"no profile for user {user_id!r} in tenant {tenant!r}")
    console.print_json(data=row)


@app.command()
@one_line_errors
def erase(user_id: str, tenant: str = typer.Option("default"),
          wait: float = typer.Option(60.0, help="Seconds to wait for the job's acknowledgement (0: do not wait).")):
    """Erase a user: their keyed state in the running job, then their Bigtable rows (docs/security.md)."""
    import json

    from segstream.control import erase as send_erase

    ack = send_erase(settings(), tenant, user_id, wait or None)
    if ack is None:
        raise StackError(f"no acknowledgement within {wait:.0f} s: is the job running? (the command stays on "
                         "the events topic and is applied when the job reads it)")
    console.print_json(json.dumps(ack))


@batch_cli.rules_app.command("publish")
@one_line_errors
def rules_publish(file: Path = typer.Argument(..., help="A rule as JSON or YAML: {id, tenant?, description, when}.")):
    """Publish a rule to the running job's rules topic, signed as an operator (docs/security.md)."""
    import yaml

    from segstream.control import publish_rule

    rule = yaml.safe_load(file.read_text(encoding="utf-8"))
    if not isinstance(rule, dict):
        raise StackError(f"{file}: expected one rule (a mapping)")
    console.print(f"published rule {publish_rule(settings(), rule)!r}")


@batch_cli.rules_app.command("delete")
@one_line_errors
def rules_delete(rule_id: str):
    """Delete a rule from the running job (a signed tombstone on the rules topic)."""
    from segstream.control import delete_rule

    delete_rule(settings(), rule_id)
    console.print(f"deleted rule {rule_id!r}")


@app.command()
@one_line_errors
def serve(host: str | None = typer.Option(None, help="Default: serving.host."),
          port: int | None = typer.Option(None, help="Default: serving.port."),
          workers: int = typer.Option(1, help="Worker processes; each is a front instance with its own reply topic.")):
    """Run the tracking front (HTTP API, docs/serving.md) on uvicorn."""
    from serving.server import serve as run_server

    s = settings().serving
    run_server(host or s.host, port or s.port, workers)


def key_store():
    from serving.keys import KeyStore

    s = settings()
    return KeyStore(s.path(s.serving.keys_file))


@tenant_app.command("add")
@one_line_errors
def tenant_add(name: str, admin: bool = typer.Option(False, help="An admin key (rules for every tenant).")):
    """Make a new key for tenant NAME and print it once (only its sha256 is stored)."""
    try:
        key, entry = key_store().add(name, admin=admin)
    except ValueError as exc:
        raise StackError(str(exc)) from None
    console.print(f"tenant {entry.tenant!r}: key id {entry.id}; the key (shown only now):", highlight=False)
    print(key)


@tenant_app.command("list")
@one_line_errors
def tenant_list():
    """Tenants and their key ids (never the keys)."""
    import datetime as dt

    entries = key_store().entries()
    if not entries:
        console.print("no keys")
    for e in entries:
        created = dt.datetime.fromtimestamp(e.created, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        console.print(f"{e.tenant:24} {e.id}  created {created}{'  admin' if e.admin else ''}", highlight=False)


@tenant_app.command("revoke")
@one_line_errors
def tenant_revoke(name_or_id: str):
    """Revoke every key of a tenant, or one key by its id; running fronts stop accepting it within a second."""
    gone = key_store().revoke(name_or_id)
    if not gone:
        raise StackError(f"no tenant or key id {name_or_id!r}")
    console.print(f"revoked {len(gone)} key(s): " + ", ".join(f"{e.tenant} {e.id}" for e in gone), highlight=False)


if __name__ == "__main__":
    sys.exit(app())
