"""All of kisflow's process-wide state, in one place: what the engine reads per process.

- ``pool``: the current pool (set by ``kisflow._pool``, swapped by ``pool.use``);
- ``observers``: observers of every run (``kisflow.observers.add``), a tuple replaced
  on write so a run reads it without a lock;
- ``connector_types``: the default connector types (the built-ins, registered by
  ``kisflow.connectors``, and those of installed packages' entry points); a pool's own
  registrations (``kisflow.pool.connector_type``) come first.

Nothing here imports kisflow: every layer may read it.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["connector_types", "lock", "observers", "pool"]

lock = threading.Lock()
"""Held while a writer replaces one of the values below."""

pool: Any = None
"""The current ``kisflow._pool.Pool``."""

observers: tuple[Any, ...] = ()
"""The process-wide ``kisflow.observers.Observer`` instances, in registration order."""

connector_types: dict[str, Any] = {}
"""Default connector types by lower-case name: ``kisflow.connector.ConnectorType``."""
