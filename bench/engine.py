"""Micro-benchmark of the pure-Python engine: Evaluator.process per event, without Flink.

    .venv/bin/python bench/engine.py                 # default catalogue, 50 generated rules
    .venv/bin/python bench/engine.py --unguarded 1   # one rule reads `event` on every event
    .venv/bin/python bench/engine.py --profile       # cProfile of the timed loop

The timed loop is what the Flink job does per event: one state blob in, process, one blob out
(the job's keyed-state read and write are replaced by a dict). Events are generated beforehand
from a small e-commerce model matching conf/stats.yaml.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import statistics
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from operators.catalogue import Catalogue, load_catalogue  # noqa: E402
from operators.evaluator import Evaluator  # noqa: E402
from operators.events import Event  # noqa: E402
from operators.rules import RuleSet, compile_rule  # noqa: E402

MINUTE = 60_000
EVENT_MIX = [
    ("page_view", 60), ("search", 14), ("add_to_cart", 12), ("login", 7), ("purchase", 5), ("identify", 2),
]  # fmt: skip
PATHS = [f"/p/{i}" for i in range(400)]
DEVICES = ["ios", "android", "web"]
COUNTRIES = ["FR", "DE", "US", "BR", "JP"]


def generated_rules(catalogue: Catalogue, count: int, guarded: int, unguarded: int, rng: random.Random) -> list[dict]:
    """`count` rules: comparisons of 1-3 stats with thresholds, `guarded` of them of the form
    `event.name == "purchase" && ...`, `unguarded` reading `event` without such a guard."""
    numeric = [
        ("events_total", 5, 500), ("sessions", 1, 20), ("page_views", 5, 300), ("page_views_1h", 2, 40),
        ("distinct_pages", 3, 80), ("searches_24h", 1, 20), ("cart_adds_24h", 1, 10),
        ("distinct_products_7d", 1, 15), ("purchases", 1, 10), ("purchases_30d", 1, 5),
        ("total_spent", 100, 20_000), ("spent_7d", 50, 5_000),
    ]  # fmt: skip
    nullable = [("avg_purchase", 50, 8_000), ("max_purchase", 100, 9_000)]

    def comparison() -> str:
        if rng.random() < 0.25:
            name, low, high = rng.choice(nullable)
            return f"({name} != null && {name} > {rng.randint(low, high)}.0)"
        name, low, high = rng.choice(numeric)
        return f"{name} {rng.choice(['>=', '<', '>'])} {rng.randint(low, high)}"

    extras = [
        "is_member == true",
        'last_device == "ios"',
        'country == "FR"',
        "(last_purchase_at == null || last_seen - last_purchase_at > 86400000)",
        "last_seen - first_seen > 3600000",
    ]
    rules = []
    for i in range(count):
        parts = [comparison() for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.3:
            parts.append(rng.choice(extras))
        if i < guarded:
            parts.insert(0, 'event.name == "purchase" && has(event.values.amount)')
            parts.append(f"event.values.amount > {rng.randint(10, 500)}.0")
        elif i < guarded + unguarded:
            parts.append('has(event.values.device) && event.values.device == "ios"')
        joiner = " && " if rng.random() < 0.7 else " || "
        rules.append({"id": f"rule_{i:02d}", "description": "generated", "when": joiner.join(parts)})
    for rule in rules:
        compile_rule(rule, catalogue)  # fail early on a template mistake
    return rules


def generated_events(users: int, count: int, rng: random.Random) -> list[Event]:
    names = [name for name, _ in EVENT_MIX]
    weights = [weight for _, weight in EVENT_MIX]
    clocks = {f"user-{u}": 1_700_000_000_000 + rng.randrange(86_400_000) for u in range(users)}
    user_ids = list(clocks)
    # A user keeps their device and country, mostly.
    devices = {user: rng.choice(DEVICES) for user in user_ids}
    countries = {user: rng.choice(COUNTRIES) for user in user_ids}
    events = []
    for n in range(count):
        user = rng.choice(user_ids)
        # mostly seconds to minutes apart; now and then a new session or a new day
        clocks[user] += int(rng.choice([rng.expovariate(1 / 20_000)] * 8 + [45 * MINUTE, 26 * 60 * MINUTE]))
        ts = clocks[user] - (rng.randrange(10 * MINUTE) if rng.random() < 0.05 else 0)  # 5% late
        name = rng.choices(names, weights)[0]
        if rng.random() < 0.02:
            devices[user] = rng.choice(DEVICES)
        values: dict = {"device": devices[user], "country": countries[user]}
        if name == "page_view":
            values["path"] = rng.choice(PATHS)
        elif name == "search":
            values["query"] = f"q{rng.randrange(1000)}"
        elif name == "add_to_cart":
            values.update(product_id=f"sku-{rng.randrange(2000)}", price=round(rng.uniform(5, 500), 2))
        elif name == "purchase":
            values.update(amount=round(rng.lognormvariate(5, 1.2), 2), items=rng.randint(1, 5), currency="EUR")
        elif name == "identify":
            values["member"] = rng.random() < 0.3
        events.append(Event(event_id=str(n), user_id=user, ts=ts, name=name, values=values, tenant="default"))
    return events


def timed_run(evaluator: Evaluator, events: list[Event]) -> tuple[float, dict[str, bytes]]:
    """CPU seconds of this process for the run (other load on the machine does not count), and the states."""
    states: dict[str, bytes] = {}
    get, process = states.get, evaluator.process
    start = time.process_time()
    for event in events:
        states[event.user_id] = process(get(event.user_id), event).blob
    return time.process_time() - start, states


def calibration_us() -> float:
    """CPU µs of a fixed pure-Python loop, to compare machines (about 10 µs on a recent desktop core)."""
    return min(timeit.repeat("sum(range(1000))", number=2_000, repeat=5, timer=time.process_time)) / 2_000 * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stats", default=str(ROOT / "conf" / "stats.yaml"))
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--guarded", type=int, default=5, help="rules `event.name == \"purchase\" && ...`")
    parser.add_argument("--unguarded", type=int, default=0, help="rules reading `event` on every event")
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    catalogue = load_catalogue(args.stats)
    rules = generated_rules(catalogue, args.rules, args.guarded, args.unguarded, rng)
    events = generated_events(args.users, args.events, rng)

    def fresh_evaluator() -> Evaluator:
        return Evaluator(catalogue, RuleSet(catalogue, [compile_rule(rule, catalogue) for rule in rules]))

    print(f"catalogue: {len(catalogue.stats)} stats; rules: {len(rules)} ({args.guarded} guarded on event.name, "
          f"{args.unguarded} reading event unguarded); "
          f"{args.events:,} events over {args.users:,} users")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(timed_run, fresh_evaluator(), events)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return

    timed_run(fresh_evaluator(), events[: args.events // 10])  # warm up
    runs = [timed_run(fresh_evaluator(), events) for _ in range(args.repeat)]
    seconds = [elapsed for elapsed, _ in runs]
    best = min(seconds)
    per_event = best / len(events) * 1e6
    print(f"per event: {per_event:.1f} µs CPU (best of {args.repeat}; median "
          f"{statistics.median(seconds) / len(events) * 1e6:.1f} µs) = {len(events) / best:,.0f} events/s on one core")
    print(f"calibration: sum(range(1000)) takes {calibration_us():.1f} µs CPU on this machine")
    sizes = [len(blob) for blob in runs[0][1].values()]
    print(f"state blob per user after ~{args.events // args.users} events: mean {statistics.mean(sizes):.0f} B, "
          f"max {max(sizes)} B")

    # One user with 1,000 events (same generator, one user): the blob of an active user.
    heavy = generated_events(1, 1_000, random.Random(args.seed + 1))
    _, states = timed_run(fresh_evaluator(), heavy)
    (blob,) = states.values()
    print(f"state blob of one user after 1,000 events: {len(blob)} B")
    print(json.dumps({"us_per_event": round(per_event, 2), "events_per_s": round(len(events) / best),
                      "blob_bytes_1000_events": len(blob)}))  # fmt: skip


if __name__ == "__main__":
    main()
