"""Partitions of a large input on a local process pool: every core of one machine.

Each worker process gets the flow as a ``FlowPayload`` (definition plus cloudpickled
callables, rebuilt once per process) and a partition description, loads the rows itself
with ``load`` and runs the flow on them. Results come back as small ``PartitionResult``s
(with the output rows only when ``keep_output=True``), in partition order.

A worker that dies breaks the whole pool, which then fails every task it holds with the
same ``BrokenProcessPool``; each worker records which partition it started (a file per
partition in a private folder), so the error names the partition the dead worker was
running, and the others as lost with it.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from kisflow.errors import ConfigError, PartitionError
from kisflow.executors._partition import (
    Partition,
    PartitionResult,
    make_partitions,
    pack_options,
    run_partition,
    started_on,
)
from kisflow.executors._scheduler import run_window
from kisflow.executors._ship import FlowPayload, shippable
from kisflow.options import RunOptions, merge

if TYPE_CHECKING:
    from kisflow.flow import Flow

__all__ = ["process_pool", "run_partitions"]

_Future = concurrent.futures.Future[bytes]


def process_pool(workers: int | None = None) -> concurrent.futures.ProcessPoolExecutor:
    """A process pool for ``run_partitions`` (spawned processes: safe with threads).

    Reuse one across calls to pay the start-up (interpreter, imports, flow rebuild) once.
    """
    n = workers if workers is not None else (os.cpu_count() or 1)
    if n < 1:
        raise ConfigError(f"process pool needs at least 1 worker, got {n}", key="workers")
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=n, mp_context=multiprocessing.get_context("spawn")
    )


_Broken = concurrent.futures.process.BrokenProcessPool

_SETTLE_TIMEOUT = 30.0
"""Seconds to wait for a broken pool to fail all its tasks and end its workers."""


class _PoolBackend:
    """The scheduler's view of a ``concurrent.futures`` process pool.

    When the pool breaks (a worker died), it works out which partition the dead worker
    was running, hands that one to the scheduler first and says in each lost task's
    error which it was.
    """

    def __init__(
        self,
        pool: concurrent.futures.Executor,
        payload: FlowPayload,
        loader: bytes,
        options: bytes,
        keep_output: bool,
        started: str,
    ) -> None:
        self.pool = pool
        self.args = (payload, loader)
        self.options = options
        self.keep_output = keep_output
        self.started = started
        """The folder where workers record the partitions they start (``mark_started``)."""
        self.parts: dict[_Future, Partition] = {}
        self.processes: dict[int, Any] = {}
        """The pool's worker processes by pid, for their exit codes (CPython's pool)."""
        self.lost: dict[int, str] | None = None
        """Once the pool broke: why each partition in flight was lost, by index."""
        self.dead: set[int] = set()
        """The indexes of the partitions whose worker died running them."""

    def submit(self, partition: Partition) -> _Future:
        payload, loader = self.args
        future = self.pool.submit(
            run_partition,
            payload,
            loader,
            partition,
            self.options,
            self.keep_output,
            self.started,
        )
        self.parts[future] = partition
        self.processes = getattr(self.pool, "_processes", None) or self.processes
        return future

    def wait(self, running: Collection[_Future]) -> Iterable[_Future]:
        done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
        if self.lost is None and any(_is_broken(f) for f in done):
            # The pool fails every task it holds, one after another: take them all,
            # then tell the dead worker's partition from those lost with it.
            done, _ = concurrent.futures.wait(running, timeout=_SETTLE_TIMEOUT)
            self.lost = self._diagnose([self.parts[f] for f in done if _is_broken(f)])
        # The dead worker's partition first: without on_error, that is the one raised.
        return sorted(done, key=self._order)

    def _order(self, future: _Future) -> tuple[bool, int]:
        index = self.parts[future].index
        return index not in self.dead, index

    def result(self, future: _Future) -> bytes:
        try:
            return future.result()
        except _Broken as exc:
            why = (self.lost or {}).get(self.parts[future].index)
            if why is None:
                raise
            raise _Broken(why) from exc

    def release(self, future: _Future) -> None:
        """Forget the partition of a settled future (a local future holds nothing remote)."""
        self.parts.pop(future, None)

    def stop(self, running: Collection[_Future]) -> None:
        for future in running:
            future.cancel()
        concurrent.futures.wait(running)

    def _diagnose(self, lost: list[Partition]) -> dict[int, str]:
        """Why each lost partition was lost: the dead worker's, and those lost with it."""
        started = started_on(self.started)
        pids = {p.index: started[p.index] for p in lost if p.index in started}
        codes = _exit_codes(self.processes, set(pids.values()))
        # The pool ends the surviving workers with SIGTERM: any other end is the death.
        dead = {i for i, pid in pids.items() if codes.get(pid) not in (None, -signal.SIGTERM)}
        if not dead and len(pids) == 1:
            dead = set(pids)
        self.dead = dead
        keys = {p.index: p.key for p in lost}
        why: dict[int, str] = {}
        for index in dead:
            pid = pids[index]
            why[index] = (
                f"its worker process (pid {pid}) died while running it "
                f"({_exit_text(codes.get(pid))}), which broke the process pool"
            )
        if dead:
            culprits = ", ".join(f"{keys[i]!r} (pid {pids[i]})" for i in sorted(dead))
            named = "partition" if len(dead) == 1 else "partitions"
            for p in lost:
                if p.index not in dead:
                    why[p.index] = (
                        f"lost when the process pool broke: the worker process running "
                        f"{named} {culprits} died"
                    )
        return why


