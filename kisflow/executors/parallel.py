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
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from kisflow.errors import ConfigError, PartitionError
from kisflow.executors._partition import (
    FlowPayload,
    Partition,
    PartitionResult,
    collect,
    dumps,
    make_partitions,
    run_partition,
)
from kisflow.progress import progress_bar

if TYPE_CHECKING:
    from kisflow.flow import Flow

__all__ = ["process_pool", "run_partitions"]


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


def run_partitions(
    flow: Flow,
    partitions: Iterable[Any],
    *,
    load: Callable[[Any], Iterable[Any]],
    key: Callable[[Any], str] | None = None,
    ctx: Any = None,
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
        ctx: passed to every FaaS that takes a context (must pickle).
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
    """
    payload = FlowPayload.of(flow)
    loader = dumps(load, [load])
    own = executor is None
    pool = process_pool(workers) if executor is None else executor
    window = 2 * getattr(pool, "_max_workers", os.cpu_count() or 1)
    results: dict[int, PartitionResult] = {}
    todo = iter(make_partitions(partitions, key))
    running: dict[concurrent.futures.Future[Any], Partition] = {}
    bar = progress_bar(desc=f"{flow.name} partitions", enabled=progress)
    try:
        while True:
            while len(running) < window:
                part = next(todo, None)
                if part is None:
                    break
                future = pool.submit(run_partition, payload, loader, part, ctx, keep_output)
                running[future] = part
            if not running:
                break
            done, _ = concurrent.futures.wait(
                running, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                part = running.pop(future)
                collect(flow.name, part, future.result, results, bar, on_result, on_error)
    finally:
        for future in running:
            future.cancel()
        concurrent.futures.wait(running)
        bar.close()
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
    return [results[i] for i in sorted(results)]
