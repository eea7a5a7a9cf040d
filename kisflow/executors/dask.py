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
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from loguru import logger

from kisflow.errors import MissingExtraError, PartitionError, RunError
from kisflow.executors._partition import (
    Partition,
    PartitionResult,
    current_partition,
    make_partitions,
    pack_options,
    run_partition,
)
from kisflow.executors._scheduler import run_window
from kisflow.executors._ship import FlowPayload, shippable
from kisflow.options import RunOptions, merge

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


def _threads(cluster: Any, flow: str) -> int:
    """The cluster's worker threads (at least 1): the default window."""
    try:
        threads: int = sum(cluster.nthreads().values())
    except Exception as exc:  # a closed client, a scheduler that went away
        raise RunError(
            f"flow {flow!r}: cannot reach the Dask cluster: {type(exc).__name__}: {exc}",
            flow=flow,
        ) from exc
    return max(1, threads)


class _DaskBackend:
    """The scheduler's view of a Dask client: futures consumed through ``as_completed``."""

    def __init__(
        self,
        cluster: Any,
        distributed: Any,
        flow: str,
        args: tuple[FlowPayload, bytes, bytes, bool],
    ) -> None:
        self.cluster = cluster
        self.args = args
        self.prefix = f"kisflow-{flow}-{uuid.uuid4().hex[:8]}"
        self.pending = distributed.as_completed()

    def submit(self, partition: Partition) -> Any:
        payload, loader, options, keep_output = self.args
        future = self.cluster.submit(
            run_partition,
            payload,
            loader,
            partition,
            options,
            keep_output,
            key=f"{self.prefix}-{partition.index}",
            pure=False,
            retries=0,
        )
        self.pending.add(future)
        return future

    def wait(self, running: Collection[Any]) -> Iterable[Any]:
        return (next(self.pending),)

    def result(self, future: Any) -> bytes:
        data: bytes = future.result()
        return data

    def release(self, future: Any) -> None:
        # Release at once: a result held here is one the scheduler would recompute
        # (re-running its Save stage) if its worker died.
        future.release()

    def stop(self, running: Collection[Any]) -> None:
        for future in running:
            future.cancel()


def run_partitions(
    client: Client,
    flow: Flow,
    partitions: Iterable[Any],
    *,
    load: Callable[[Any], Iterable[Any]],
    key: Callable[[Any], str] | None = None,
    ctx: Any = None,
    options: RunOptions | None = None,
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
        ctx: passed to every FaaS that takes a context (must pickle); overrides
            ``options.ctx``.
        options: the run's ``RunOptions``; its ctx, max_steps and dead-letter sink go
            to every partition's run (they must pickle; a list sink is refused, a
            JSONL path must be one the workers share). Observers stay in this process.
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
        ConfigError: the options' ctx or sink cannot be sent to the workers (before
            any partition starts).
        RunError: ``partitions``, ``key``, ``on_result`` or ``on_error`` raised.
        MissingExtraError: ``kisflow[dask]`` is not installed.
    """
    distributed = _distributed()
    payload = FlowPayload.of(flow)
    packed = pack_options(flow.name, merge(options, ctx=ctx))
    loader = shippable(flow.name, "load", load, [load], key="load")
    cluster: Any = client
    _check_saturation(cluster, flow.name)
    window = max_in_flight or _threads(cluster, flow.name)
    backend = _DaskBackend(cluster, distributed, flow.name, (payload, loader, packed, keep_output))
    return run_window(
        flow.name,
        make_partitions(partitions, key),
        backend,
        window,
        on_result=on_result,
        on_error=on_error,
        progress=progress,
    )
