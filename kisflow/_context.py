"""What the engine tells the code it calls, through context variables.

A run whose flow has connectors sets ``RUN`` to itself for its duration, an executor
sets ``PARTITION`` to the partition (or stream batch) it runs, and a stream running batches
concurrently sets ``GATE``: a run's Save stages wait on it for the batch before to commit.
A built-in Save reads ``RUN`` and ``PARTITION`` to compute its idempotency mark (flow,
stage, partition, call number) without knowing the executor or the run's internals.
Context variables follow threads started with ``asyncio.to_thread`` and tasks, so
concurrent runs never see each other's values.
"""

from __future__ import annotations

import contextvars
from typing import Any, Protocol

__all__ = [
    "GATE",
    "PARTITION",
    "RUN",
    "STREAMING",
    "Gate",
    "Keyed",
    "RunInfo",
    "current_partition",
    "current_run",
]


class RunInfo(Protocol):
    """What a run tells observers and connectors about itself."""

    @property
    def flow_name(self) -> str:
        """The flow's name."""

    @property
    def run_id(self) -> int:
        """A number unique to this run within the process."""

    @property
    def steps(self) -> int:
        """Stage calls made so far, the current one included (1 for the first)."""

    @property
    def attempt(self) -> int:
        """The current stage call's attempt, from 1."""

    @property
    def ctx(self) -> Any:
        """The run's ``ctx``."""


class Keyed(Protocol):
    """A unit of work an executor runs: a partition or a stream batch, by a stable key."""

    @property
    def key(self) -> str:
        """What a Save records to write this unit once."""


class Gate(Protocol):
    """What a Save stage waits for before it runs (a stream's ordered commits)."""

    def wait(self) -> None:
        """Block until the Save may run; raise to abandon the run before it stores."""

    async def await_(self) -> None:
        """``wait`` on an event loop."""


RUN: contextvars.ContextVar[RunInfo | None] = contextvars.ContextVar("kisflow_run", default=None)
"""The run being carried out in this context (set only for flows with connectors)."""

PARTITION: contextvars.ContextVar[Any] = contextvars.ContextVar("kisflow_partition", default=None)
"""The ``Keyed`` unit (partition, batch) an executor is running in this context."""

GATE: contextvars.ContextVar[Gate | None] = contextvars.ContextVar("kisflow_gate", default=None)
"""The ``Gate`` a run's Save stages pass before they run (None: no waiting)."""


STREAMING: contextvars.ContextVar[bool] = contextvars.ContextVar("kisflow_streaming", default=False)
"""True while a run is one batch of a stream: window stages keep their open windows
between runs (saved with the checkpoint) instead of closing them when the run ends."""


def current_run() -> RunInfo | None:
    """The run being carried out in this context, or None."""
    return RUN.get()


def current_partition() -> Any:
    """The partition or batch an executor is running in this context, or None."""
    return PARTITION.get()
