"""Batched, flow-controlled, acknowledged writes to Bigtable (docs/bigtable.md, "Delivery").

The client's own MutationsBatcherAsync cannot tell a caller when *its* rows are written (append()
returns nothing; errors surface only at close()), and the sink must not acknowledge an element
before its rows are durable. So this is a thin batcher on `bulk_mutate_rows`, which reports failures
per entry: every `write` awaits its own rows, concurrent writers share batches, and a full buffer
makes `write` wait (backpressure) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

import grpc
from google.api_core import exceptions as gexc
from google.cloud.bigtable.data import BigtableDataClientAsync
from google.cloud.bigtable.data.exceptions import MutationsExceptionGroup
from google.cloud.bigtable.data.mutations import RowMutationEntry

from sinks.bigtable import point_at_instance
from sinks.bigtable.config import BigtableConfig

log = logging.getLogger(__name__)

# Retrying these cannot help: the request itself (or the table) is wrong.
_PERMANENT = (gexc.BadRequest, gexc.NotFound, gexc.Forbidden, gexc.Unauthorized, gexc.MethodNotImplemented)


class BigtableWriteError(RuntimeError):
    """Rows that could not be written: a permanent error, or transient errors for too long."""


@dataclass(frozen=True)
class WriterOptions:
    max_batch_rows: int = 500  # per MutateRows request (Bigtable caps a request at 100k mutations)
    max_pending_rows: int = 20_000  # buffered + in flight, per writer; beyond it write() waits
    max_inflight_batches: int = 4  # concurrent MutateRows requests per table
    linger_s: float = 0.002  # an idle batcher waits this long so concurrent writers share a batch
    attempt_timeout_s: float = 10.0  # one MutateRows request (the client retries quick failures inside it)
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0  # capped low so an outage's end is noticed within ~2 s
    give_up_after_s: float = 300.0  # then the error surfaces and the job fails over


class BigtableWriter:
    """Must be created, used and closed on one running asyncio loop."""

    def __init__(self, config: BigtableConfig, options: WriterOptions = WriterOptions()):
        point_at_instance(config)
        self._opts = options
        self._client = BigtableDataClientAsync(project=config.project)
        self._instance = config.instance
        self._room = asyncio.Semaphore(options.max_pending_rows)
        self._tables: dict[str, _TableBatcher] = {}

    async def write(self, table_id: str, entries: list[RowMutationEntry]) -> None:
        """Return once every entry is applied; raise BigtableWriteError if any could not be."""
        batcher = self._tables.get(table_id)
        if batcher is None:
            table = self._client.get_table(self._instance, table_id)
            batcher = self._tables[table_id] = _TableBatcher(table, self._room, self._opts)
        await batcher.write(entries)

    async def close(self) -> None:
        for batcher in self._tables.values():
            await batcher.close()
        await self._client.close()


class _TableBatcher:
    def __init__(self, table, room: asyncio.Semaphore, opts: WriterOptions):
        self._table = table
        self._room = room
        self._opts = opts
        self._staged: deque[tuple[RowMutationEntry, asyncio.Future]] = deque()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(opts.max_inflight_batches)
        self._sends: set[asyncio.Task] = set()
        self._flusher = asyncio.create_task(self._flush_loop())

    async def write(self, entries: list[RowMutationEntry]) -> None:
        if self._flusher.done():
            raise BigtableWriteError("writer is closed")
        loop = asyncio.get_running_loop()
        futures = []
        for entry in entries:
            await self._room.acquire()  # backpressure: released when the row's batch settles
            future = loop.create_future()
            self._staged.append((entry, future))
            futures.append(future)
            self._wake.set()  # per row: a write bigger than the free room must not wait on itself
        # Wait for all rows (no failure left unretrieved), then report the first failure.
        for outcome in await asyncio.gather(*futures, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    async def close(self) -> None:
        """Send what is staged, wait for every send, stop."""
        self._flusher.cancel()
        await asyncio.gather(self._flusher, return_exceptions=True)
        while self._staged:
            await self._send_next_batch()
        await asyncio.gather(*self._sends, return_exceptions=True)

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._opts.linger_s)
            while self._staged:
                await self._send_next_batch()

    async def _send_next_batch(self) -> None:
        # Waiting for a slot while rows keep arriving is what makes batches grow under load.
        await self._slots.acquire()
        n = min(len(self._staged), self._opts.max_batch_rows)
        batch = [self._staged.popleft() for _ in range(n)]
        task = asyncio.create_task(self._send(batch))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send(self, batch: list[tuple[RowMutationEntry, asyncio.Future]]) -> None:
        opts = self._opts
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + opts.give_up_after_s
        backoff = opts.initial_backoff_s
        pending = batch
        try:
            while pending:
                failed = await self._attempt([entry for entry, _ in pending])
                for i, (_, future) in enumerate(pending):
                    if i not in failed and not future.done():
                        future.set_result(None)
                permanent = [exc for exc in failed.values() if _is_permanent(exc)]
                if permanent or (failed and loop.time() >= give_up_at):
                    why = "permanent error" if permanent else f"still failing after {opts.give_up_after_s:.0f}s"
                    error = BigtableWriteError(
                        f"{len(failed)} rows not written to {self._table.table_id} ({why}): "
                        f"{_describe(next(iter(permanent or failed.values())))}"
                    )
                    log.error("%s", error)
                    for i in failed:
                        if not pending[i][1].done():
                            pending[i][1].set_exception(error)
                    return
                if failed:
                    log.warning(
                        "%d rows not yet written to %s (%s); retrying in %.2fs",
                        len(failed), self._table.table_id, _describe(next(iter(failed.values()))), backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, opts.max_backoff_s)
                pending = [pending[i] for i in sorted(failed)]
        except (Exception, asyncio.CancelledError) as exc:  # never leave a writer waiting forever
            log.error("write to %s aborted: %r", self._table.table_id, exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(BigtableWriteError(f"write to {self._table.table_id} aborted: {exc!r}"))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            for _ in batch:
                self._room.release()
            self._slots.release()

    async def _attempt(self, entries: list[RowMutationEntry]) -> dict[int, Exception]:
        """One bulk write; {index: error} for the entries that did not make it."""
        try:
            await self._table.bulk_mutate_rows(
                entries,
                operation_timeout=self._opts.attempt_timeout_s,
                attempt_timeout=self._opts.attempt_timeout_s,
            )
        except MutationsExceptionGroup as group:
            return {exc.index: exc for exc in group.exceptions}
        return {}


def _errors(exc: BaseException) -> list[BaseException]:
    """Every error in a failed entry's cause tree (groups of per-attempt errors, wrapped causes),
    raw gRPC errors mapped to their api_core types."""
    found, stack = [], [exc]
    while stack:
        err = stack.pop()
        if isinstance(err, grpc.RpcError) and not isinstance(err, gexc.GoogleAPICallError):
            err = gexc.from_grpc_error(err)
        found.append(err)
        if isinstance(err, BaseExceptionGroup):
            stack.extend(err.exceptions)
        elif err.__cause__ is not None:
            stack.append(err.__cause__)
    return found


def _is_permanent(exc: BaseException) -> bool:
    return any(isinstance(err, _PERMANENT) for err in _errors(exc))


def _describe(exc: BaseException) -> str:
    api_errors = [err for err in _errors(exc) if isinstance(err, gexc.GoogleAPICallError)]
    err = api_errors[-1] if api_errors else exc
    return f"{type(err).__name__}: {getattr(err, 'message', err)}"
