"""What event_id de-duplication costs the engines, side by side in one run: the same generated
traffic through each engine with the shipped catalogue as is (dedup_events 32, dedup_horizon 10m)
and with de-duplication off, alternating, best of --repeat.

    .venv/bin/python bench/dedup_cost.py [--events 20000] [--users 300] [--repeat 3]

Per engine and setting: µs per event of the whole replay (segstream/replay.py: parse, evaluate,
render; the JVM one includes its start, measured apart with an empty script and subtracted) and
the users' mean and max state size at the end (Python engine blobs; the JVM's binary form holds
the same receipts). Not included: the job's RocksDB read and write of the bigger state (run
bench/throughput.py for the end-to-end figure).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from operators.catalogue import parse_catalogue  # noqa: E402
from operators.evaluator import Evaluator  # noqa: E402
from operators.events import InvalidEvent, parse_record  # noqa: E402
from operators.rules import RuleSet, compile_rule  # noqa: E402
from segstream.produce import TrafficSpec, generate  # noqa: E402
from segstream.replay import jvm_replay, python_replay  # noqa: E402


def script(catalogue: dict, rules: list[dict], values: list[bytes]) -> list[str]:
    lines = [json.dumps({"catalogue": catalogue}), json.dumps({"rules": rules})]
    return lines + [json.dumps({"event_b64": base64.b64encode(v).decode()}) for v in values]


def state_sizes(catalogue: dict, rules: list[dict], values: list[bytes]) -> tuple[float, int]:
    cat = parse_catalogue(catalogue)
    evaluator = Evaluator(cat, RuleSet(cat, [compile_rule(r, cat) for r in rules]))
    states: dict[tuple[str, str], bytes] = {}
    for value in values:
        try:
            event = parse_record(value)
        except InvalidEvent:
            continue
        key = (event.tenant, event.user_id)
        states[key] = evaluator.process(states.get(key), event, {"rules_version": 0}).blob
    sizes = [len(b) for b in states.values()]
    return statistics.mean(sizes), max(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    shipped = yaml.safe_load((ROOT / "conf" / "stats.yaml").read_text())
    off = {k: v for k, v in shipped.items() if not k.startswith("dedup_")}
    rules = yaml.safe_load((ROOT / "conf" / "rules.yaml").read_text())["rules"]
    values = [r.value for r in generate(TrafficSpec(events=args.events, users=args.users, tenants=2,
                                                    invalid_ratio=0.0, seed=11)) if r.value is not None]
    settings = {"dedup off": off, f"dedup {shipped.get('dedup_events')}/{shipped.get('dedup_horizon')}": shipped}
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.repeat):
        start = time.perf_counter()
        jvm_replay(script(off, rules, []))
        jvm_start = time.perf_counter() - start
        for name, catalogue in settings.items():
            lines = script(catalogue, rules, values)
            for engine, replay in (("python", python_replay), ("jvm", jvm_replay)):
                start = time.perf_counter()
                replay(lines)
                took = time.perf_counter() - start - (jvm_start if engine == "jvm" else 0.0)
                best[(engine, name)] = min(best.get((engine, name), float("inf")), took)
    for name, catalogue in settings.items():
        mean, biggest = state_sizes(catalogue, rules, values)
        print(f"{name:>16}: python {best[('python', name)] / len(values) * 1e6:7.1f} µs/event   "
              f"jvm {best[('jvm', name)] / len(values) * 1e6:6.1f} µs/event   "
              f"state mean {mean:,.0f} B, max {biggest:,} B")


if __name__ == "__main__":
    main()
