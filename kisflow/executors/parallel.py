"""Partitions of a large input on a local process pool: every core of one machine.

Each worker process gets the flow as a ``FlowPayload`` (definition plus cloudpickled
callables, rebuilt once per process) and a partition description, loads the rows itself
with ``load`` and runs the flow on them. Results come back as small ``PartitionResult``s
(with the output rows only when ``keep_output=True``), in partition order.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from kisflow.errors import ConfigError, PartitionError
from kisflow.executors._partition import (
    Partition,
    PartitionResult,
    make_partitions,
    pack_options,
    run_partition,
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


class _PoolBackend:
    """The scheduler's view of a ``concurrent.futures`` process pool."""

    def __init__(
        self,
        pool: concurrent.futures.Executor,
        payload: FlowPayload,
        loader: bytes,
        options: bytes,
        keep_output: bool,
    ) -> None:
        self.pool = pool
        self.args = (payload, loader)
        self.options = options
        self.keep_output = keep_output

    def submit(self, partition: Partition) -> _Future:
        payload, loader = self.args
        return self.pool.submit(
            run_partition, payload, loader, partition, self.options, self.keep_output
        )

    def wait(self, running: Collection[_Future]) -> Iterable[_Future]:
        done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
        return done

    def result(self, future: _Future) -> bytes:
        return future.result()

    def release(self, future: _Future) -> None:
        """Nothing to release: a finished local future holds no remote state."""

    def stop(self, running: Collection[_Future]) -> None:
        for future in running:
            future.cancel()
        concurrent.futures.wait(running)


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
            cancelled.
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
    backend = _PoolBackend(pool, payload, loader, packed, keep_output)
    try:
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
