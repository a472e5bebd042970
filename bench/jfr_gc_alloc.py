"""GC and allocation per event from a recording of bench/profile_job.py (settings=profile).

    .venv/bin/python bench/jfr_gc_alloc.py /tmp/segstream-profile/user_stats-<time>.jfr --events 200000

GC: the collections (jdk.GarbageCollection) by collector, their count and summed duration (the
pauses of young collections; G1's concurrent work is not in them). Allocation:
jdk.ObjectAllocationSample's weights (JFR's estimate of the bytes allocated since the thread's
previous sample, so their sum estimates all allocation), summed per event and by the first frame
that is not a JDK/Guava helper (java., jdk., sun., Guava) — where to cut allocations.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import typer

app = typer.Typer(add_completion=False)
HELPER = ("java.", "jdk.", "sun.", "com.google.common.", "io.segstream.shaded.com.google.common.")


def _events(jfr: Path, names: str, depth: int) -> list[dict]:
    out = subprocess.run(["jfr", "print", "--json", "--stack-depth", str(depth), "--events", names, str(jfr)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["recording"]["events"]


def _frame(f: dict) -> str:
    m = f["method"]
    return f"{m['type']['name'].replace('/', '.')}.{m['name']}"


def _ms(duration: str) -> float:
    # JFR JSON durations look like "PT0.001234S"
    return float(duration.removeprefix("PT").removesuffix("S")) * 1000 if duration.startswith("PT") else 0.0


@app.command()
def main(jfr: Path, events: int = typer.Option(200_000, help="events the run processed"),
         top: int = 15) -> None:
    gcs = _events(jfr, "jdk.GarbageCollection", 1)
    by_name: dict[str, list[float]] = defaultdict(list)
    for e in gcs:
        by_name[e["values"]["name"]].append(_ms(e["values"]["duration"]))
    for name, durations in by_name.items():
        print(f"GC {name}: {len(durations)} collections, {sum(durations):,.0f} ms in total "
              f"({sum(durations) * 1000 / events:.2f} µs/event), longest {max(durations):.1f} ms")
    allocs = _events(jfr, "jdk.ObjectAllocationSample", 12)
    total = 0
    by_site: Counter[str] = Counter()
    by_class: Counter[str] = Counter()
    for e in allocs:
        v = e["values"]
        weight = v["weight"]
        total += weight
        frames = (v.get("stackTrace") or {}).get("frames") or []
        site = next((_frame(f) for f in frames if not _frame(f).startswith(HELPER)),
                    _frame(frames[0]) if frames else "?")
        by_site[site] += weight
        by_class[v["objectClass"]["name"].replace('/', '.')] += weight
    print(f"allocated (sampled weights): {total / 1e9:.2f} GB, {total / events:,.0f} B/event "
          f"({len(allocs):,} samples)")
    print("by site (first non-JDK frame), B/event:")
    for site, w in by_site.most_common(top):
        print(f"  {w / events:>8,.0f}  {site}")
    print("by class, B/event:")
    for cls, w in by_class.most_common(top):
        print(f"  {w / events:>8,.0f}  {cls}")


if __name__ == "__main__":
    app()
