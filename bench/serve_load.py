"""Load test of the tracking front (serving/): real HTTP on loopback, the job (jobs/user_stats.py,
unbounded) and a private stack (segstream.testing.LocalStack) on the same machine.

    .venv/bin/python bench/serve_load.py --seconds 20 --connections 25 --connections 50
    .venv/bin/python bench/serve_load.py --variant 'one worker|workers=1' --variant 'two|workers=2' --profile

The load generator is Debian's `wrk` (`apt-get install wrk`), one thread, closed loop: each of C
connections sends a request as soon as the previous answer is in. A Lua script makes every request
a new event (unique event_id, user_id drawn from --users, values varied) and counts the statuses.
Per run it prints req/s, p50/p95/p99/max request->answer latency (all answers: 200 and 202), the
share answered 200 (= within the deadline), and the CPU used per process group (wrk, the front,
the job, the broker) as cores (CPU s / wall s) and µs per request, so the reader sees what ate
the machine. `--trivial` first runs wrk against a trivial HTTP server (canned answer) to show the
load generator's own cost per request. `--profile` samples each variant's front workers with
py-spy during its first measured run and prints where their time goes.

Variants: 'label|workers=N|VAR=value|...': front processes started with `segstream serve
--workers N` and the environment overrides (SEGSTREAM_SERVING__..., or PYTHONPATH=<dir holding
another serving/ package> to measure another version of the front side by side).
"""

from __future__ import annotations

import collections
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import typer
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.throughput import tree_cpu  # noqa: E402
from segstream.config import PROJECT_ROOT  # noqa: E402
from segstream.errors import StackError  # noqa: E402
from segstream.job_process import JobProcess  # noqa: E402
from segstream.testing import LocalStack, free_port, isolated_config, wait_for, write_config  # noqa: E402
from serving.keys import KeyStore  # noqa: E402

app = typer.Typer(add_completion=False)

# wrk's script: a new event per request; statuses counted per thread and summed in done().
WRK_SCRIPT = r"""
local threads = {}
local counter = 0
statuses = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  nonce, users = args[1], tonumber(args[2])
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[3]
  math.randomseed(tid * 7919 + os.time())
end

function request()
  counter = counter + 1
  local name = "view"
  if counter % 5 == 0 then name = "purchase" end
  local body = string.format('{"event_id":"%s-%d-%d","user_id":"u%d","name":"%s","values":{"amount":%d}}',
    nonce, tid, counter, math.random(users), name, math.random(100000))
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do
      counts[tostring(status)] = (counts[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do table.insert(parts, string.format('"%s":%d', status, n)) end
  local e = summary.errors
  io.write(string.format('SEGSTREAM-RESULT {"requests":%d,"duration_us":%d,"p50":%d,"p95":%d,"p99":%d,' ..
    '"max":%d,"statuses":{%s},"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, table.concat(parts, ","), e.connect, e.read, e.write, e.timeout))
end
"""

# The trivial server: a canned 200 for every request, no parsing beyond finding the end of the
# headers (wrk sends one request at a time per connection; bodies are JSON without CRLF).
TRIVIAL_SERVER = r"""
import asyncio, sys
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
class Canned(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.tail = transport, b""
    def data_received(self, data):
        data = self.tail + data
        n = data.count(b"\r\n\r\n")
        self.tail = data[-3:]
        if n:
            self.transport.write(ANSWER * n)
async def main():
    server = await asyncio.get_running_loop().create_server(Canned, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()
asyncio.run(main())
"""


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50: float  # ms
    p95: float
    p99: float
    max: float
    statuses: dict[str, int]
    errors: dict[str, int]
    wrk_cpu: float  # CPU s of wrk itself

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def ok_share(self) -> float:
        return self.statuses.get("200", 0) / self.requests if self.requests else 0.0


