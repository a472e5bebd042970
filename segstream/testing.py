"""Helpers for tests and benchmarks that run the real thing (like bytewax's testing.py): used by
tests/ (the pytest fixtures in tests/integration/conftest.py are thin wrappers around these) and by
bench/chaos.py. Nothing here needs pytest.

- ports and waiting: `free_port`, `wait_for` (segstream/waiting.py: poll a condition with a
  timeout, never sleep as synchronisation);
- a private stack: `LocalStack` (broker and Bigtable emulator on free ports, a config file of its
  own), `write_config`, `isolated_config` (a test's or run's own topics, tables, checkpoints);
- launching the job: `run_job` (bounded, to completion, as `flink run` would: its own process
  and JVM); segstream/job_process.py's `JobProcess` for a job to watch and kill;
- reading the outputs back and checking them against the input: `events_by_user`,
  `input_events`, `valid_ids_of`, `sinks_complete`, `assert_event_log_is`, ...;
- the crash harness: `crash_and_recover`, `crash_taskmanager`, `check_results` and their parts
  (`TopicWatcher`, `KillPoint`, `feed_while_running`, ...).

The crash harness (tests/integration/test_recovery.py, test_upgrade.py, test_expiry.py,
test_cluster.py and bench/chaos.py): kill -9 at a random point, restore the latest retained
checkpoint, run to the end, and check that nothing was lost and nothing was counted twice.

On the embedded MiniCluster the job runs bounded as a separate process group (the client, its JVM
and the Python workers); the kill takes the whole group at once, like a machine loss. The second
run restores `chk-N` with `--savepoint`. Its Kafka splits carry the first run's stopping offsets
in the checkpoint, so it reads exactly the same input; but a restored bounded KafkaSource never
finishes (flink-connector-kafka 4.0.1: the restored enumerator never sends "no more splits",
FLINK-31006 / FLINK-33466), so once every event is evaluated the restored job is stopped with a
savepoint through the MiniCluster's REST API, as `segstream job stop --savepoint` would.

On the standalone cluster the TaskManager is killed and replaced; the JobManager restarts the job
from its latest checkpoint by itself.

Checks raise AssertionError (plain `assert`), the harness StackError when the job or the stack
misbehaves (bench/chaos.py tells the two apart).
"""

from __future__ import annotations

import base64
import os
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import yaml
from confluent_kafka import Consumer, KafkaError, TopicPartition

from operators.catalogue import load_catalogue
from operators.evaluator import TIMER_SLOTS
from operators.event_time import DEFAULT_MAX_FUTURE_SKEW_MS, parse_appended
from operators.events import Event, InvalidEvent
from segstream import reference
from segstream.checkpoints import completed_checkpoints, latest_checkpoint
from segstream.cluster import Cluster
from segstream.config import PROJECT_ROOT, Settings, load_settings
from segstream.errors import StackError
from segstream.flink_rest import JOB_NAME, FlinkRest
from segstream.job_process import JOB_SCRIPT, JobProcess
from segstream.kafka_admin import Message, end_offsets, read_topic, value_of
from segstream.processes import free_port  # noqa: F401  (tests and benchmarks take it from here)
from segstream.produce import Record, TrafficSpec, generate, produce_records
from segstream.stack import Stack
from segstream.waiting import wait_for  # also for tests and benchmarks: they take their helpers from here

# --- ports ------------------------------------------------------------------------------------------


# --- a private stack --------------------------------------------------------------------------------


def write_config(path: Path, overrides: dict) -> Settings:
    path.write_text(yaml.safe_dump(overrides))
    return load_settings(path)


@dataclass
class LocalStack:
    """A real local stack (broker, emulator) on free ports, with its own config file."""

    settings: Settings
    config_path: Path
    stack: Stack

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka.bootstrap_servers

    @classmethod
    def start(cls, root: Path, state_dir: Path | None = None, **flink: object) -> LocalStack:
        """Write `root/segstream.yaml` (stack state in `state_dir`, default `root`; checkpoints in
        `root/checkpoints`; `flink` overrides more flink settings) and start the stack."""
        broker_port, emulator_port = free_port(), free_port()
        config = {
            "kafka": {"bootstrap_servers": f"127.0.0.1:{broker_port}"},
            "bigtable": {"emulator_host": f"127.0.0.1:{emulator_port}"},
            "stack": {"state_dir": str(state_dir or root), "broker_port": broker_port,
                      "emulator_port": emulator_port},
            # The job jar and the broker runtime are the project's (.segstream/jvm, built by setup.sh).
            "flink": {"checkpoint_dir": str(root / "checkpoints"), **flink},
        }
        path = root / "segstream.yaml"
        settings = write_config(path, config)
        stack = Stack(settings)
        stack.up()
        return cls(settings, path, stack)

    def stop(self) -> None:
        self.stack.down()


