"""Where the job's time goes: one bounded run over a backlog with Java Flight Recorder and Flink's
per-operator metrics, on a private stack (segstream.testing.LocalStack).

    .venv/bin/python bench/profile_job.py --events 200000 --users 2000            # the job
    .venv/bin/python bench/profile_job.py --script bench/floor_job.py             # the floor
    .venv/bin/python bench/profile_job.py --jfr-only /tmp/x.jfr --events 200000   # re-read a recording

The job's JVM (the PyFlink gateway that hosts the MiniCluster) gets JVM_ARGS with
`-XX:StartFlightRecording` (settings=profile: Java samples every 10 ms, native every 20 ms);
`rest.port` goes in through SEGSTREAM_FLINK_PROPERTIES, and once a second the REST API is asked
for each vertex's busy / back-pressured / idle ms per second (mean over its subtasks). At the end
the recording's samples (jdk.ExecutionSample, plus jdk.NativeMethodSample of the task threads
outside waits: RocksDB's JNI calls are native) are put in stages of the pipeline by their stack,
and each stage's share is turned into µs per event: samples x period / events. Those are
CPU-time estimates from sampling, good to ~10 % of the total, not exact figures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.throughput import _fresh_topics, _settings, timed_run  # noqa: E402
from segstream.config import PROJECT_ROOT  # noqa: E402
from segstream.job_process import JOB_SCRIPT  # noqa: E402
from segstream.produce import TrafficSpec, generate, produce_records  # noqa: E402
from segstream.testing import LocalStack, free_port  # noqa: E402

app = typer.Typer(add_completion=False)

# Stages by frame: a sample goes to the stage of its innermost frame (leaf first) that matches one
# of these; JDK frames (HashMap, String...) match none and count for their caller's stage.
STAGES: list[tuple[str, str]] = [
    ("kryo (generic serializer)", r"com\.esotericsoftware\.kryo|KryoSerializer"),
    ("RocksDB get/put (JNI + Flink state layer)", r"org\.rocksdb\.|RocksDBValueState|AbstractRocksDBState"
     r"|RocksDBKeyed|SerializedCompositeKeyBuilder|RocksDBCachingPriorityQueue|RocksDBTimer"),
    ("checkpointing", r"org\.apache\.flink\.runtime\.checkpoint|SnapshotStrategy|RocksDBSnapshot"),
    ("Events.parse (Jackson)", r"io\.segstream\.engine\.Events\."),
    ("evaluate: UserState decode/encode", r"io\.segstream\.engine\.UserState"),
    ("evaluate: JSON output (Json.render)", r"io\.segstream\.engine\.(Json|PyFloat)"),
    ("evaluate: rules (CEL)", r"io\.segstream\.engine\.rules\.|dev\.cel\."),
    ("evaluate: stats + evaluator", r"io\.segstream\.engine\."),
    ("floor: keyed counter", r"FloorPipeline"),
    ("Kafka sink (producer, serialisation)", r"org\.apache\.kafka\.clients\.producer|KafkaWriter|KafkaSink"
     r"|DynamicKafkaRecordSerializationSchema|SinkWriterOperator|kafka\.common\.record"),
    ("Kafka source (consumer, deserialisation)", r"org\.apache\.kafka\.|KafkaSourceReader"
     r"|KafkaRecordEmitter|DynamicKafkaDeserializationSchema|SplitFetcher|KafkaPartitionSplitReader"),
    ("table <-> DataStream conversion, SQL calc", r"org\.apache\.flink\.table\."),
    ("network: record (de)serialisation, buffers", r"org\.apache\.flink\.runtime\.io\.network|RecordWriter"
     r"|StreamElementSerializer|PojoSerializer|SpanningRecordDeserializer|RowSerializer"
     r"|StringSerializer|BytePrimitiveArraySerializer|StreamTaskNetworkInput|RecordDeserializer|api\.common\.typeutils"),
    ("watermarks, timers", r"Watermark|InternalTimerService|TimerService"),
    ("operators: ParseEvents / EvaluateUsers glue", r"io\.segstream\.flink\."),
    ("Flink mailbox / task loop", r"org\.apache\.flink\.streaming\.runtime\.tasks|MailboxProcessor"),
]
OTHER = "JIT/GC/class loading/other JVM"
# A sample with a frame of the window operators (windows.enabled) counts for them, whatever it
# ends in: RocksDB, serializers, HLL; their inputs' deserialization and timers are not included.
WINDOWS_STAGE = "windows: inputs, pre-aggregate, aggregate (inclusive)"
WINDOWS = re.compile(r"io\.segstream\.flink\.windows\.")
_STAGE_RES = [(name, re.compile(pattern)) for name, pattern in STAGES]


def stage_of(stack: str) -> str:
    frames = [f.strip() for f in stack.strip().split("\n") if f.strip() and f.strip() not in ("...", "]")]
    if any(WINDOWS.search(f) for f in frames):
        return WINDOWS_STAGE  # inclusive: the window operators and what they call (state, serializers)
    for i, frame in enumerate(frames):
        for name, pattern in _STAGE_RES:
            if pattern.search(frame):
                if name == "Events.parse (Jackson)":
                    rest = "\n".join(frames[i:])
                    return ("evaluate: Events.parse again (Jackson)" if "EvaluateUsers" in rest
                            else "ParseEvents: Events.parse (Jackson)")
                return name
    return OTHER


WAITS = re.compile(r"EPoll\.wait|Unsafe\.park|Object\.wait|Thread\.sleep|socketAccept|SocketDispatcher\.read"
                   r"|FileDispatcherImpl|Net\.poll|EPollPort|pollWait|SocketInputStream|NioSocketImpl")


def _samples(jfr: Path, event: str):
    """(thread name, stack text leaf first) of each event in the recording."""
    out = subprocess.run(["jfr", "print", "--stack-depth", "96", "--events", event, str(jfr)],
                         capture_output=True, text=True, check=True).stdout
    for block in out.split(f"{event} {{")[1:]:
        thread = re.search(r'sampledThread = "(.*?)"', block)
        stack = block.split("stackTrace = [", 1)[1] if "stackTrace = [" in block else ""
        yield (thread.group(1) if thread else "?"), stack


def thread_group(name: str) -> str:
    name = re.sub(r"\(\d+/\d+\)#\d+", "", name)
    name = re.sub(r"producer-\d+|consumer-[\w.-]+|\d+", "#", name)
    return name.strip()[:90]


def aggregate(jfr: Path, events: int) -> str:
    stages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    by_stage_leaf: dict[str, Counter[str]] = defaultdict(Counter)
    total_java = 0
    for event, period_ms in (("jdk.ExecutionSample", 10), ("jdk.NativeMethodSample", 20)):
        for thread, stack in _samples(jfr, event):
            first = stack.strip().split("\n", 1)[0].strip()
            if event == "jdk.NativeMethodSample" and (WAITS.search(stack[:400]) or "rocksdb" not in stack.lower()):
                continue  # a thread waiting in native code; only RocksDB's JNI work counts
            name = stage_of(stack)
            weight = period_ms
            stages[name] += weight
            threads[thread_group(thread)] += weight
            leaf = re.sub(r"\s+line:.*", "", first)
            leaves[leaf] += weight
            by_stage_leaf[name][leaf] += weight
            total_java += weight
    lines = [f"JFR {jfr.name}: {total_java / 1000:.1f} CPU-s sampled over {events:,} events "
             f"= {total_java * 1000 / events:.1f} µs/event"]
    lines.append(f"{'stage':<48} {'µs/event':>9} {'share':>6}   top leaf methods")
    for name, ms in stages.most_common():
        top = ", ".join(f"{leaf.rsplit('.', 2)[-2] + '.' + leaf.rsplit('.', 1)[-1][:40]} {n * 100 / ms:.0f}%"
                        for leaf, n in by_stage_leaf[name].most_common(3))
        lines.append(f"{name:<48} {ms * 1000 / events:>9.1f} {ms * 100 / total_java:>5.1f}%   {top}")
    lines.append("\nby thread:")
    for name, ms in threads.most_common(12):
        lines.append(f"  {name:<90} {ms * 1000 / events:>7.1f} µs/event")
    lines.append("\nhot leaf methods:")
    for leaf, ms in leaves.most_common(25):
        lines.append(f"  {leaf[:110]:<110} {ms * 100 / total_java:>5.1f}%")
    return "\n".join(lines)


def poll_metrics(port: int, stop: threading.Event, into: dict[str, list[tuple[float, float, float]]]) -> None:
    """Each vertex's (busy, back-pressured, idle) ms/s, mean over subtasks, once a second."""
    base = f"http://127.0.0.1:{port}"

    def get(path: str):
        with urllib.request.urlopen(base + path, timeout=2) as r:
            return json.load(r)

    while not stop.wait(1.0):
        try:
            jobs = [j["id"] for j in get("/jobs")["jobs"] if j["status"] == "RUNNING"]
            for job in jobs:
                for v in get(f"/jobs/{job}")["vertices"]:
                    metrics = get(f"/jobs/{job}/vertices/{v['id']}/subtasks/metrics?get=busyTimeMsPerSecond,"
                                  "backPressuredTimeMsPerSecond,idleTimeMsPerSecond")
                    m = {x["id"]: float(x.get("avg", "nan")) for x in metrics}
                    if m:
                        into[v["name"][:100]].append((m.get("busyTimeMsPerSecond", float("nan")),
                                                      m.get("backPressuredTimeMsPerSecond", float("nan")),
                                                      m.get("idleTimeMsPerSecond", float("nan"))))
        except Exception:  # not up yet, or finishing
            pass


