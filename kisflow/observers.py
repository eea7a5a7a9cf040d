"""Observers: how metrics, progress bars, dashboards and tracing see runs.

An observer is a subclass of ``Observer`` that overrides the events it needs (the
others do nothing); the engine calls every event on every observer, so an object that
only has some of the methods would have its missing ones logged as failures. Register
one for every run of the process with ``add`` (or the ``observing`` context manager),
or for some runs with ``RunOptions(observers=(obs,))``. The engine calls them in the
thread running the run; an observer must be quick and thread-safe, and an exception it
raises is logged, never turned into a run failure. With no observer registered the run
loop does no extra work.

Events, in order, for one run::

    run_started(run) -> (stage_started(run, stage, position) -> stage_done(run, call)) ...
        -> run_done(run, result, error)

where a FaaS call that raises is told first as ``call_failed(run, stage, attempt,
error)``, then as ``retried(run, stage, attempt + 1, error)`` if it is tried again (the
stage's ``stage_done`` follows once a call succeeds); a stage that fails for good gets
no ``stage_done``, and ``run_done`` has the error.

and ``batch_done(flow, batch, result)`` after each batch a stream yields, then
``stream_committed(flow, status)`` once that batch's effects and position are committed
(``StreamStatus``: position, committed rows, lag, batches in flight, checkpoint time).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from loguru import logger

from kisflow import _state

if TYPE_CHECKING:
    from kisflow._context import RunInfo
    from kisflow.result import RunResult
    from kisflow.stage import Stage

__all__ = [
    "Observer",
    "StageCall",
    "StreamStatus",
    "active",
    "add",
    "notify",
    "observer_failed",
    "observing",
    "remove",
]


class StageCall(NamedTuple):
    """One finished stage call, as an observer sees it (a tuple: cheap to make per call)."""

    stage: Stage
    position: int
    """The stage's index in the flow's chain."""
    rows_in: int
    rows_out: int
    filtered: int
    """Rows taken in but neither passed on nor dead-lettered: ``max(0, in - out - dead)``."""
    dead: int
    """Rows the stage's dead-letter sink took during this call."""
    seconds: float
    attempts: int
    """FaaS calls made for this stage call (1 unless it was retried)."""


class StreamStatus(NamedTuple):
    """Where a stream stands after a committed batch, as an observer sees it."""

    batch: int
    """The committed batch's number (from 1)."""
    position: Any
    """The source position after the batch (JSON-able; None for a plain iterable)."""
    committed: int
    """Source rows whose batches are committed so far (this stream, this process)."""
    lag: int | None
    """Messages the source holds behind this position, when the source knows it."""
    in_flight: int
    """Batches read and not yet committed."""
    checkpoint_time: float | None
    """``time.time()`` of the last checkpoint commit, or None without a checkpoint."""


class Observer:
    """The observer interface: every method does nothing until overridden."""

    def run_started(self, run: RunInfo, rows: int) -> None:
        """A run starts on ``rows`` source rows."""

    def stage_started(self, run: RunInfo, stage: Stage, position: int) -> None:
        """A stage call is about to start (``position``: its index in the chain)."""

    def stage_done(self, run: RunInfo, call: StageCall) -> None:
        """A stage call finished (after any retries) and its rows were counted."""

    def call_failed(self, run: RunInfo, stage: Stage, attempt: int, error: BaseException) -> None:
        """A FaaS call of ``stage``, its ``attempt``-th try, raised ``error`` (each one)."""

    def retried(self, run: RunInfo, stage: Stage, attempt: int, error: BaseException) -> None:
        """A stage call failed with ``error`` and is tried again as ``attempt``."""

    def run_done(self, run: RunInfo, result: RunResult | None, error: BaseException | None) -> None:
        """The run ended: with ``result``, or with ``error`` (then ``result`` is None)."""

    def batch_done(self, flow: str, batch: int, result: RunResult) -> None:
        """A stream yielded the result of its batch number ``batch`` (from 1)."""

    def stream_committed(self, flow: str, status: StreamStatus) -> None:
        """A stream committed a batch (its effects, then its position and state)."""


def add(observer: Observer) -> None:
    """Observe every run of this process from now on (added once, however often given)."""
    with _state.lock:
        if not any(o is observer for o in _state.observers):
            _state.observers = (*_state.observers, observer)


def remove(observer: Observer) -> None:
    """Stop observing runs with ``observer`` (nothing happens if it was not added)."""
    with _state.lock:
        _state.observers = tuple(o for o in _state.observers if o is not observer)


def active() -> tuple[Observer, ...]:
    """The process-wide observers, in the order they were added.

    Followed by kisflow's debug-mode log (``kisflow.runlog``) while loguru would emit
    kisflow's DEBUG records: the engine asks once per run and once per stream batch.
    """
    debug = _state.debug_observers()
    return _state.observers + debug if debug else _state.observers


@contextlib.contextmanager
def observing(observer: Observer) -> Iterator[Observer]:
    """Observe every run inside the ``with`` block."""
    add(observer)
    try:
        yield observer
    finally:
        remove(observer)


def notify(observers: tuple[Observer, ...], event: str, *args: object) -> None:
    """Call ``event`` on each observer; an observer's error is logged and swallowed."""
    for observer in observers:
        try:
            getattr(observer, event)(*args)
        except Exception as exc:  # an observer never fails a run
            observer_failed(observer, event, exc)


def observer_failed(observer: Observer, event: str, exc: Exception) -> None:
    """Log an observer's error in ``event``; the run goes on."""
    logger.opt(exception=exc).warning(
        "observer {!r} failed in {}: {}: {}", observer, event, type(exc).__name__, exc
    )
