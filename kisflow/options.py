"""``RunOptions``: everything a caller may set for one run, as one value.

``flow.run``, ``flow.arun``, ``flow.stream``, ``flow.astream``, both ``run_partitions``
and the command line take the same ``RunOptions``; the keyword arguments they also take
(``ctx=``, ``max_steps=``, ``dead_letters=``) are shorthands that override its fields.
A new per-run option is one field here plus the code that reads it.
"""

from __future__ import annotations

from typing import Any

import attrs

from kisflow.deadletter import DeadLetterSink, as_sink
from kisflow.errors import ConfigError
from kisflow.observers import Observer

__all__ = ["DEFAULT", "RunOptions", "merge"]


def _sink(value: Any) -> DeadLetterSink | None:
    return None if value is None else as_sink(value)


def _observers(value: Any) -> tuple[Observer, ...]:
    if isinstance(value, Observer):
        return (value,)
    try:
        items = tuple(value)
    except TypeError:
        raise ConfigError(
            f"observers must be an Observer or a sequence of them, got {type(value).__name__}",
            key="observers",
        ) from None
    return items


def _max_steps(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"max_steps must be an int, got {type(value).__name__} {value!r}", key="max_steps"
        )
    return value


@attrs.frozen(kw_only=True)
class RunOptions:
    """Per-run settings; every field has a default, so ``RunOptions()`` changes nothing."""

    ctx: Any = None
    """Passed as the first argument to every FaaS that takes a context."""
    max_steps: int | None = attrs.field(default=None, converter=_max_steps)
    """Stage calls allowed before ``FlowLoopError`` (None: the flow's own limit)."""
    dead_letters: DeadLetterSink | None = attrs.field(default=None, converter=_sink)
    """A sink for rows that fail conversion or are rejected (a list, a JSONL path, a
    callable or a sink); stages with their own sink keep it."""
    observers: tuple[Observer, ...] = attrs.field(default=(), converter=_observers)
    """Observers of this run only, after the process-wide ones."""

    def replace(self, **changes: Any) -> RunOptions:
        """A copy with ``changes`` applied."""
        return attrs.evolve(self, **changes)


DEFAULT = RunOptions()
"""The options of a run given none."""


def merge(
    options: RunOptions | None,
    *,
    ctx: Any = None,
    max_steps: int | None = None,
    dead_letters: Any = None,
) -> RunOptions:
    """``options`` (or the defaults) with the keyword shorthands that are not None applied.

    Raises:
        ConfigError: ``options`` is not a ``RunOptions``, or a value is unusable.
    """
    if options is None:
        if ctx is None and max_steps is None and dead_letters is None:
            return DEFAULT
        options = DEFAULT
    elif not isinstance(options, RunOptions):
        raise ConfigError(
            f"options must be a kisflow.RunOptions, got {type(options).__name__}", key="options"
        )
    changes: dict[str, Any] = {}
    if ctx is not None:
        changes["ctx"] = ctx
    if max_steps is not None:
        changes["max_steps"] = max_steps
    if dead_letters is not None:
        changes["dead_letters"] = dead_letters
    return attrs.evolve(options, **changes) if changes else options
