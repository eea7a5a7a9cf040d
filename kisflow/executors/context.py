"""What an executor of your own tells the engine: which partition a run belongs to.

``running_partition(partition)`` marks the runs inside the ``with`` block as that
partition's, as the process pool and Dask do on their workers: a built-in Save then
records the partition's key with its rows, so a partition run again (after a crash, a
retry, a rebalance) stores its rows once. Stages read it with ``current_partition()``;
a FaaS of a checkpointed stream reads its ``Batch`` with ``current_batch()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from kisflow import _context
from kisflow.checkpoint import current_batch

__all__ = ["current_batch", "running_partition"]


@contextlib.contextmanager
def running_partition(partition: Any) -> Iterator[Any]:
    """Run the ``with`` block as ``partition`` (anything with a stable string ``key``).

    Context variables follow the block's thread and the tasks and ``asyncio.to_thread``
    calls it starts, so partitions run concurrently on threads never see each other's.
    """
    token = _context.PARTITION.set(partition)
    try:
        yield partition
    finally:
        _context.PARTITION.reset(token)