def isolated_config(base: Path, out: Path, prefix: str, checkpoint_dir: Path) -> Settings:
    """`base` with its own topics, Bigtable tables and checkpoint directory, written to `out`;
    the topics and tables are created."""
    from segstream.stack import provision

    data = yaml.safe_load(base.read_text())
    data["kafka"]["topics"] = {k: f"{prefix}-{v}" for k, v in load_settings(base).kafka.topics.model_dump().items()}
    data.setdefault("flink", {})["checkpoint_dir"] = str(checkpoint_dir)
    data.setdefault("bigtable", {})["events_table"] = f"{prefix}-events"
    data["bigtable"]["profiles_table"] = f"{prefix}-profiles"
    settings = write_config(out, data)
    provision(settings)
    return settings


# --- launching the job ------------------------------------------------------------------------------


def run_job(config_path: Path, *args: str, timeout: float = 600,
            script: Path = JOB_SCRIPT) -> subprocess.CompletedProcess:
    """Run the job to completion (bounded) in its own process; fail with its output on error.
    `script`: the job entry, jobs/user_stats.py by default (JOB_SCRIPT)."""
    env = {**os.environ, "SEGSTREAM_CONFIG": str(config_path)}
    result = subprocess.run([sys.executable, str(script), "--bounded", *args], env=env, cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"job failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    return result


# --- the job's outputs, read back and checked against the input read back from Kafka -------------


def append_time(m: Message | Record) -> int | None:
    """The broker's append time of a record read back from the events topic (LogAppendTime), which
    the job judges ts against (operators/event_time.py); None for a record not produced yet."""
    return m.timestamp if isinstance(m, Message) else None


def events_by_user(messages: Iterable[Message | Record], max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS,
                   ) -> tuple[dict[tuple[str, str], list[Event]], list]:
    """Valid events per user in partition order (the order the job sees them), and the invalid records
    (topic messages, or records about to be produced; messages are judged against their append time
    as the job judges them)."""
    per_user: dict[tuple[str, str], list[Event]] = defaultdict(list)
    invalid = []
    for m in messages:
        assert m.value is not None  # events always have a value
        try:
            event = parse_appended(m.value, append_time(m), max_future_skew_ms)
        except InvalidEvent:
            invalid.append(m)
            continue
        per_user[(event.tenant, event.user_id)].append(event)
    return per_user, invalid


def input_events(settings: Settings) -> tuple[dict[tuple[str, str], list[Event]], list[Message]]:
    """events_by_user over the whole events topic."""
    return events_by_user(read_topic(settings.kafka.bootstrap_servers, settings.kafka.topics.events))


def valid_ids_of(messages: Iterable[Message | Record]) -> set[str]:
    """The event ids of the valid events among `messages`."""
    per_user, _ = events_by_user(messages)
    return {e.event_id for events in per_user.values() for e in events}


def valid_event_ids(settings: Settings) -> set[str]:
    """valid_ids_of the whole events topic."""
    return valid_ids_of(read_topic(settings.kafka.bootstrap_servers, settings.kafka.topics.events))


def last_evaluations(evaluations: list[dict]) -> dict[tuple[str, str], dict]:
    """Each user's evaluation with the highest seq."""
    last: dict[tuple[str, str], dict] = {}
    for d in evaluations:
        key = (d["tenant"], d["user_id"])
        if key not in last or d["seq"] > last[key]["seq"]:
            last[key] = d
    return last


def assert_dead_letters_are(settings: Settings, invalid: list[Message]) -> list[dict]:
    """Every invalid record is dead-lettered (at least once), and nothing else; returns the dead letters."""
    dead = [msgspec.json.decode(value_of(m))
            for m in read_topic(settings.kafka.bootstrap_servers, settings.kafka.topics.dead_letters)]
    assert {(d["partition"], d["offset"]) for d in dead} == {(m.partition, m.offset) for m in invalid}
    return dead


def python_evaluations(settings: Settings, inputs: list[Message],
                       rule_changes: Iterable[tuple[str, bytes | None]] = ()) -> dict[str, dict]:
    """The Python engine's evaluation (segstream/replay.py) of every valid event among `inputs`
    (the events topic read back: partition then offset order, each user's order in the job), with
    the catalogue and initial rules of `settings`, by event_id; no rule changes, no expiry timers
    (an expiry shows in the next evaluation of its user all the same). A retry the engine
    recognises (docs/semantics.md, "Retries") has none: the job writes no evaluation for it. The
    evaluations carry no `rules_version`: that depends on how rule records interleave with events
    in the job. `rule_changes` (rule id, rule JSON or None): applied before every event (rule
    records the job had applied before any of `inputs` came)."""
    from segstream.replay import python_replay

    catalogue = yaml.safe_load(settings.path(settings.stats_file).read_text())
    rules = yaml.safe_load(settings.path(settings.rules_file).read_text())["rules"]
    script = [msgspec.json.encode({"catalogue": catalogue}).decode(), msgspec.json.encode({"rules": rules}).decode()]
    if settings.pii.enabled:  # the job's PII policy: the engine sees the redacted events
        script.append(f'{{"pii":{settings.pii.policy().to_json()}}}')
    for rule_id, value in rule_changes:
        script.append(msgspec.json.encode({"rule_change": {"key": rule_id, "value": value and value.decode()}})
                      .decode())
    per_user: dict[tuple[str, str], list[tuple[str, bytes]]] = defaultdict(list)
    for m in inputs:
        try:
            event = parse_appended(m.value, m.timestamp, settings.events.max_future_skew_ms)
        except InvalidEvent:
            continue
        assert m.value is not None  # parse_record refuses tombstones
        per_user[(event.tenant, event.user_id)].append((event.event_id, m.value))
    order = []
    for user_events in per_user.values():
        for event_id, raw in user_events:
            script.append(msgspec.json.encode({"event_b64": base64.b64encode(raw).decode()}).decode())
            order.append(event_id)
    expected = [msgspec.json.decode(line) for line in python_replay(script) if not line.startswith('{"redacted":')]
    assert all("evaluation" in x or "duplicate" in x for x in expected), "the Python engine expired or refused an event"
    assert len(expected) == len(order)
    return {event_id: x["evaluation"] for event_id, x in zip(order, expected, strict=True) if "evaluation" in x}


def assert_evaluations_are_python(settings: Settings, inputs: list[Message], decoded: list[dict],
                                  rule_changes: Iterable[tuple[str, bytes | None]] = ()) -> None:
    """`decoded` (the evaluations topic, decoded) holds exactly one evaluation per valid event of
    `inputs`, each equal to the Python engine's apart from rules_version (python_evaluations)."""
    expected = python_evaluations(settings, inputs, rule_changes)
    ids = [d["event_id"] for d in decoded]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} events evaluated twice"
    assert set(ids) == set(expected), (f"{len(set(expected) - set(ids))} valid events not evaluated, "
                                       f"{len(set(ids) - set(expected))} unknown ones evaluated")
    for d in decoded:
        actual = {k: v for k, v in d.items() if k != "rules_version"}
        assert actual == expected[d["event_id"]], d["event_id"]


