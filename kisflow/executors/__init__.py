"""How runs are carried out beyond one ``flow.run``: streams, async, processes, clusters.

- ``Stream`` / ``AsyncStream`` (``flow.stream``, ``flow.astream``): micro-batches over an
  endless source with bounded memory and a clean stop.
- ``run_async`` (``await flow.arun``): the async driver.
- ``run_partitions``: partitions of a large input on a local process pool;
  ``kisflow.dask.run_partitions`` does the same on a Dask cluster.
- ``current_partition``: which partition a stage is running, for idempotent saves.
"""

from kisflow.executors._async import run_async
from kisflow.executors._partition import (
    FlowPayload,
    Partition,
    PartitionResult,
    current_partition,
)
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
]
