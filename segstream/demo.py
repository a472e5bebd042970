"""The demo: fresh local stack, sample traffic and a rule change, the job bounded, a readable summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter

import msgspec
from rich.console import Console
from rich.table import Table

from segstream.config import PROJECT_ROOT, Settings
from segstream.errors import StackError
from segstream.kafka_admin import read_topic, value_of
from segstream.produce import Burst, Record, TrafficSpec, burst_start, generate, produce_records, with_burst
from segstream.stack import Stack

# Added through the rules topic while the traffic is in it: a run-time change, not a conf/ edit.
# A surge of page views in one 5-minute window, 80 % into the traffic: the windows alert on it.
DEMO_SURGE = 300
DEMO_RULE = {"id": "engaged_browser", "description": "Viewed 5+ pages in one session window",
             "when": "page_views >= 5 && sessions <= 2"}


def run_demo(settings: Settings, events: int, users: int, console: Console) -> None:
    stack = Stack(settings)
    console.rule("1. local stack")
    stack.down()  # the broker and the emulator keep data in memory: a restart gives a clean slate
    stack.up()
    console.print(f"Apache Kafka {settings.kafka.bootstrap_servers}, Bigtable emulator "
                  f"127.0.0.1:{settings.stack.emulator_port}, topics and tables created")

    console.rule("2. sample traffic")
    topics = settings.kafka.topics
    bootstrap = settings.kafka.bootstrap_servers
    history = list(generate(TrafficSpec(events=events, users=users, seed=42, tenants=2)))
    surge_at = burst_start(history)
    traffic = with_burst(history, Burst(surge_at, DEMO_SURGE))
    half = len(traffic) // 2
    produce_records(bootstrap, topics.events, traffic[:half])
    produce_records(bootstrap, topics.rules, [Record(DEMO_RULE["id"].encode(), msgspec.json.encode(DEMO_RULE), None),
                                              Record(b"broken_rule", b'{"id": "broken_rule", "when": "1 +"}', None)])
    produce_records(bootstrap, topics.events, traffic[half:])
    console.print(f"{events} events for {users} users (2 tenants) with a surge of {DEMO_SURGE} page views "
                  f"at {time.strftime('%Y-%m-%d %H:%M', time.gmtime(surge_at / 1000))} UTC, "
                  f"a rule added and an invalid rule on `{topics.rules}`")

    # The main job computes the windows (windows.enabled, the default); with windows.enabled false
    # the standalone window job runs them, side by side with it (docs/windows.md).
    scripts = ["user_stats"] if settings.windows.enabled else ["user_stats", "windows"]
    console.rule("3. the job (embedded MiniCluster, bounded): user stats and windows"
                 + ("" if settings.windows.enabled else ", as two jobs side by side"))
    started = time.monotonic()
    with console.status(f"running {' and '.join(f'jobs/{s}.py --bounded' for s in scripts)} ..."):
        logs = stack.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        running = []
        for script in scripts:
            log = (logs / f"demo-{script}.log").open("w")
            running.append((script, log, subprocess.Popen(
                [sys.executable, str(PROJECT_ROOT / "jobs" / f"{script}.py"), "--bounded"], cwd=PROJECT_ROOT,
                env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)))
        for script, log, process in running:
            code = process.wait()
            log.close()
            if code != 0:
                raise StackError(f"jobs/{script}.py failed (exit {code}); its output is in {log.name}")
    console.print(f"finished in {time.monotonic() - started:.0f} s (JVM and job start-up included)")

    console.rule("4. results")
    summarize(settings, console)
    console.print("\nStop the stack with: [bold].venv/bin/segstream stack down[/bold]")


def read_alerts(settings: Settings) -> list[dict]:
    return [msgspec.json.decode(value_of(m))
            for m in read_topic(settings.kafka.bootstrap_servers, settings.kafka.topics.alerts)]


def summarize_windows(settings: Settings, console: Console) -> None:
    """What the windows wrote: aggregates per definition, late events, and every alert."""
    topics = settings.kafka.topics
    bootstrap = settings.kafka.bootstrap_servers
    aggregates = [msgspec.json.decode(value_of(m)) for m in read_topic(bootstrap, topics.aggregates)]
    late = read_topic(bootstrap, topics.late_events)
    table = Table("window", "windows emitted", "events counted", "busiest window")
    for window in sorted({a["window"] for a in aggregates}):
        mine = [a for a in aggregates if a["window"] == window]
        top = max(mine, key=lambda a: a["count"])
        when = time.strftime("%m-%d %H:%M", time.gmtime(top["window_start"] / 1000))
        table.add_row(window, str(len(mine)), str(sum(a["count"] for a in mine)),
                      f"{top['tenant']}{'' if top['value'] is None else ' ' + top['value']} {when}: {top['count']}")
    console.print(table)
    console.print(f"late events: {len(late)}")
    alerts = read_alerts(settings)
    console.print(f"surge alerts: {len(alerts)}")
    from segstream.notifier import message

    for alert in alerts:
        console.print(f"  [bold red]ALERT[/bold red] {message(alert)['text']}  (id {alert['id']})")


def summarize(settings: Settings, console: Console) -> None:
    topics = settings.kafka.topics
    bootstrap = settings.kafka.bootstrap_servers
    evaluations = [msgspec.json.decode(value_of(m)) for m in read_topic(bootstrap, topics.evaluations)]
    dead = [msgspec.json.decode(value_of(m)) for m in read_topic(bootstrap, topics.dead_letters)]
    expirations = read_topic(bootstrap, topics.expirations)
    users = {(e["tenant"], e["user_id"]) for e in evaluations}
    console.print(f"evaluations: {len(evaluations)}   users: {len(users)}   dead letters: {len(dead)}   "
                  f"expirations: {len(expirations)}")

    reasons = Counter(re.sub(r"\d{2,}", "N", d["reason"].split(":")[0]) for d in dead)
    table = Table("dead-letter reason", "records")
    for reason, n in reasons.most_common():
        table.add_row(reason, str(n))
    console.print(table)

    last: dict[tuple[str, str], dict] = {}
    entered: Counter[str] = Counter()
    exited: Counter[str] = Counter()
    for e in evaluations:
        key = (e["tenant"], e["user_id"])
        if key not in last or e["seq"] > last[key]["seq"]:
            last[key] = e
        entered.update(e["entered"])
        exited.update(e["exited"])
    members = Counter(s for e in last.values() for s in e["segments"])
    table = Table("segment", "users in it now", "entries", "exits")
    for segment in sorted(set(members) | set(entered)):
        table.add_row(segment, str(members[segment]), str(entered[segment]), str(exited[segment]))
    console.print(table)

    hottest = sorted(last.values(), key=lambda e: -e["seq"])[:3]
    for e in hottest:
        shown = {k: v for k, v in e["stats"].items() if v not in (None, 0)}
        console.print(f"[bold]{e['tenant']}/{e['user_id']}[/bold] after {e['seq']} events: segments {e['segments']}")
        console.print(f"  {shown}")

    if settings.bigtable.enabled and hottest:
        from sinks.bigtable.reader import read_history

        user = hottest[0]
        history = read_history(settings.bigtable, user["tenant"], user["user_id"], limit=5)
        console.print(f"\nBigtable history of {user['tenant']}/{user['user_id']}, newest first "
                      f"(segstream history {user['user_id']} --tenant {user['tenant']}):")
        for row in history:
            console.print(f"  {row}")

    console.print()
    summarize_windows(settings, console)