def stored_event_rows(settings: Settings) -> list[bytes]:
    """Every row key of the Bigtable events table."""
    from google.cloud.bigtable.data import BigtableDataClient, ReadRowsQuery

    from sinks.bigtable import point_at_instance

    point_at_instance(settings.bigtable)
    client = BigtableDataClient(project=settings.bigtable.project)
    try:
        table = client.get_table(settings.bigtable.instance, settings.bigtable.events_table)
        return [row.row_key for row in table.read_rows(ReadRowsQuery())]
    finally:
        client.close()


def expected_event_rows(settings: Settings, per_user: dict[tuple[str, str], list[Event]]) -> set[bytes]:
    """The Bigtable events-table row keys of the valid input events."""
    from sinks.bigtable import keys

    width = settings.bigtable.hash_prefix_hex
    return {keys.event_key(e.tenant, e.user_id, e.ts, e.event_id, width)
            for events in per_user.values() for e in events}


def sinks_complete(settings: Settings, per_user: dict[tuple[str, str], list[Event]],
                   invalid: list[Message]) -> Callable[[], bool]:
    """A condition for wait_for: Bigtable holds a row for every valid event and every invalid record
    is dead-lettered (what a restored job must have redone before it may be stopped)."""
    rows = expected_event_rows(settings, per_user)
    locations = {(m.partition, m.offset) for m in invalid}

    def complete() -> bool:
        if not rows <= set(stored_event_rows(settings)):
            return False
        dead = read_topic(settings.kafka.bootstrap_servers, settings.kafka.topics.dead_letters)
        return locations <= {(d["partition"], d["offset"]) for d in (msgspec.json.decode(value_of(m)) for m in dead)}

    return complete


def assert_event_log_is(settings: Settings, per_user: dict[tuple[str, str], list[Event]]) -> None:
    """The Bigtable events table holds exactly the valid input events, each once."""
    expected = expected_event_rows(settings, per_user)
    stored = stored_event_rows(settings)
    assert len(stored) == len(set(stored)) and set(stored) == expected, (
        f"Bigtable holds {len(set(stored))} rows, {len(set(stored) - expected)} unexpected, "
        f"{len(expected - set(stored))} missing")


# --- the crash harness --------------------------------------------------------------------------------


# Small enough for three runs in about four minutes on a quiet 2-core machine, big enough that the
# first checkpoint (every 500 ms below) completes while most events are still to be processed.
EVENTS, USERS = 6_000, 300
FAST_CHECKPOINTS = {"checkpoint_interval_ms": 500, "checkpoint_min_pause_ms": 200}
# The JVMs of these short jobs only need the C1 compiler: about a third less CPU per job start.
FAST_JVM = "-XX:TieredStopAtLevel=1"


def crash_config(config_path: Path, out: Path, flink: dict | None = None, **kafka) -> tuple[Settings, Path]:
    """The test's config with checkpoints every 500 ms (and optional flink and kafka overrides)."""
    data = yaml.safe_load(config_path.read_text())
    data["flink"].update(FAST_CHECKPOINTS, **(flink or {}))
    data["kafka"].update(kafka)
    return write_config(out, data), out


