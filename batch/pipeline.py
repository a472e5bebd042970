"""`segstream recompute`: the Apache Beam pipeline (Python SDK).

    key ranges of the hash prefix (or users)
      │ Reshuffle                         spread the ranges over the workers
      ▼ ReadRange (DoFn, the Python Bigtable client)   each user's events rows (+ live profile for --report)
      ▼ ReplayUser (DoFn, operators/ Evaluator in seq order, the rules of each event's rules_version)
      ├──► profiles-*.jsonl  the recomputed profile of every user (its last evaluation)
      └──► compare-*.jsonl   with --report: the user's live profile vs the recomputation at its seq

Beam's Python ReadFromBigtable is a cross-language transform (it needs a Java expansion service),
so the read is a plain DoFn over key ranges. No GroupByKey: all of a user's rows share the hash
prefix, so they come out of one range one after the other, and the read and the replay fuse into
one stage (no element is serialized between them). Here it runs on the DirectRunner in multi_processing
mode; Dataflow and the portable Flink runner are the production runners (docs/batch.md).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import apache_beam as beam
import orjson
from apache_beam.options.pipeline_options import PipelineOptions

from batch.compare import compare_user
from batch.config import BatchConfig
from batch.history import HistoryRow, KeyRange, LiveProfile, Reader, prefix_ranges, user_range
from batch.replay import replay_user
from batch.rulelog import RuleHistory
from operators.catalogue import parse_catalogue
from sinks.bigtable.config import BigtableConfig


@dataclass
class Selection:
    """What to recompute: every user, one tenant's, or a list of (tenant, user_id)."""

    tenant: str | None = None
    users: list[tuple[str, str]] = field(default_factory=list)
    # Read only this share of the hash-prefix space: a uniform sample of users, since the prefix
    # is a hash of (tenant, user).
    fraction: float = 1.0

    def ranges(self, b: BigtableConfig, parts: int) -> list[KeyRange]:
        if self.users:
            return [user_range(t, u, b.hash_prefix_hex) for t, u in self.users]
        return prefix_ranges(b.hash_prefix_hex, parts, self.fraction)


@dataclass
class Rules:
    """The engine's inputs, as plain data (they travel to the workers pickled)."""

    catalogue: dict
    initial: list[dict]
    log: list[dict]
    fixed: list[dict] | None = None  # every event under these rules instead of the log's

    def history(self) -> RuleHistory:
        return RuleHistory(parse_catalogue(self.catalogue), self.initial, self.log, self.fixed)


