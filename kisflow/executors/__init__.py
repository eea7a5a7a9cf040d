"""How runs are carried out beyond one ``flow.run``: streams, async, processes, clusters.

- ``Stream`` / ``AsyncStream`` (``flow.stream``, ``flow.astream``): micro-batches over an
  endless source with bounded memory and a clean stop.
- ``run_async`` (``await flow.arun``): the async driver (it lives beside the sync one,
  in ``kisflow._run``).
- ``run_partitions``: partitions of a large input on a local process pool;
  ``kisflow.executors.dask.run_partitions`` (alias ``kisflow.dask``) does the same on a
  Dask cluster.
- ``current_partition``: which partition a stage is running, for idempotent saves;
  ``running_partition`` marks the runs of an executor of your own as a partition's.

Each name is imported on first use, so ``import kisflow.executors`` loads neither the
process pool nor cloudpickle until a partition run is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kisflow._run import run_async
    from kisflow.executors._partition import Partition, PartitionResult, current_partition
    from kisflow.executors._ship import FlowPayload
    from kisflow.executors.context import running_partition
    from kisflow.executors.parallel import process_pool, run_partitions
    from kisflow.executors.stream import (
        DEFAULT_BATCH_SIZE,
        AsyncStream,
        Stream,
        StreamSummary,
        run_jsonl_stream,
    )

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "AsyncStream",
    "FlowPayload",
    "Partition",
    "PartitionResult",
    "Stream",
    "StreamSummary",
    "current_partition",
    "process_pool",
    "run_async",
    "run_jsonl_stream",
    "run_partitions",
    "running_partition",
]

_HOME = {
    "DEFAULT_BATCH_SIZE": "stream",
    "AsyncStream": "stream",
    "FlowPayload": "_ship",
    "Partition": "_partition",
    "PartitionResult": "_partition",
    "Stream": "stream",
    "StreamSummary": "stream",
    "current_partition": "_partition",
    "process_pool": "parallel",
    "run_async": "kisflow._run",
    "run_jsonl_stream": "stream",
    "run_partitions": "parallel",
    "running_partition": "context",
}
"""The submodule each public name lives in."""

_SUBMODULES = frozenset({"dask", "parallel", "stream"})
"""Public submodules, also reachable as attributes before anything imported them."""


def __getattr__(name: str) -> Any:
    """Import a public name's (or a public submodule's) module on first use."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = home if home.startswith("kisflow.") else f"{__name__}.{home}"
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