def run_wrk(url: str, script: Path, connections: int, seconds: float, users: int, key: str) -> WrkResult:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "5s", "-s", str(script),
                          url, "--", uuid.uuid4().hex[:8], str(users), key],
                         capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = re.search(r"SEGSTREAM-RESULT (\{.*\})", out.stdout)
    if out.returncode != 0 or match is None:
        raise SystemExit(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    data = json.loads(match.group(1))
    return WrkResult(data["requests"], data["duration_us"] / 1e6, data["p50"] / 1000, data["p95"] / 1000,
                     data["p99"] / 1000, data["max"] / 1000, data["statuses"], data["errors"],
                     (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime))


class CpuMeter:
    """CPU s of process trees between two reads (from /proc; a process that ends meanwhile is
    counted up to its last read)."""

    def __init__(self, roots: dict[str, int]):
        self.roots = roots
        self.start = self._read()

    def _read(self) -> dict[str, dict[int, float]]:
        return {name: tree_cpu(pid) for name, pid in self.roots.items()}

    def used(self) -> dict[str, float]:
        now = self._read()
        return {name: sum(cpu - self.start[name].get(pid, 0.0) for pid, cpu in now[name].items())
                for name in self.roots}


def http_json(url: str, body: dict | None = None, key: str | None = None, timeout: float = 5) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={
        "Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, OSError):
        return 0, {}


class FrontProcess:
    """`segstream serve --workers N` on a free port, in a process group of its own."""

    def __init__(self, config_path: Path, workers: int, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_path.open("w")
        self.popen = subprocess.Popen(
            [str(Path(sys.executable).parent / "segstream"), "serve", "--port", str(self.port),
             "--workers", str(workers)],
            env={**os.environ, **env, "SEGSTREAM_CONFIG": str(config_path)}, cwd=PROJECT_ROOT,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self) -> bool:
        """Every worker answers /healthz with its reply consumer assigned (connections are spread
        over the workers by the kernel, so ask until each instance has been seen ready)."""
        seen: set[str] = set()
        for _ in range(20 * self.workers):
            status, body = http_json(self.url + "/healthz")
            if status == 200 and body.get("replies_ready"):
                seen.add(body["instance"])
            if len(seen) == self.workers:
                return True
        return False

    def exit_reason(self) -> str | None:
        code = self.popen.poll()
        return None if code is None else f"the front exited with {code}"

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn's worker processes, or the one process."""
        children = [pid for pid in tree_cpu(self.popen.pid) if pid != self.popen.pid]
        # With --workers > 1 uvicorn also forks a resource tracker next to the workers: the workers
        # are those that used CPU.
        return sorted(children, key=lambda p: -tree_cpu(p).get(p, 0))[:self.workers] if self.workers > 1 \
            else [self.popen.pid]

    def stop(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(30)
        self.log.close()


def summarize_profile(raw: Path, top: int = 25) -> str:
    """py-spy's raw (collapsed) stacks: the leaf functions by share of samples, and the share of
    samples inside each of a few groups (inclusive)."""
    leaves: collections.Counter[str] = collections.Counter()
    groups: collections.Counter[str] = collections.Counter()
    total = 0
    patterns = {
        "serving/ track handler (inclusive)": "track (serving/app.py",
        "validation (decode, build, parse_record)": "serving/validation.py",
        "Front.send / produce": "send (serving/front.py",
        "confluent_kafka produce() call": "produce (",
        "reply consumer thread": "_read_replies",
        "producer poll thread": "_poll_producer",
        "prometheus_client": "prometheus_client",
        "fastapi routing/deps": "fastapi/",
        "starlette": "starlette/",
        "uvicorn protocol": "uvicorn/protocols",
        "asyncio event loop": "asyncio/",
        "idle (select/epoll)": "select (",
    }
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaves[frames[-1]] += n
        for label, pattern in patterns.items():
            if pattern in stack:
                groups[label] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples; groups (inclusive, a sample can be in several):"]
    lines += [f"  {groups[label] * 100 / total:5.1f} %  {label}" for label in patterns]
    lines.append("leaf functions (self):")
    lines += [f"  {n * 100 / total:5.1f} %  {frame}" for frame, n in leaves.most_common(top)]
    return "\n".join(lines)


def start_stack(root: Path, attempts: int = 3) -> LocalStack:
    """LocalStack.start, again if a free port it picked was taken meanwhile (a busy machine)."""
    for attempt in range(1, attempts + 1):
        try:
            return LocalStack.start(root)
        except StackError as exc:
            if attempt == attempts:
                raise
            print(f"the stack did not start ({str(exc).splitlines()[0]}); again", flush=True)
    raise AssertionError("unreachable")


def answering(front: FrontProcess, job: JobProcess, key: str) -> None:
    """Wait until the front's workers are ready and the job answers (its start-up is not latency)."""
    wait_for(front.ready, 120, "the front's workers", 0.2, abort=front.exit_reason)
    warm_body = {"user_id": "warm", "name": "view"}
    wait_for(lambda: http_json(front.url + "/v1/track", warm_body, key)[0] == 200, 600, "the job to answer", 0.2,
             abort=job.exit_reason)


def measure(front: FrontProcess, job: JobProcess, broker: int | None, label: str, round_no: int, root: Path,
            script: Path, key: str, users: int, connections: list[int], seconds: float, warm_up: float,
            profile: bool) -> list[str]:
    """One variant: wait until its front is ready and the job answers, warm up, then one measured wrk
    run per connection count. The table rows, also printed as they come."""
    answering(front, job, key)
    print(f"\n== {label} (workers {front.workers}; round {round_no}; load average {load()})", flush=True)
    if warm_up > 0:
        run_wrk(front.url + "/v1/track", script, max(connections), warm_up, users, key)
    rows = []
    for i, c in enumerate(connections):
        roots = {"front": front.popen.pid, "job": job.pid, "broker": broker or 0}
        meter = CpuMeter({k: v for k, v in roots.items() if v})
        tag = re.sub(r"[^A-Za-z0-9.-]+", "_", f"{round_no}-{label}-{front.workers}w-{c}")
        spy = [subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "-r", "100",
             "-d", f"{seconds:.0f}", "--nonblocking", "-f", "raw", "-o", str(root / f"profile-{tag}-{pid}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in front.worker_pids()] \
            if profile and i == 0 else []
        load_before = load()
        r = run_wrk(front.url + "/v1/track", script, c, seconds, users, key)
        used = meter.used()
        cores = {k: used.get(k, 0.0) / r.seconds for k in roots}
        others = {k: v for k, v in r.statuses.items() if k not in ("200", "202")}
        errors = {k: v for k, v in r.errors.items() if v}
        row = (f"| {label} | {front.workers} | {c} | {r.rate:,.0f} | {r.p50:.1f} | {r.p95:.1f} | {r.p99:.1f} | "
               f"{r.max:.0f} | {r.ok_share * 100:.2f} % | {r.statuses.get('202', 0)} | {others or ''}{errors or ''} | "
               f"{r.wrk_cpu / r.seconds:.2f} | {cores['front']:.2f} | {cores['job']:.2f} | {cores['broker']:.2f} | "
               f"{load_before} |")
        rows.append(row)
        print(row, flush=True)
        per_request = {k: v * 1e6 / max(r.requests, 1) for k, v in used.items()}
        print(f"   CPU µs/request: front {per_request.get('front', 0):.0f}, job {per_request.get('job', 0):.0f}, "
              f"broker {per_request.get('broker', 0):.0f}, wrk {r.wrk_cpu * 1e6 / max(r.requests, 1):.1f}", flush=True)
        for process in spy:
            process.wait(60)
        for raw in sorted(root.glob(f"profile-{tag}-*.txt")) if spy else []:
            print(f"-- py-spy {raw.name}\n{summarize_profile(raw)}", flush=True)
    return rows


@app.command()
def main(seconds: float = typer.Option(20, help="seconds per measured run"),
         warm_up: float = typer.Option(15, help="seconds of load before each variant's measured runs (not counted)"),
         job_warm_up: float = typer.Option(30, help="seconds of load on a freshly started job before the first "
                                                    "variant (JIT; not counted)"),
         connections: list[int] = typer.Option([50], help="wrk connections; one measured run each"),
         variant: list[str] = typer.Option([], help="'label|workers=N|VAR=value|...' (default: 1 and 2 workers)"),
         users: int = 2_000,
         rounds: int = typer.Option(1, help="repeat the whole list of variants (same stack, same job)"),
         bigtable: bool = typer.Option(False, help="the job also writes Bigtable (the emulator)"),
         trivial: bool = typer.Option(True, help="first measure wrk against a trivial server"),
         profile: bool = typer.Option(False, help="py-spy the front workers during each variant's first run"),
         job_env: list[str] = typer.Option([], help="VAR=value for the job, e.g. SEGSTREAM_FLINK__BUFFER_TIMEOUT_MS=1"),
         keep: bool = typer.Option(False, help="keep the work directory (logs, profiles)")) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")
    print(f"load average at start (1, 5, 15 min): {load()}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="segstream-serve-load-"))
    script = root / "track.lua"
    script.write_text(WRK_SCRIPT)

    if trivial:
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", TRIVIAL_SERVER, str(port)])
        try:
            wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 30, "the trivial server", 0.05)
            meter = CpuMeter({"server": server.pid})
            result = run_wrk(f"http://127.0.0.1:{port}/v1/track", script, max(connections), 5, users, "x")
            used = meter.used()
            print(f"\n== wrk against a trivial server ({max(connections)} connections, load average {load()}): "
                  f"{result.rate:,.0f} req/s; wrk {result.wrk_cpu / result.seconds:.2f} cores = "
                  f"{result.wrk_cpu * 1e6 / max(result.requests, 1):.1f} CPU µs/request; server "
                  f"{used['server'] / result.seconds:.2f} cores", flush=True)
        finally:
            server.kill()
            server.wait()

    stack = start_stack(root)
    job: JobProcess | None = None
    try:
        config_path = root / "bench.yaml"
        isolated_config(stack.config_path, config_path, "serve-load", root / "checkpoints")
        data = yaml.safe_load(config_path.read_text())
        data["bigtable"]["enabled"] = bigtable
        data["serving"] = {"keys_file": str(root / "tenants.json")}
        write_config(config_path, data)
        key, _ = KeyStore(root / "tenants.json").add("bench")
        extra = dict(a.split("=", 1) for a in job_env)
        job = JobProcess.start(config_path, [], root / "job.log", flink_log_dir=root / "flink-log", env=extra)
        status = stack.stack.status()
        print(f"stack and job up (work directory {root}; job env {extra or 'default'})", flush=True)

        if job_warm_up > 0:  # the job's JIT and caches, before the first variant (not counted)
            front = FrontProcess(config_path, 2, {}, root / "front-job-warm-up.log")
            try:
                answering(front, job, key)
                run_wrk(front.url + "/v1/track", script, max(connections), job_warm_up, users, key)
            finally:
                front.stop()
        specs = variant or ["1 worker|workers=1", "2 workers|workers=2"]
        rows: list[str] = []
        for round_no in range(1, rounds + 1):
            for spec in specs:
                label, *assignments = spec.split("|")
                env = dict(a.split("=", 1) for a in assignments)
                workers = int(env.pop("workers", "1"))
                front = FrontProcess(config_path, workers, env, root / f"front-{round_no}-{len(rows)}.log")
                try:
                    rows += measure(front, job, status["broker"], label, round_no, root, script, key, users,
                                    connections, seconds, warm_up, profile)
                finally:
                    front.stop()
        print("\n| variant | workers | connections | req/s | p50 ms | p95 ms | p99 ms | max ms | 200 share | 202 | "
              "other | wrk cores | front cores | job cores | broker cores | load avg at start |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))
    finally:
        if job is not None:
            job.kill()
        stack.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"load average at end (1, 5, 15 min): {load()}")


if __name__ == "__main__":
    app()
