"""All of kisflow's process-wide state, in one place: what the engine reads per process.

- ``pool``: the current pool (set by ``kisflow._pool``, swapped by ``pool.use``);
- ``observers``: observers of every run (``kisflow.observers.add``), a tuple replaced
  on write so a run reads it without a lock;
- ``debug_observers``: returns the debug-mode log observer when loguru would emit
  kisflow's DEBUG records, else ``()`` (installed by ``kisflow.runlog``);
- ``connector_types``: the default connector types (the built-ins, registered by
  ``kisflow.connectors``, and those of installed packages' entry points); a pool's own
  registrations (``kisflow.pool.connector_type``) come first.

Nothing here imports kisflow: every layer may read it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["connector_types", "debug_observers", "lock", "observers", "pool"]

lock = threading.Lock()
"""Held while a writer replaces one of the values below."""

pool: Any = None
"""The current ``kisflow._pool.Pool``."""

observers: tuple[Any, ...] = ()
"""The process-wide ``kisflow.observers.Observer`` instances, in registration order."""


def _no_observers() -> tuple[Any, ...]:
    return ()


debug_observers: Callable[[], tuple[Any, ...]] = _no_observers
"""Asked once per run and per stream batch: ``kisflow.runlog.watchers`` once imported."""

connector_types: dict[str, Any] = {}
"""Default connector types by lower-case name: ``kisflow.connector.ConnectorType``."""