def _is_broken(future: _Future) -> bool:
    return not future.cancelled() and isinstance(future.exception(), _Broken)


def _exit_codes(processes: dict[int, Any], pids: set[int]) -> dict[int, int | None]:
    """The exit code of each of ``pids`` among the pool's processes, once they ended.

    Waits (at most ``_SETTLE_TIMEOUT``) for the broken pool to end its workers, so the
    dead worker's own exit code is told from the pool's SIGTERM of the others.
    """
    codes: dict[int, int | None] = {}
    deadline = time.monotonic() + _SETTLE_TIMEOUT
    for pid in pids:
        proc = processes.get(pid)
        code = None
        while proc is not None:
            try:
                code = proc.exitcode
            except ValueError:  # a closed Process object: its code is gone
                break
            if code is not None or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        codes[pid] = code
    return codes


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def run_partitions(
    flow: Flow,
    partitions: Iterable[Any],
    *,
    load: Callable[[Any], Iterable[Any]],
    key: Callable[[Any], str] | None = None,
    ctx: Any = None,
    options: RunOptions | None = None,
    keep_output: bool = False,
    workers: int | None = None,
    executor: concurrent.futures.ProcessPoolExecutor | None = None,
    on_result: Callable[[PartitionResult], None] | None = None,
    on_error: Callable[[PartitionError], None] | None = None,
    progress: bool | None = None,
) -> list[PartitionResult]:
    """Run ``flow`` over ``partitions`` on a process pool; results in partition order.

    Args:
        partitions: descriptions (an index, a path, a query), not rows; each is given
            to ``load`` in a worker process, which returns the partition's rows.
        load: turns a description into rows; runs in the worker.
        key: a stable key per description (default: its index), see ``current_partition``.
        ctx: passed to every FaaS that takes a context (must pickle); overrides
            ``options.ctx``.
        options: the run's ``RunOptions``; its ctx, max_steps and dead-letter sink go
            to every partition's run (they must pickle; a list sink is refused, a
            JSONL path is written by every worker). Observers stay in this process.
        keep_output: send each partition's output rows back (off: counts only).
        workers: processes to start when no ``executor`` is given (default: all cores).
        executor: a pool from ``process_pool()`` to reuse (it is left running).
        on_result: called in the caller as each partition finishes (any order).
        on_error: given, a failed partition's ``PartitionError`` goes to it and the other
            partitions go on (the result list then leaves the failed ones out); without
            it the first failure is raised.
        progress: show a progress bar of partitions (default: on a terminal only).

    Raises:
        PartitionError: a partition failed (and no ``on_error``); names flow, stage and
            partition, chained to the original error. Partitions not yet started are
            cancelled. A worker process that dies fails the partition it was running
            first (the message says so, with its pid and exit code; the cause is a
            ``BrokenProcessPool``); the pool is then broken, and the partitions it held
            fail as lost with it.
        ConfigError: the options' ctx or sink cannot be sent to the workers (before
            any partition starts).
        RunError: ``partitions``, ``key``, ``on_result`` or ``on_error`` raised.
    """
    payload = FlowPayload.of(flow)
    packed = pack_options(flow.name, merge(options, ctx=ctx))
    loader = shippable(flow.name, "load", load, [load], key="load")
    own = executor is None
    pool = process_pool(workers) if executor is None else executor
    window = 2 * getattr(pool, "_max_workers", os.cpu_count() or 1)
    try:
        with tempfile.TemporaryDirectory(prefix="kisflow-partitions-") as started:
            backend = _PoolBackend(pool, payload, loader, packed, keep_output, started)
            return run_window(
                flow.name,
                make_partitions(partitions, key),
                backend,
                window,
                on_result=on_result,
                on_error=on_error,
                progress=progress,
            )
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
