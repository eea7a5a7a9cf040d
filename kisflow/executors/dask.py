"""Run a flow over partitions on a ``dask.distributed`` cluster (extra ``kisflow[dask]``).

``run_partitions(client, flow, partitions, load=...)`` sends each worker the flow as a
payload (definition plus cloudpickled FaaS/CaaS, re-registered in an isolated pool on
the worker) and one partition *description* per task; the worker loads the rows itself.
Results are consumed with ``as_completed`` and released at once, so a worker that dies
later does not make the scheduler recompute (and re-save) finished partitions; at most
one task per worker thread is handed out at a time (saturation 1.0), so a partition that
kills its worker cannot take queued neighbours down with it. A partition rerun after a
crash still runs its Save stage again: make Save idempotent with
``kisflow.executors.current_partition()`` (docs/dask.md). ``kisflow.dask`` is an alias.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from loguru import logger

from kisflow.errors import MissingExtraError, PartitionError
from kisflow.executors._partition import (
    FlowPayload,
    Partition,
    PartitionResult,
    collect,
    current_partition,
    dumps,
    make_partitions,
    run_partition,
)
from kisflow.progress import progress_bar

if TYPE_CHECKING:
    from distributed import Client

    from kisflow.flow import Flow

__all__ = ["Partition", "PartitionResult", "current_partition", "run_partitions"]

SATURATION_CONFIG = {"distributed.scheduler.worker-saturation": 1.0}
"""Dask config to start a scheduler with (``dask.config.set(SATURATION_CONFIG)``)."""


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise MissingExtraError("dask", "distributed") from exc
    return distributed


def _check_saturation(cluster: Any, flow: str) -> None:
    """Log a warning when the scheduler queues more than one task per worker thread."""
    try:
        saturation = cluster.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.WORKER_SATURATION
        )
    except Exception:  # an old scheduler or one that blocks run_on_scheduler: not fatal
        return
    if saturation != 1.0:
        logger.bind(flow=flow).warning(
            "dask scheduler runs with worker-saturation {}; start it with "
            "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION=1.0 so a crashing partition "
            "does not take queued neighbours with it",
            saturation,
        )


def run_partitions(
    client: Client,
    flow: Flow,
    partitions: Iterable[Any],
    *,
    load: Callable[[Any], Iterable[Any]],
    key: Callable[[Any], str] | None = None,
    ctx: Any = None,
    keep_output: bool = False,
    max_in_flight: int | None = None,
    on_result: Callable[[PartitionResult], None] | None = None,
    on_error: Callable[[PartitionError], None] | None = None,
    progress: bool | None = None,
) -> list[PartitionResult]:
    """Run ``flow`` over ``partitions`` on the cluster of ``client``; results in order.

    Args:
        client: a ``distributed.Client`` connected to the cluster.
        partitions: descriptions (an index, a path, a query), not rows.
        load: turns a description into rows; runs on the worker (cloudpickled).
        key: a stable key per description (default: its index); a Save stage reads it
            from ``current_partition().key`` to write each partition once.
        ctx: passed to every FaaS that takes a context (must pickle).
        keep_output: send each partition's output rows back (off: counts only).
        max_in_flight: tasks handed to the cluster at once (default: its thread count).
        on_result: called in the caller as each partition finishes (any order).
        on_error: given, a failed partition's ``PartitionError`` goes to it and the other
            partitions go on (the result list then leaves the failed ones out); without
            it the first failure is raised.
        progress: show a progress bar of partitions (default: on a terminal only).

    Raises:
        PartitionError: a partition failed (or killed workers too often) and there is no
            ``on_error``; names flow, stage and partition, chained to the original
            error. Partitions not yet started are cancelled.
        MissingExtraError: ``kisflow[dask]`` is not installed.
    """
    distributed = _distributed()
    payload = FlowPayload.of(flow)
    loader = dumps(load, [load])
    cluster: Any = client
    _check_saturation(cluster, flow.name)
    window = max_in_flight or max(1, sum(cluster.nthreads().values()))
    run_id = uuid.uuid4().hex[:8]
    todo = iter(make_partitions(partitions, key))
    results: dict[int, PartitionResult] = {}
    running: dict[Any, Partition] = {}
    pending = distributed.as_completed()
    bar = progress_bar(desc=f"{flow.name} partitions", enabled=progress)

    def submit() -> bool:
        part = next(todo, None)
        if part is None:
            return False
        future = cluster.submit(
            run_partition,
            payload,
            loader,
            part,
            ctx,
            keep_output,
            key=f"kisflow-{flow.name}-{run_id}-{part.index}",
            pure=False,
            retries=0,
        )
        running[future] = part
        pending.add(future)
        return True

    try:
        for _ in range(window):
            if not submit():
                break
        for future in pending:
            part = running.pop(future)
            try:
                collect(flow.name, part, future.result, results, bar, on_result, on_error)
            finally:
                # Release at once: a result held here is one the scheduler would
                # recompute (re-running its Save stage) if its worker died.
                future.release()
            submit()
    finally:
        for future in running:
            future.cancel()
        bar.close()
    return [results[i] for i in sorted(results)]
