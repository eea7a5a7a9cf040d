"""Dead letters: rows a stage cannot take, kept with their error instead of failing the run.

A row becomes a dead letter when it cannot be converted to a stage's declared row type,
or when a FaaS rejects it with ``flow.dead_letter(row, reason)`` (a Verify stage's
validation). Where a sink is configured the row goes there, is counted, and the run goes
on; without a sink the same row is an error (``RowConversionError``/``RowRejectedError``),
never a silent drop.

A sink is anything with a ``put(letter)`` method, and ``as_sink`` also accepts:

- a ``list``: letters are appended (``ListSink``);
- a path (``str`` or ``os.PathLike``): one JSON object per line (``JsonlSink``);
- any callable taking one ``DeadLetter`` (``CallableSink``), e.g. a function that hands
  the letter to a connector.

Where a sink is configured, per stage (the first that is set wins):

1. the stage's own sink: ``flow.set_dead_letters(sink, stage="Name")`` or
   ``FlowBuilder.dead_letters(sink, stage="Name")``;
2. the run's sink: ``flow.run(rows, dead_letters=sink)``;
3. the flow's default sink: ``flow.set_dead_letters(sink)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from kisflow.errors import ConfigError
from kisflow.rows import safe_repr

if TYPE_CHECKING:
    from kisflow.stage import Stage

__all__ = [
    "CallableSink",
    "DeadLetter",
    "DeadLetterSink",
    "JsonlSink",
    "ListSink",
    "as_sink",
    "sinks_for",
]

ROW_TEXT_LIMIT = 10_000
"""Characters of ``safe_repr`` kept for a row that JSON cannot hold (``DeadLetter.to_json``)."""


def _shown(row: Any) -> str:
    return safe_repr(row, 200)


@attrs.frozen
class DeadLetter:
    """One row a stage could not take: where, why, and the row itself."""

    flow: str
    stage: str
    """The function name of the stage."""
    stage_id: str
    row_index: int
    """Index of the row in the stage's input batch."""
    row: Any = attrs.field(repr=_shown)
    """The row as the stage got it, whole; ``repr(letter)`` shows it through ``safe_repr``."""
    reason: str
    """``"conversion"`` (the row does not fit the stage's row type) or ``"rejected"``
    (the FaaS called ``flow.dead_letter``)."""
    error: str
    """The error message."""
    error_type: str
    """The class name of the underlying error (e.g. ``TypeError``, ``JSONDecodeError``)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict; a row that JSON cannot hold is given as its ``safe_repr``.

        Records are given as dicts of their fields. A row JSON cannot hold (bytes, an
        object, an int past 4,300 digits, nesting past the recursion limit, NaN) becomes
        ``safe_repr(row)`` of at most ``ROW_TEXT_LIMIT`` characters: never an error.
        """
        return {
            "flow": self.flow,
            "stage": self.stage,
            "stage_id": self.stage_id,
            "row_index": self.row_index,
            "row": _json_safe(self.row),
            "reason": self.reason,
            "error": self.error,
            "error_type": self.error_type,
        }


def _json_safe(row: Any) -> Any:
    try:
        plain = row
        if attrs.has(type(row)):
            plain = attrs.asdict(row)
        elif dataclasses.is_dataclass(row) and not isinstance(row, type):
            plain = dataclasses.asdict(row)
        json.dumps(plain, allow_nan=False)
    except Exception:  # TypeError, ValueError (NaN, a huge int), RecursionError, ...
        return safe_repr(row, ROW_TEXT_LIMIT, depth=32)
    return plain


@runtime_checkable
class DeadLetterSink(Protocol):
    """Where dead letters go: ``put`` is called once per letter, from the run's thread."""

    def put(self, letter: DeadLetter) -> None:
        """Store one letter; raising makes the run fail with ``DeadLetterError``."""


class ListSink:
    """Appends letters to a list (``letters``); thread-safe through ``list.append``."""

    def __init__(self, letters: list[Any] | None = None) -> None:
        self.letters: list[Any] = letters if letters is not None else []

    def put(self, letter: DeadLetter) -> None:
        """Append the letter."""
        self.letters.append(letter)

    def __repr__(self) -> str:
        return f"ListSink({len(self.letters)} letters)"


class JsonlSink:
    """Appends letters to a file, one JSON object per line (opened per write, locked)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def put(self, letter: DeadLetter) -> None:
        """Write the letter as one line of JSON (UTF-8; ``\\u`` escapes for what UTF-8
        cannot hold, such as a lone surrogate)."""
        record = letter.to_json()
        try:
            data = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode()
        except UnicodeEncodeError:
            data = (json.dumps(record, allow_nan=False) + "\n").encode()
        with self._lock, self.path.open("ab") as fh:
            fh.write(data)

    def read(self) -> list[dict[str, Any]]:
        """The letters written so far, as dicts (empty when the file does not exist)."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r})"


class CallableSink:
    """Calls a function with each letter (e.g. to write it through a connector)."""

    def __init__(self, fn: Callable[[DeadLetter], Any]) -> None:
        self.fn = fn

    def put(self, letter: DeadLetter) -> None:
        """Call the function with the letter."""
        self.fn(letter)

    def __repr__(self) -> str:
        return f"CallableSink({getattr(self.fn, '__qualname__', self.fn)!r})"


def as_sink(target: Any) -> DeadLetterSink:
    """Turn a list, a path, a callable or a sink into a ``DeadLetterSink``.

    Raises:
        ConfigError: ``target`` is none of these.
    """
    if isinstance(target, DeadLetterSink):
        return target
    if isinstance(target, list):
        return ListSink(target)
    if isinstance(target, str | os.PathLike):
        return JsonlSink(target)
    if callable(target):
        return CallableSink(target)
    raise ConfigError(
        f"a dead-letter sink must be a list, a file path, a callable or an object with "
        f"put(letter), got {type(target).__name__} {target!r}",
        key="dead_letters",
    )


def sinks_for(
    stages: Sequence[Stage],
    configured: Mapping[str | None, DeadLetterSink],
    run_sink: DeadLetterSink | None,
) -> tuple[DeadLetterSink | None, ...] | None:
    """Each stage's sink: its own (by id, then name), else the run's, else the flow's.

    None when no stage has one, so a run without dead letters carries no table.
    """
    if not configured and run_sink is None:
        return None
    default = run_sink if run_sink is not None else configured.get(None)
    return tuple(configured.get(s.id) or configured.get(s.name) or default for s in stages)