class _Progress:
    """Counts a worker's rows and users into a small file the driver sums (workers are processes)."""

    def __init__(self, directory: str | None, kind: str):
        self.path = Path(directory) / f"{kind}-{os.getpid()}-{id(self)}" if directory else None
        self.count = 0
        self._written = 0.0

    def add(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if self.path is not None and now - self._written >= 1.0:
            self.flush()
            self._written = now

    def flush(self) -> None:
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(str(self.count))
            tmp.replace(self.path)


class ReadRange(beam.DoFn):
    """A key range -> ((tenant, user_id), events rows, live profile or None), one per user."""

    def __init__(self, bigtable: BigtableConfig, batch: BatchConfig, selection: Selection, with_profiles: bool,
                 progress_dir: str | None):
        self.bigtable, self.batch, self.selection = bigtable, batch, selection
        self.with_profiles, self.progress_dir = with_profiles, progress_dir

    def setup(self) -> None:
        self.reader = Reader(self.bigtable, self.batch.read_timeout_s, self.batch.attempt_timeout_s)
        self.progress = _Progress(self.progress_dir, "rows")
        self.wanted = set(self.selection.users) or None

    def teardown(self) -> None:
        self.progress.flush()
        self.reader.close()

    def process(self, r: KeyRange) -> Iterator[tuple[tuple[str, str], list[HistoryRow], LiveProfile | None]]:
        for who, rows, profile in self.reader.users(r, self.selection.tenant, self.with_profiles):
            if self.wanted is None or who in self.wanted:
                self.progress.add(len(rows))
                yield who, rows, profile
        self.progress.flush()


class ReplayUser(beam.DoFn):
    """((tenant, user_id), rows) -> the recomputed profile, and with --report the comparison."""

    COMPARE = "compare"

    def __init__(self, rules: Rules, report: bool, progress_dir: str | None):
        self.rules, self.report, self.progress_dir = rules, report, progress_dir

    def setup(self) -> None:
        self.history = self.rules.history()
        self.progress = _Progress(self.progress_dir, "users")

    def teardown(self) -> None:
        self.progress.flush()

    def process(self, element) -> Iterator:
        (tenant, user_id), rows, live = element
        replayed = replay_user(tenant, user_id, rows, self.history) if rows else None
        self.progress.add()
        last = replayed.last if replayed else None
        if last is not None and replayed is not None and replayed.last_event is not None:
            event = replayed.last_event
            # The event too: a rule dry run (`segstream rules try`) may read `event`.
            profile = dict(last, last_event={"name": event.name, "values": event.values, "ts": event.ts})
            yield orjson.dumps(profile).decode()
        if self.report:
            yield beam.pvalue.TaggedOutput(self.COMPARE, orjson.dumps(compare_user(live, replayed)).decode())
        self.progress.flush()


@dataclass
class RunResult:
    out_dir: Path
    rows: int
    users: int
    seconds: float

    def files(self, kind: str) -> list[Path]:
        return sorted(self.out_dir.glob(f"{kind}-*"))

    def lines(self, kind: str) -> Iterator[dict]:
        for path in self.files(kind):
            with path.open(encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield json.loads(line)


def run(bigtable: BigtableConfig, batch: BatchConfig, rules: Rules, selection: Selection, out_dir: Path,
        report: bool = False, workers: int | None = None, progress: bool = True) -> RunResult:
    """Run the pipeline to the end; files go to out_dir (profiles-*.jsonl, compare-*.jsonl)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in list(out_dir.glob("profiles-*")) + list(out_dir.glob("compare-*")):
        old.unlink()
    n_workers = workers or batch.workers
    if batch.pipeline_options:  # a production runner (docs/batch.md): its options, as given
        options = PipelineOptions(flags=list(batch.pipeline_options))
    else:
        options = PipelineOptions(flags=[], runner="DirectRunner", direct_running_mode="multi_processing",
                                  direct_num_workers=n_workers)
    with tempfile.TemporaryDirectory(prefix="segstream-recompute-") as progress_dir:
        reporter = _Reporter(progress_dir, batch.progress_interval_s, progress)
        started = time.monotonic()
        reporter.start()
        try:
            with beam.Pipeline(options=options) as p:
                ranges = (p | "ranges" >> beam.Create(selection.ranges(bigtable, batch.key_ranges))
                          | "spread" >> beam.Reshuffle())
                rows = ranges | "read" >> beam.ParDo(ReadRange(bigtable, batch, selection, report, progress_dir))
                results = (rows | "replay" >> beam.ParDo(ReplayUser(rules, report, progress_dir)).with_outputs(
                               ReplayUser.COMPARE, main="profiles"))
                results.profiles | "profiles" >> beam.io.WriteToText(
                    str(out_dir / "profiles"), file_name_suffix=".jsonl")
                if report:
                    results[ReplayUser.COMPARE] | "compare" >> beam.io.WriteToText(
                        str(out_dir / "compare"), file_name_suffix=".jsonl")
        finally:
            reporter.stop()
        row_count, user_count = reporter.totals()
    return RunResult(out_dir, row_count, user_count, time.monotonic() - started)


class _Reporter(threading.Thread):
    """Prints "read N rows, replayed M users" every interval while the pipeline runs."""

    def __init__(self, directory: str, interval: float, enabled: bool):
        super().__init__(daemon=True)
        self.directory, self.interval, self.enabled = Path(directory), interval, enabled
        self._stop_event = threading.Event()
        self._began = time.monotonic()

    def totals(self) -> tuple[int, int]:
        rows = users = 0
        for path in self.directory.iterdir():
            if path.suffix == ".tmp":
                continue
            try:
                n = int(path.read_text() or 0)
            except (OSError, ValueError):  # being replaced right now
                continue
            if path.name.startswith("rows-"):
                rows += n
            else:
                users += n
        return rows, users

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            if self.enabled:
                rows, users = self.totals()
                elapsed = time.monotonic() - self._began
                print(f"recompute: {elapsed:6.0f} s, read {rows:,} events rows ({rows / elapsed:,.0f}/s), "
                      f"replayed {users:,} users", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