def traffic(seed: int, events: int = EVENTS, users: int = USERS) -> list[Record]:
    return list(generate(TrafficSpec(events=events, users=users, seed=seed, invalid_ratio=0.005, tenants=2)))


def produce_traffic(settings: Settings, seed: int, events: int = EVENTS, users: int = USERS) -> list[Record]:
    """Produce traffic(seed) to the events topic; returns the records, in the order produced."""
    records = traffic(seed, events, users)
    produce_records(settings.kafka.bootstrap_servers, settings.kafka.topics.events, records, progress=False)
    return records


class Feed(threading.Thread):
    """Produces the rest of the input in the background (feed_while_running); `join` re-raises
    what went wrong in it, so that a harness failure is not mistaken for the job's."""

    def __init__(self, work: Callable[[], object]) -> None:
        super().__init__(daemon=True, name="feed")
        self._work = work
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.is_alive():
            raise StackError(f"the feed did not finish within {timeout}s")
        if self.error is not None:
            raise StackError(f"the feed failed: {self.error!r}") from self.error


def feed_while_running(settings: Settings, records: list[Record], head: int = 500, rate: float = 600,
                       timeout: float = 180) -> Feed:
    """Produce the first `head` records now and, once the job has written its first evaluation, the
    rest at `rate` records/s, in a thread (join it). The input then keeps arriving for a while
    after the job's first checkpoint however fast the machine is, so a kill point after that
    checkpoint falls mid-stream. For unbounded runs."""
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    produce_records(bootstrap, topics.events, records[:head], progress=False)

    def rest() -> None:
        probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "segstream-feed"})
        partitions = probe.list_topics(topics.evaluations, timeout=15).topics[topics.evaluations].partitions
        try:  # the reported high watermarks: cheap, and above 0 once anything is written
            wait_for(lambda: any(probe.get_watermark_offsets(TopicPartition(topics.evaluations, p), timeout=5)[1]
                                 for p in partitions), timeout, "the job's first evaluation", 0.2)
        finally:
            probe.close()
        produce_records(bootstrap, topics.events, records[head:], rate=rate, progress=False)

    feed = Feed(rest)
    feed.start()
    return feed


def evaluation_id(record: dict) -> object:
    return record["event_id"]


def expiry_id(record: dict) -> tuple[str, str, int]:
    return record["tenant"], record["user_id"], record["seq"]


