"""The demo: fresh local stack, sample traffic and a rule change, the jobs, a readable summary, and a few
requests through the tracking front with their receipts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec
from rich.console import Console
from rich.table import Table

from operators.events import InvalidEvent, parse_record
from operators.ownership import signing_keys
from segstream.config import PROJECT_ROOT, Settings
from segstream.errors import StackError
from segstream.job_process import JobProcess
from segstream.kafka_admin import end_offsets, read_topic, value_of
from segstream.produce import (
    Burst,
    Record,
    TrafficSpec,
    burst_start,
    generate,
    produce_records,
    signed_rule,
    with_burst,
)
from segstream.stack import Stack
from segstream.waiting import wait_for

# Added through the rules topic while the traffic is in it: a run-time change, not a conf/ edit.
# A surge of page views in one 5-minute window, 80 % into the traffic: the windows alert on it.
DEMO_SURGE = 300
DEMO_RULE = {"id": "engaged_browser", "description": "Viewed 5+ pages in one session window",
             "when": "page_views >= 5 && sessions <= 2"}
JOB_TIMEOUT_S = 900
# Step 5: a visit to a shop of a tenant of its own (acme: conf/rules.yaml has a rule for it), sent
# through the front. The deadline is longer than serving.deadline_ms: the demo shows receipts (200),
# even on a busy laptop; the ms column shows how long each one really took.
DEMO_SHOP, DEMO_SHOPPER = "acme", "shopper-1"
DEMO_VISIT: list[tuple[str, dict[str, str | int]]] = [
    ("page_view", {"path": "/"}), ("page_view", {"path": "/pricing"}),
    ("purchase", {"amount": 1500, "product_id": "42"}), ("page_view", {"path": "/"})]
DEMO_DEADLINE_MS = 2000
FRONT_TIMEOUT_S = 60


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
    keys = signing_keys(settings.ownership, PROJECT_ROOT)  # rule records are signed (docs/security.md)
    broken = b'{"id": "broken_rule", "when": "1 +"}'
    produce_records(bootstrap, topics.rules, [signed_rule(keys, DEMO_RULE["id"], msgspec.json.encode(DEMO_RULE)),
                                              signed_rule(keys, "broken_rule", broken)])
    produce_records(bootstrap, topics.events, traffic[half:])
    console.print(f"{events} events for {users} users (2 tenants) with a surge of {DEMO_SURGE} page views "
                  f"at {time.strftime('%Y-%m-%d %H:%M', time.gmtime(surge_at / 1000))} UTC, "
                  f"a rule added and an invalid rule on `{topics.rules}`")

    # The main job computes the windows (windows.enabled, the default); with windows.enabled false
    # the standalone window job runs them, bounded, side by side with it (docs/windows.md).
    console.rule("3. the job: user stats" + (" and windows" if settings.windows.enabled else
                                             ", and the window job bounded beside it") + " (kept running for step 5)")
    started = time.monotonic()
    logs = stack.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # The user-stats job runs unbounded, as in production: step 5's requests are answered by it.
    (logs / "demo-user_stats.log").unlink(missing_ok=True)
    job = JobProcess.start(None, [], logs / "demo-user_stats.log")
    try:
        with console.status("running jobs/user_stats.py" + ("" if settings.windows.enabled else
                                                             " and jobs/windows.py --bounded") + " ..."), \
                (logs / "demo-windows.log").open("w") as windows_log:
            windows = None if settings.windows.enabled else subprocess.Popen(
                [sys.executable, str(PROJECT_ROOT / "jobs" / "windows.py"), "--bounded"],
                cwd=PROJECT_ROOT, env=os.environ.copy(), stdout=windows_log, stderr=subprocess.STDOUT)
            try:
                wait_for(traffic_done(settings, traffic), JOB_TIMEOUT_S, "the job to evaluate the sample traffic", 0.5,
                         abort=job.exit_reason)
                if windows is None:
                    # Windows commit with the job's checkpoints (exactly-once): wait for the surge's.
                    wait_for(lambda: bool(read_alerts(settings)), JOB_TIMEOUT_S, "the surge alert", 0.5,
                             abort=job.exit_reason)
                    code = 0
                else:
                    code = windows.wait(JOB_TIMEOUT_S)
            finally:
                if windows is not None and windows.poll() is None:
                    windows.kill()
            if code != 0:
                raise StackError(f"jobs/windows.py failed (exit {code}); its output is in {windows_log.name}")
        console.print(f"the traffic evaluated and the surge's window out in {time.monotonic() - started:.0f} s "
                      "(JVM and job start-up included)")

        console.rule("4. results")
        summarize(settings, console)

        console.rule("5. the tracking front: each request answered with its own evaluation")
        track_through_front(settings, console, logs)
    finally:
        job.kill()
    console.print("\nStop the stack with: [bold].venv/bin/segstream stack down[/bold]")


def traffic_done(settings: Settings, traffic: list[Record]) -> Callable[[], bool]:
    """A condition for wait_for: every valid event of `traffic` is on `evaluations`, every invalid one
    dead-lettered, and the Bigtable profile of the user with the most events is up to date (the
    summary reads that user's history back)."""
    from sinks.bigtable.reader import read_profile

    valid: set[str] = set()
    invalid = 0
    for record in traffic:
        try:
            valid.add(parse_record(record.value).event_id)
        except InvalidEvent:
            invalid += 1
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics

    def done() -> bool:
        # Counting records first is cheap; only then read the evaluations (copies after a restart,
        # or transaction markers, can make the count reach the total early).
        if (sum(end_offsets(bootstrap, topics.evaluations).values()) < len(valid)
                or sum(end_offsets(bootstrap, topics.dead_letters).values()) < invalid):
            return False
        evaluations = [msgspec.json.decode(value_of(m)) for m in read_topic(bootstrap, topics.evaluations)]
        if not valid <= {e["event_id"] for e in evaluations}:
            return False
        hottest = max(evaluations, key=lambda e: e["seq"])
        profile = read_profile(settings.bigtable, hottest["tenant"], hottest["user_id"]) \
            if settings.bigtable.enabled else hottest
        return profile is not None and profile["seq"] == hottest["seq"]

    return done


def track_through_front(settings: Settings, console: Console, logs: Path) -> None:
    """Start `segstream serve`, make a key for a demo tenant, send a visit of a few events through
    the front and print the receipts; stop the front."""
    from serving.keys import KeyStore
    from serving.process import FrontProcess, free_or, http_json

    keys_file = logs.parent / "demo-tenants.json"  # the demo's own: it leaves no key in serving.keys_file
    keys_file.unlink(missing_ok=True)
    (logs / "demo-front.log").unlink(missing_ok=True)
    key, entry = KeyStore(keys_file).add(DEMO_SHOP)
    front = FrontProcess.start(None, free_or(settings.serving.port), logs / "demo-front.log",
                               env={"SEGSTREAM_SERVING__KEYS_FILE": str(keys_file),
                                    "SEGSTREAM_SERVING__DEADLINE_MS": str(DEMO_DEADLINE_MS)})
    try:
        front.wait_ready(FRONT_TIMEOUT_S)
        console.print(f"segstream serve on {front.url}; tenant {DEMO_SHOP!r} with a key made for the demo "
                      f"(id {entry.id}); deadline {DEMO_DEADLINE_MS} ms")
        receipts = []
        for name, values in DEMO_VISIT:
            started = time.monotonic()
            status, answer = http_json("POST", f"{front.url}/v1/track",
                                       {"user_id": DEMO_SHOPPER, "name": name, "values": values}, key)
            took = (time.monotonic() - started) * 1000
            what = " ".join([name, *(f"{k}={v}" for k, v in values.items())])
            console.print(f"POST /v1/track [bold]{what}[/bold] -> {status} in {took:.0f} ms", highlight=False)
            if status == 200:
                receipts.append(answer)
                console.print(f"  seq {answer['seq']}  segments: {', '.join(answer['segments']) or '-'}  "
                              f"entered: {', '.join(answer['entered']) or '-'}  "
                              f"exited: {', '.join(answer['exited']) or '-'}", highlight=False)
            else:
                console.print(f"  {answer}", highlight=False)
        if receipts:
            console.print(f"the last receipt in full (the stats of {DEMO_SHOP}/{DEMO_SHOPPER} after this event):")
            console.print_json(data=receipts[-1])
        console.print(f"Try it in a browser: run `segstream run` and `segstream serve`, make a key "
                      f"with `segstream tenant add NAME` and open http://{settings.serving.host}:"
                      f"{settings.serving.port}/demo?key=KEY (docs/serving.md)")
    finally:
        front.terminate()


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
