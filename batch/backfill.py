"""`segstream backfill`: rebuild a stopped job's savepoint under a new stat catalogue (docs/batch.md,
"Backfill when definitions change").

The work is Java (io.segstream.flink.Backfill, Flink's State Processor API on an embedded
MiniCluster): the live state is in the JVM engine's format. This module builds its command line
from the settings, runs it, relays its progress lines and returns its summary.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from segstream.config import Settings
from segstream.errors import StackError
from segstream.jvm import OUT_DIR, java_binary, require

BACKFILL_LIB = OUT_DIR / "backfill"
MAIN_CLASS = "io.segstream.flink.Backfill"


@dataclass(frozen=True)
class BackfillOptions:
    savepoint: str
    stats_file: Path
    out: str
    parallelism: int = 1  # docs/batch.md 6: parallel writers stalled
    progress_interval_s: float = 5.0
    # No new user rebuilt for this long (after the first): the run is stalled, stopped and run again.
    stall_timeout_s: float = 60.0


def classpath(settings: Settings) -> str:
    """The job jar (Backfill, the engine, the Bigtable client), the State Processor API (copied by the
    jvm/ build), and Flink itself (the PyFlink wheel's lib/)."""
    import pyflink

    jar = require(settings.path(settings.flink.job_jar), "the job jar")
    spa = sorted(require(BACKFILL_LIB, "the State Processor API jar").glob("flink-state-processor-api-*.jar"))
    if not spa:
        raise StackError(f"no flink-state-processor-api jar in {BACKFILL_LIB}: run scripts/setup.sh")
    return ":".join([str(jar), *map(str, spa), f"{Path(pyflink.__file__).parent / 'lib'}/*"])


def command(settings: Settings, options: BackfillOptions, catalogue_json: Path) -> list[str]:
    from segstream.cluster import DEFAULT_JAVA_OPTS

    b = settings.bigtable
    return [java_binary(), *DEFAULT_JAVA_OPTS.split(), *settings.flink.jvm_args.split(), "-cp", classpath(settings),
            MAIN_CLASS, "--savepoint", options.savepoint, "--out", options.out,
            "--catalogue", str(catalogue_json), "--project", b.project, "--instance", b.instance,
            "--events-table", b.events_table, "--hash-prefix-hex", str(b.hash_prefix_hex),
            "--emulator-host", b.emulator_host, "--state-backend", settings.flink.state_backend,
            "--parallelism", str(options.parallelism),
            "--progress-interval-s", str(options.progress_interval_s),
            "--stall-timeout-s", str(options.stall_timeout_s)]


STALLED = 3  # io.segstream.flink.Backfill.STALLED
ATTEMPTS = 3


def run(settings: Settings, options: BackfillOptions, progress=sys.stderr) -> dict:
    """Run the backfill; its `backfill:` lines go to `progress`. Returns the summary (users, rows,
    seconds, outcomes). StackError (one line) if it fails. A stalled run (docs/batch.md, limits:
    the State Processor API's bootstrap thread can vanish) is run again, up to ATTEMPTS times, after
    removing what it wrote to `out`."""
    out = Path(options.out.removeprefix("file://").removeprefix("file:"))
    if out.exists():
        raise StackError(f"{options.out} exists: the new savepoint needs a directory of its own")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return run_once(settings, options, progress)
        except Stalled as exc:
            shutil.rmtree(out, ignore_errors=True)
            if attempt == ATTEMPTS:
                raise StackError(f"the backfill failed: {exc} ({ATTEMPTS} attempts)") from None
            print(f"backfill: {exc}; attempt {attempt + 1} of {ATTEMPTS}", file=progress, flush=True)
    raise AssertionError("unreachable")


class Stalled(Exception):
    pass


def run_once(settings: Settings, options: BackfillOptions, progress=sys.stderr) -> dict:
    catalogue = yaml.safe_load(options.stats_file.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="segstream-backfill-") as tmp:
        catalogue_json = Path(tmp) / "catalogue.json"
        catalogue_json.write_text(json.dumps(catalogue), encoding="utf-8")
        proc = subprocess.Popen(command(settings, options, catalogue_json), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        errors: list[str] = []
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stderr:  # Flink logs nothing to stderr without a log4j config: only ours and failures
            if line.startswith("backfill:") and not line.startswith("backfill: error: "):
                print(line.rstrip(), file=progress, flush=True)
            else:
                errors.append(line.rstrip())
        stdout = proc.stdout.read()
        code = proc.wait()
        if code == STALLED:
            raise Stalled(cause(errors))
        if code != 0:
            raise StackError(f"the backfill failed: {cause(errors)}")
    return json.loads(stdout.strip().splitlines()[-1])


def cause(stderr: list[str]) -> str:
    """The useful line of a failed run's stderr: our own error line, else the innermost `Caused by:`
    of a Java stack trace, else the first exception line (not the client libraries' log lines)."""
    ours = [line.removeprefix("backfill: error: ") for line in stderr if line.startswith("backfill: error: ")]
    if ours:
        return ours[-1]
    causes = [line.removeprefix("Caused by: ") for line in stderr if line.startswith("Caused by: ")]
    if causes:
        return causes[-1]
    exceptions = [line for line in stderr if "Exception" in line or "Error" in line]
    return exceptions[0] if exceptions else next((line for line in stderr if line.strip()), "no output")