class TopicWatcher:
    """Follows a topic (evaluations by default) from the beginning in a thread: when each record
    arrived, and the ids seen (`record_id` of the decoded JSON value). read_uncommitted by default:
    it sees records as soon as the sink writes them, inside open transactions too."""

    def __init__(self, bootstrap: str, topic: str, isolation: str = "read_uncommitted",
                 record_id=evaluation_id):
        self._record_id = record_id
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "segstream-watcher",
                                   "enable.auto.commit": False, "isolation.level": isolation,
                                   "enable.partition.eof": True})
        partitions = self._consumer.list_topics(topic, timeout=15).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        self.topic = topic
        self.bootstrap = bootstrap
        self.arrivals: list[tuple[float, int, int]] = []  # (time.monotonic(), partition, offset) per record
        self.wall_arrivals: list[float] = []  # time.time() per record, to compare with file mtimes
        self.event_ids: set = set()
        self.seen_at: dict = {}  # id -> time.monotonic() of its first arrival
        self.locations: dict = {}  # id -> [(partition, offset)] of every copy
        self.positions: dict[int, int] = dict.fromkeys(partitions, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch-{topic}")
        self._thread.start()

    def _run(self) -> None:
        decode = msgspec.json.Decoder().decode
        while not self._stop.is_set():
            for m in self._consumer.consume(5_000, 0.1):
                error, partition, offset = m.error(), m.partition(), m.offset()
                if error:
                    # At the end of a partition: its position, past any transaction marker there.
                    if error.code() == KafkaError._PARTITION_EOF:
                        assert partition is not None and offset is not None  # an EOF event has both
                        self.positions[partition] = max(self.positions[partition], offset)
                    continue
                assert partition is not None and offset is not None  # so does every record
                self.arrivals.append((time.monotonic(), partition, offset))
                self.wall_arrivals.append(time.time())
                value = m.value()
                assert value is not None  # the watched topics have no records without a value
                record_id = self._record_id(decode(value))
                self.event_ids.add(record_id)
                self.seen_at.setdefault(record_id, time.monotonic())
                self.locations.setdefault(record_id, []).append((partition, offset))
                self.positions[partition] = offset + 1

    @property
    def count(self) -> int:
        return len(self.arrivals)

    def arrived_before(self, wall_time: float) -> int:
        """How many records had arrived before `wall_time` (time.time())."""
        return sum(1 for t in self.wall_arrivals if t < wall_time)

    def first_beyond(self, ends: dict[int, int], after: float = 0.0) -> float | None:
        """When the first record after `ends` (partition -> end offset, from catch_up) arrived, not
        before `after` (time.monotonic(); a write the killed job had in flight can land after
        catch_up read the end offsets, but not after the restart)."""
        return next((t for t, p, o in self.arrivals if o >= ends.get(p, 0) and t >= after), None)

    def copies(self) -> int:
        """Records seen beyond one per id: duplicates."""
        return sum(len(where) - 1 for where in self.locations.values())

    def catch_up(self, timeout: float = 60) -> dict[int, int]:
        """Wait until every record now in the topic has been seen; returns the end offsets."""
        ends = end_offsets(self.bootstrap, self.topic)
        wait_for(lambda: all(self.positions.get(p, 0) >= end for p, end in ends.items()), timeout,
                 f"the watcher to reach the end of {self.topic}", 0.05)
        return ends

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


@dataclass
class CrashRun:
    seed: int
    share: float  # where the kill falls between the first checkpoint and the end of the input
    killed_after_s: float  # from the first start
    evaluations_at_kill: int
    evaluations_at_first_checkpoint: int  # how many were out when the first chk-N/_metadata appeared
    checkpoint: str  # the chk-N restored
    recovery_s: float | None  # restart -> first new evaluation (None: nothing was left to redo)
    second_run_s: float  # restart -> every event evaluated
    restarted_at: float  # time.monotonic() of the restart
    # Evaluations topic: partition -> end offset when the first run had been killed (what follows
    # was written by the restored job).
    ends_at_kill: dict[int, int] = field(default_factory=dict)
    # Exactly-once sink only: evaluations written (read_uncommitted) and visible to read_committed
    # before the first checkpoint completed; transactions commit at checkpoints, so the second is 0.
    written_before_first_checkpoint: int | None = None
    committed_before_first_checkpoint: int | None = None
    # ... how many valid event ids a read_committed consumer saw in the end (all of them), how many
    # records it saw beyond one per id (0: exactly once), and restart -> first new committed
    # evaluation (the restored job's first checkpoint commits it).
    committed_at_end: int | None = None
    committed_duplicates: int | None = None
    committed_recovery_s: float | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def mid_stream(self) -> bool:
        """Whether the kill fell mid-stream: after some output, and early enough that the restored job
        had work to redo (it wrote evaluations past the first run's last one). The first run may have
        written every evaluation before the kill, into an open transaction or past the restored
        checkpoint: that is mid-stream too."""
        return self.evaluations_at_kill > 0 and self.recovery_s is not None


class KillPoint:
    """When to kill: once a checkpoint is complete (something to restore) and then a share of the
    evaluations still to come is out, so that kills fall anywhere between the first checkpoint and
    the end, not just when it completes. Also notes how many evaluations were out when the first
    checkpoint appeared, and when Flink completed it (the mtime of `_metadata`, written last)."""

    def __init__(self, checkpoint_dir: Path, watcher: TopicWatcher, share: float, total: int):
        self.checkpoint_dir = checkpoint_dir
        self.watcher = watcher
        self.share = share
        self.total = total
        self.evaluations = -1  # out at the first checkpoint
        self.completed_at: float | None = None  # time.time() scale

    def reached(self) -> bool:
        if self.evaluations < 0 and (found := completed_checkpoints(self.checkpoint_dir)):
            self.evaluations = self.watcher.count
            self.completed_at = (found[0] / "_metadata").stat().st_mtime
        return (self.evaluations >= 0
                and self.watcher.count >= self.evaluations + self.share * (self.total - self.evaluations))


def stop_with_savepoint(job: JobProcess, rest_port: int | None, target: Path, timeout: float = 120) -> str:
    """Stop the job in `job` with a savepoint through its MiniCluster's REST API; wait for exit 0.
    `rest_port` None: the port the job's MiniCluster bound by itself (JobProcess.rest_port)."""
    own_cluster = rest_port is None  # the job's MiniCluster runs it alone, whatever its name (either job)
    if rest_port is None:
        rest_port = job.rest_port(timeout)
    rest = FlinkRest(f"http://127.0.0.1:{rest_port}")
    job_id = wait_for(lambda: _running_job(rest, None if own_cluster else JOB_NAME), 60, "the job on the REST API",
                      0.5, abort=job.exit_reason)
    try:
        location: str | None = rest.stop_with_savepoint(job_id, target.resolve().as_uri(), timeout=timeout)
    except StackError as exc:
        # A MiniCluster shuts down with its only job: once the savepoint completes the job stops,
        # the client returns and the REST API can be gone before a poll saw COMPLETED. Then the
        # job's exit code and the savepoint on disk tell what happened.
        if "unreachable" not in str(exc):
            raise
        location = None
    code = job.wait(timeout)
    assert code == 0, f"the job exited with {code} after stop-with-savepoint:\n{job.tail()}"
    if location is None:
        written = sorted((p.parent for p in target.glob("savepoint-*/_metadata")), key=lambda p: p.stat().st_mtime)
        assert written, f"the job stopped but no savepoint is in {target}:\n{job.tail()}"
        location = written[-1].resolve().as_uri()
    return location


def _running_job(rest: FlinkRest, name: str | None = JOB_NAME) -> str | None:
    try:
        return rest.running_job(name)
    except StackError:
        return None


def crash_and_recover(settings: Settings, config_path: Path, workdir: Path, seed: int, valid_ids: set[str],
                      fraction: tuple[float, float] = (0.1, 0.7), timeout: float = 300,
                      jvm_args: str = FAST_JVM, also_wait_for: Callable[[], bool] | None = None,
                      bounded: bool = True, script: Path = JOB_SCRIPT) -> CrashRun:
    """Run the job (bounded by default); kill -9 its process group at a random point after a
    checkpoint completed (KillPoint, `fraction` = the range of its share); restore the latest
    checkpoint; once every valid event is evaluated and has reached every sink (and `also_wait_for()`
    holds), stop the restored job with a savepoint.

    Event-time timers need `bounded=False`: a restored bounded job does not finish (see the crash
    harness in the module docstring), and a source subtask whose splits have all reached their end
    offsets then holds its last watermark forever, where an unbounded one goes idle and drops out of
    it. `script`: the job entry (JOB_SCRIPT by default)."""
    rng = random.Random(seed)
    share = rng.uniform(*fraction)
    checkpoints = settings.path(settings.flink.checkpoint_dir)
    watcher = TopicWatcher(settings.kafka.bootstrap_servers, settings.kafka.topics.evaluations)
    committed = (TopicWatcher(settings.kafka.bootstrap_servers, settings.kafka.topics.evaluations, "read_committed")
                 if settings.kafka.delivery_guarantee == "exactly-once" else None)
    first_log, second_log = workdir / f"run-{seed}-1.log", workdir / f"run-{seed}-2.log"
    try:
        job = JobProcess.start(config_path, ["--bounded"] if bounded else [], first_log, env={"JVM_ARGS": jvm_args},
                               flink_log_dir=workdir / f"flink-log-{seed}-1", script=script)
        kill_point = KillPoint(checkpoints, watcher, share, len(valid_ids))
        try:
            wait_for(kill_point.reached, timeout, "a completed checkpoint and the kill point", 0.05,
                     abort=job.exit_reason)
        finally:
            killed_after = time.monotonic() - job.started
            job.kill()
        ends_at_kill = watcher.catch_up()
        committed_ends_at_kill = committed.positions.copy() if committed is not None else {}
        at_kill = watcher.count
        checkpoint = latest_checkpoint(checkpoints)
        assert checkpoint is not None

        # No --bounded: the restored splits keep the first run's stopping offsets anyway.
        job = JobProcess.start(config_path, ["--savepoint", checkpoint.as_uri()], second_log,
                               env={"JVM_ARGS": jvm_args}, flink_log_dir=workdir / f"flink-log-{seed}-2",
                               script=script)
        try:
            wait_for(lambda: valid_ids <= watcher.event_ids, timeout, "every valid event to be evaluated",
                     0.1, abort=job.exit_reason)
            second = time.monotonic() - job.started
            # The first run may have evaluated everything before the kill, with Bigtable rows and dead
            # letters still in flight: the restored job is done only when its re-read input reached
            # every sink. (The Kafka offsets the source commits are no measure: a split that finished
            # before the restored checkpoint is not in it, and its offset may never be committed.)
            per_user, invalid = input_events(settings)
            wait_for(sinks_complete(settings, per_user, invalid), timeout,
                     "every valid event in Bigtable and every invalid record dead-lettered", 0.5,
                     abort=job.exit_reason)
            if also_wait_for is not None:
                wait_for(also_wait_for, timeout, "the other outputs", 0.1, abort=job.exit_reason)
            stop_with_savepoint(job, None, workdir / "savepoints")
            if committed is not None:  # stop-with-savepoint committed the last transaction
                wait_for(lambda: valid_ids <= committed.event_ids, timeout,
                         "every evaluation to be visible to read_committed", 0.1)
        finally:
            if job.running():
                job.kill()
        first_new = watcher.first_beyond(ends_at_kill, after=job.started)
    finally:
        watcher.close()
        if committed is not None:
            committed.close()
    run = CrashRun(seed, round(share, 2), round(killed_after, 1), at_kill, kill_point.evaluations, checkpoint.name,
                   None if first_new is None else round(first_new - job.started, 1), round(second, 1),
                   job.started, ends_at_kill, logs=[first_log, second_log])
    if committed is not None:
        completed_at = kill_point.completed_at
        assert completed_at is not None  # the kill point was reached: a checkpoint was complete
        run.written_before_first_checkpoint = watcher.arrived_before(completed_at)
        run.committed_before_first_checkpoint = committed.arrived_before(completed_at)
        run.committed_at_end = len(committed.event_ids & valid_ids)
        run.committed_duplicates = committed.copies()
        first_committed = committed.first_beyond(committed_ends_at_kill, after=job.started)
        run.committed_recovery_s = None if first_committed is None else round(first_committed - job.started, 1)
    return run


def check_results(settings: Settings, committed_only: bool = True, exactly_once: bool = False) -> dict[str, int]:
    """Assert the outputs equal a recomputation from the input, allowing replayed duplicates
    (none with `exactly_once`: each evaluation once in the read_committed view).

    - evaluations: every valid event_id at least once and nothing else; all copies of an
      evaluation identical apart from `rules_version`; per user the seqs are exactly 1..n in input
      order, entered/exited follow from consecutive segments, and the last evaluation's stats and
      segments equal the reference recomputation over all the user's events;
    - with `expire_after` in the catalogue the same per life (segstream/reference.py: lives),
      and the expirations topic holds each expiry that is due (check_expirations);
    - dead letters: every invalid record (at least once), nothing else;
    - Bigtable: the events table holds exactly the valid events; profiles = last evaluations.
    The transactional topics (evaluations, expirations) are read read_committed, or with
    `committed_only=False` read_uncommitted (everything written, committed or not).
    Returns counts for reports (evaluations, distinct, duplicates, users, expirations).
    """
    from sinks.bigtable.reader import read_profile

    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    messages = read_topic(bootstrap, topics.events)
    per_user, invalid = events_by_user(messages)
    catalogue = load_catalogue(settings.path(settings.stats_file))
    lives = {user: reference.lives(events, catalogue.expire_after) for user, events in per_user.items()}
    rules = {r["id"]: r for r in yaml.safe_load(settings.path(settings.rules_file).read_text())["rules"]}
    valid_ids = {e.event_id for events in per_user.values() for e in events}
    assert len(valid_ids) == sum(map(len, per_user.values())), "event ids are not unique in the input"

    decoded = [msgspec.json.decode(value_of(m))
               for m in read_topic(bootstrap, topics.evaluations, committed_only=committed_only)]
    by_id: dict[str, dict] = {}
    for d in decoded:
        copy = {k: v for k, v in d.items() if k != "rules_version"}
        first = by_id.setdefault(d["event_id"], copy)
        assert copy == first, f"two different evaluations of {d['event_id']}:\n{first}\n{copy}"
    missing, extra = valid_ids - set(by_id), set(by_id) - valid_ids
    assert not missing and not extra, f"{len(missing)} events never evaluated, {len(extra)} unknown evaluated"
    if exactly_once:
        assert committed_only, "exactly once is a property of the read_committed view"
        assert len(decoded) == len(by_id), f"{len(decoded) - len(by_id)} evaluations committed more than once"

    per_user_evals: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for d in by_id.values():
        per_user_evals[(d["tenant"], d["user_id"])].append(d)
    assert set(per_user_evals) == set(per_user)
    last = last_evaluations(list(by_id.values()))
    for user, events in per_user.items():
        evals = sorted(per_user_evals[user], key=lambda d: d["seq"])
        assert [d["seq"] for d in evals] == list(range(1, len(events) + 1)), f"{user}: seqs not 1..n"
        assert [d["event_id"] for d in evals] == [e.event_id for e in events], f"{user}: not in input order"
        life_starts = {life[0].event_id for life in lives[user][1:]}
        previous: list[str] = []
        for d in evals:
            if d["event_id"] in life_starts:  # the previous life's segments were exited by its expiry
                previous = []
            assert d["entered"] == sorted(set(d["segments"]) - set(previous)), (user, d["seq"])
            assert d["exited"] == sorted(set(previous) - set(d["segments"])), (user, d["seq"])
            previous = d["segments"]
        stats = reference.stat_values(catalogue.stats, lives[user][-1])
        assert last[user]["stats"] == stats, f"{user}: final stats differ from the recomputation"
        assert last[user]["segments"] == reference.evaluate_rules(rules, stats, events[-1])[0], user
    expirations = check_expirations(settings, messages, lives, catalogue, rules, committed_only)

    assert_dead_letters_are(settings, invalid)
    assert_event_log_is(settings, per_user)
    hottest = max(per_user, key=lambda k: len(per_user[k]))
    for user in sorted(per_user)[:20] + [hottest]:
        profile = read_profile(settings.bigtable, *user)
        assert profile is not None, user
        assert (profile["seq"], profile["event_id"], profile["stats"]) == (
            last[user]["seq"], last[user]["event_id"], last[user]["stats"]), user
    return {"evaluations": len(decoded), "distinct": len(by_id), "duplicates": len(decoded) - len(by_id),
            "users": len(per_user), "expirations": expirations}


def due_expirations(settings: Settings, messages: list[Message], lives: dict[tuple[str, str], list[list[Event]]],
                    catalogue, rules: dict) -> tuple[dict[tuple, dict], set[tuple]]:
    """The expiry records the job must write (id -> record) and the ids it may write.

    Every life followed by another ended in an expiry. The last life expires only if its timer
    fired: if the watermark passed its timer. After all input the watermark lies between the
    lowest and the highest of the partitions' greatest timestamps (minus the out-of-orderness), as
    idle partitions drop out of it, so a last life due before the lowest must have expired, one due
    after the highest cannot have.
    """
    ttl = catalogue.expire_after
    if ttl is None:
        return {}, set()
    resolution = max(1, ttl // TIMER_SLOTS)
    greatest: dict[int, int] = {}
    for m in messages:
        try:
            ts = parse_appended(value_of(m), m.timestamp, settings.events.max_future_skew_ms).ts
        except InvalidEvent:
            continue
        greatest[m.partition] = max(greatest.get(m.partition, ts), ts)
    lowest_watermark = min(greatest.values()) - settings.flink.watermark_out_of_orderness_ms - 1
    highest_watermark = max(greatest.values())
    required: dict[tuple, dict] = {}
    optional: set[tuple] = set()
    for (tenant, user_id), user_lives in lives.items():
        seq = 0
        for index, life in enumerate(user_lives):
            seq += len(life)
            last_ts = max(e.ts for e in life)
            stats = reference.stat_values(catalogue.stats, life)
            record = {"tenant": tenant, "user_id": user_id, "seq": seq, "last_ts": last_ts,
                      "expired_at": last_ts + ttl, "exited": reference.evaluate_rules(rules, stats, life[-1])[0]}
            timer = -(-(last_ts + ttl) // resolution) * resolution
            if index < len(user_lives) - 1 or timer <= lowest_watermark:
                required[expiry_id(record)] = record
            elif timer <= highest_watermark:
                optional.add(expiry_id(record))
    return required, optional


def check_expirations(settings: Settings, messages: list[Message], lives, catalogue, rules: dict,
                      committed_only: bool = True) -> int:
    """Each due expiry written (at least once, copies identical), none that is not due; returns how
    many were written."""
    required, optional = due_expirations(settings, messages, lives, catalogue, rules)
    written: dict[tuple, dict] = {}
    for m in read_topic(settings.kafka.bootstrap_servers, settings.kafka.topics.expirations,
                        committed_only=committed_only):
        record = msgspec.json.decode(value_of(m))
        assert written.setdefault(expiry_id(record), record) == record, f"two different expiries: {record}"
    missing = [required[i] for i in required.keys() - written.keys()]
    assert not missing, f"{len(missing)} due expiries never written, e.g. {missing[:3]}"
    for key in required.keys() & written.keys():
        assert written[key] == required[key], f"expiry {key}: {written[key]} != {required[key]}"
    unexpected = written.keys() - required.keys() - optional
    assert not unexpected, f"{len(unexpected)} expiries that were not due, e.g. {sorted(unexpected)[:3]}"
    return len(written)


def crash_taskmanager(cluster: Cluster, settings: Settings, config_path: Path, workdir: Path, seed: int,
                      valid_ids: set[str], fraction: tuple[float, float] = (0.1, 0.7),
                      timeout: float = 300) -> CrashRun:
    """`flink run -py jobs/user_stats.py --bounded` on the standalone cluster; kill -9 the
    TaskManager (with its Python workers) once a checkpoint is complete and a random share of the
    evaluations is out; start a new TaskManager, as a supervisor would. The JobManager restarts
    the job from its latest checkpoint by itself, and the same `flink run` must return 0."""
    rng = random.Random(seed)
    share = rng.uniform(*fraction)
    checkpoints = settings.path(settings.flink.checkpoint_dir)
    watcher = TopicWatcher(settings.kafka.bootstrap_servers, settings.kafka.topics.evaluations)
    log_path = workdir / f"flink-run-{seed}.log"
    client = None
    try:
        with log_path.open("wb") as log:
            client = subprocess.Popen(cluster.run_command(["--bounded"]), cwd=PROJECT_ROOT, stdout=log,
                                      stderr=subprocess.STDOUT, env={**os.environ, **cluster.environment(),
                                                                     "SEGSTREAM_CONFIG": str(config_path)})
        submitted = time.monotonic()

        def client_exited() -> str | None:
            code = client.poll()
            return None if code is None else f"flink run exited with {code}"

        kill_point = KillPoint(checkpoints, watcher, share, len(valid_ids))
        wait_for(kill_point.reached, timeout, "a completed checkpoint and the kill point", 0.05, abort=client_exited)
        cluster.kill_taskmanager()
        killed = time.monotonic()
        checkpoint = latest_checkpoint(checkpoints)
        ends_at_kill = watcher.catch_up()
        at_kill = watcher.count
        cluster.start_taskmanager()
        code = client.wait(timeout)
        finished = time.monotonic()
        output = log_path.read_text(errors="replace")
        assert code == 0, f"flink run exited with {code}:\n{output[-4000:]}"
        first_new = watcher.first_beyond(ends_at_kill)
    finally:
        watcher.close()
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
    job = max(cluster.rest.jobs(), key=lambda j: j["start-time"])
    assert job["state"] == "FINISHED", job
    assert cluster.rest.exceptions(job["jid"]), "the job never failed over: the kill came too late"
    assert checkpoint is not None  # the kill point was reached: a checkpoint was complete
    return CrashRun(seed, round(share, 2), round(killed - submitted, 1), at_kill, kill_point.evaluations,
                    checkpoint.name, None if first_new is None else round(first_new - killed, 1),
                    round(finished - killed, 1),
                    killed, ends_at_kill, logs=[log_path, cluster.log_dir])
