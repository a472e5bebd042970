"""`segstream cluster ...` (a local standalone Flink cluster) and `segstream job ...` (the job on it,
or on any Flink REST endpoint: list, stop with a savepoint, cancel, savepoint, checkpoints).

Registered by segstream/cli.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import typer
from rich.console import Console

from segstream.errors import StackError, one_line_errors

cluster_app = typer.Typer(no_args_is_help=True, help="A local standalone Flink cluster (JobManager + TaskManager).")
job_app = typer.Typer(no_args_is_help=True,
                      help="The job on a Flink cluster: run, list, stop with a savepoint, cancel.")
console = Console()

REST_HELP = "Flink REST address (default: the local cluster's, from `segstream cluster up`)."


def _cluster(**options):
    from segstream.cluster import Cluster, ClusterOptions
    from segstream.config import load_settings

    settings = load_settings()
    return Cluster(settings, ClusterOptions(**options) if options else None)


def _rest(url: str | None):
    from segstream.flink_rest import FlinkRest

    return FlinkRest(url) if url else _cluster().rest


@cluster_app.command("up")
@one_line_errors
def cluster_up(
    rest_port: int = typer.Option(18081, help="REST API and web UI port."),
    rpc_port: int = typer.Option(16123, help="JobManager RPC port."),
    slots: int = typer.Option(2, help="Task slots of the TaskManager (= the highest job parallelism)."),
):
    """Start a JobManager and a TaskManager on 127.0.0.1 (idempotent)."""
    cluster = _cluster(rest_port=rest_port, rpc_port=rpc_port, slots=slots)
    if cluster.jobmanager.pid() is not None:
        cluster = _cluster()  # already running: keep the options it was started with
    cluster.up()
    console.print(f"flink cluster up: {cluster.rest_url} (conf {cluster.conf_dir}, logs {cluster.log_dir})",
                  soft_wrap=True)


@cluster_app.command("down")
@one_line_errors
def cluster_down():
    """Stop the TaskManager and the JobManager (idempotent)."""
    stopped = _cluster().down()
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@cluster_app.command("status")
@one_line_errors
def cluster_status():
    """Which cluster processes run, the REST address, slots and jobs."""
    status = _cluster().status()
    for role in ("jobmanager", "taskmanager"):
        pid = status[role]
        console.print(f"{role:12} {'running, pid ' + str(pid) if pid else 'stopped'}")
    console.print(f"{'rest':12} {status['rest']}")
    if "slots" in status:
        console.print(f"{'slots':12} {status['slots']}")
    for jid, name, state in status.get("jobs", []):
        console.print(f"{'job':12} {jid} {name} {state}")
    if "error" in status:
        console.print(f"{'error':12} {status['error']}")


@job_app.command("run")
@one_line_errors
def job_run(
    bounded: bool = typer.Option(False, help="Stop at the end offsets found at start (fresh starts only)."),
    savepoint: str | None = typer.Option(None, help="Start from this savepoint or retained checkpoint."),
    detached: bool = typer.Option(False, "--detached", "-d", help="Return once the job is submitted."),
):
    """Submit jobs/user_stats.py to the local cluster with `flink run -py` (the command is printed)."""
    cluster = _cluster()
    if cluster.jobmanager.pid() is None:
        raise StackError("the local Flink cluster is not running: `segstream cluster up`")
    command = cluster.run_command(["--bounded"] if bounded else [], savepoint=savepoint, detached=detached)
    console.print(" ".join(command), soft_wrap=True)
    code = subprocess.call(command, env={**os.environ, **cluster.environment()})
    raise typer.Exit(code)


@job_app.command("list")
@one_line_errors
def job_list(rest: str | None = typer.Option(None, help=REST_HELP)):
    """Jobs known to the cluster."""
    for job in _rest(rest).jobs():
        console.print(f"{job['jid']}  {job['state']:10}  {job['name']}")


def _job_id(client, job_id: str | None) -> str:
    return job_id or client.running_job()


@job_app.command("stop")
@one_line_errors
def job_stop(
    job_id: str | None = typer.Argument(None, help="Default: the one running segstream job."),
    savepoint: bool = typer.Option(True, "--savepoint/--no-savepoint",
                                   help="Stop with a savepoint (flink stop), or cancel without one."),
    target_dir: Path | None = typer.Option(None, help="Where the savepoint goes (default: the cluster's)."),
    drain: bool = typer.Option(False, help="Flush event-time state first (only if the job will not be resumed)."),
    rest: str | None = typer.Option(None, help=REST_HELP),
):
    """Stop the job with a savepoint (`flink stop --savepointPath`) and print where it is."""
    client = _rest(rest)
    jid = _job_id(client, job_id)
    if not savepoint:
        client.cancel(jid)
        console.print(f"cancelled {jid} (its latest checkpoint is retained)")
        return
    target = str(target_dir.resolve().as_uri()) if target_dir else None
    if target is None and rest is None:
        target = _cluster().savepoint_dir.resolve().as_uri()
    location = client.stop_with_savepoint(jid, target, drain=drain)
    console.print(f"stopped {jid} with savepoint {location}", soft_wrap=True)
    console.print(f"resume: segstream job run --savepoint {location}", soft_wrap=True)


@job_app.command("savepoint")
@one_line_errors
def job_savepoint(
    job_id: str | None = typer.Argument(None, help="Default: the one running segstream job."),
    target_dir: Path | None = typer.Option(None, help="Where the savepoint goes (default: the cluster's)."),
    rest: str | None = typer.Option(None, help=REST_HELP),
):
    """Take a savepoint; the job keeps running."""
    client = _rest(rest)
    target = str(target_dir.resolve().as_uri()) if target_dir else None
    if target is None and rest is None:
        target = _cluster().savepoint_dir.resolve().as_uri()
    console.print(client.savepoint(_job_id(client, job_id), target))


@job_app.command("checkpoints")
@one_line_errors
def job_checkpoints(directory: Path | None = typer.Option(None, help="Default: flink.checkpoint_dir.")):
    """Retained checkpoints (complete ones), oldest first; the last is what to restore after a crash."""
    from segstream.checkpoints import completed_checkpoints
    from segstream.config import load_settings

    settings = load_settings()
    found: list[Path] = completed_checkpoints(directory or settings.path(settings.flink.checkpoint_dir))
    if not found:
        raise StackError("no complete retained checkpoint (no chk-N/_metadata)")
    for path in found:
        console.print(path.resolve().as_uri())
