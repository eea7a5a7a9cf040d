"""``kisflow.dask``: an alias of ``kisflow.executors.dask``, kept for the short name.

The names are looked up on first use, so importing this module costs nothing until a
Dask run is asked for (``kisflow.executors.dask`` is where the code lives).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kisflow.executors.dask import SATURATION_CONFIG as SATURATION_CONFIG
    from kisflow.executors.dask import (
        Partition,
        PartitionResult,
        current_partition,
        run_partitions,
    )

__all__ = ["Partition", "PartitionResult", "current_partition", "run_partitions"]

_NAMES = frozenset({*__all__, "SATURATION_CONFIG"})


def __getattr__(name: str) -> Any:
    """Forward a public name to ``kisflow.executors.dask`` (imported on first use)."""
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("kisflow.executors.dask"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})