@app.command()
def main(events: int = 200_000, users: int = 2_000, script: Path = JOB_SCRIPT,
         out: Path = typer.Option(Path("/tmp/segstream-profile"), help="where the recording and logs go"),
         jfr_only: Path = typer.Option(None, help="only aggregate this recording"),
         jfr: bool = typer.Option(True, help="record with JFR (else metrics only)")) -> None:
    if jfr_only:
        print(aggregate(jfr_only, events))
        return
    print("load average at start (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    out.mkdir(parents=True, exist_ok=True)
    recording = out / f"{Path(script).stem}-{int(time.time())}.jfr"
    root = Path(tempfile.mkdtemp(prefix="segstream-profile-"))
    stack = LocalStack.start(root)
    metrics: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    try:
        os.environ["SEGSTREAM_CONFIG"] = str(stack.config_path)
        settings = _settings(_fresh_topics(bigtable=False))
        bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
        produce_records(bootstrap, topics.events, generate(TrafficSpec(events=events, users=users, invalid_ratio=0)),
                        total=events)
        port = free_port()
        env = dict(os.environ)
        if jfr:
            env["JVM_ARGS"] = (env.get("JVM_ARGS", "") + " -XX:+FlightRecorder -XX:StartFlightRecording="
                               f"settings=profile,dumponexit=true,filename={recording}").strip()
        props = env.get("SEGSTREAM_FLINK_PROPERTIES", "")
        env["SEGSTREAM_FLINK_PROPERTIES"] = (props + f"\nrest.port: {port}").strip()
        stop = threading.Event()
        poller = threading.Thread(target=poll_metrics, args=(port, stop, metrics), daemon=True)
        poller.start()
        run = timed_run([sys.executable, str(script), "--bounded"], bootstrap, topics.evaluations,
                        settings.kafka.events_partitions, env=env, what=str(script), log=out / "job.log")
        stop.set()
        poller.join()
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{script.relative_to(PROJECT_ROOT) if script.is_absolute() else script}: {run.outputs:,} outputs, "
          f"steady {run.steady:,.0f} ev/s, wall {run.wall:.1f} s, CPU {run.cpu:.1f} s "
          f"({run.cpu * 1e6 / events:.0f} µs/event, process tree)")
    print("\nFlink per vertex (ms per second, mean over subtasks and over the seconds it was busy > 50 ms/s):")
    print(f"  {'vertex':<100} {'busy':>6} {'backpr':>6} {'idle':>6}")
    for name, rows in metrics.items():
        active = [r for r in rows if r[0] == r[0] and r[0] > 50] or rows
        mean = [sum(r[i] for r in active if r[i] == r[i]) / max(1, len(active)) for i in range(3)]
        print(f"  {name:<100} {mean[0]:>6.0f} {mean[1]:>6.0f} {mean[2]:>6.0f}")
    if jfr:
        if recording.exists():
            print()
            print(aggregate(recording, events))
        else:
            print(f"no recording at {recording}")
    print("load average at end (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    app()
