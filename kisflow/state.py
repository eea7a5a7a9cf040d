"""Stage state: ``flow.state()``, a stage's keyed mapping, and how state is saved.

Every flow definition has one ``StateStore``; each stage's state in it is keyed by the
stage's position and name (``"2:CountClicks"``), never by generated ids, so a restarted
process finds it again. A stage call that touches its state holds that state's lock until
the call returns: concurrent runs of one flow apply their state changes as if their
stage calls ran one after another. A stream with a checkpoint saves ``snapshot()`` in the
same commit as the batch's position and Saves, and ``restore``s it when it resumes.

Values are saved as JSON: JSON values as they are, tuples, attrs and dataclass instances
and mappings with keys that are not strings in a tagged form that ``decode`` turns back
into the same objects.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Protocol

import attrs

from kisflow.errors import KisFlowError

__all__ = [
    "KeyedState",
    "Snapshotable",
    "StateStore",
    "StateValueError",
    "decode",
    "encode",
    "stage_key",
]


def stage_key(position: int, name: str) -> str:
    """The name a stage's state is saved under: its position in the chain and its name."""
    return f"{position}:{name}"


class StateValueError(KisFlowError, TypeError):
    """A state value (or a row held in an open window) cannot be saved as JSON."""


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _load_class(path: str) -> type:
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise TypeError(f"{path} is not a class")
    return obj


def encode(value: Any) -> Any:
    """``value`` as JSON data: tagged where plain JSON would lose its type.

    Raises:
        TypeError: the value (or something in it) is not JSON data, a tuple, a mapping,
            a list, an attrs or a dataclass instance.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"$f": repr(value)}
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$t": [encode(v) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"$d": [[encode(k), encode(v)] for k, v in value.items()]}
    cls = type(value)
    if attrs.has(cls):
        fields = {f.name: encode(getattr(value, f.name)) for f in attrs.fields(cls)}
        return {"$a": _class_path(cls), "v": fields}
    if dataclasses.is_dataclass(value):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$a": _class_path(cls), "v": fields}
    raise TypeError(f"a {cls.__name__} cannot be saved (JSON values, attrs or dataclasses)")


def decode(data: Any) -> Any:
    """The value ``encode`` made ``data`` of."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "$t" in data:
        return tuple(decode(v) for v in data["$t"])
    if "$d" in data:
        return {_hashable(decode(k)): decode(v) for k, v in data["$d"]}
    if "$f" in data:
        return float(data["$f"])
    if "$a" in data:
        cls = _load_class(data["$a"])
        fields = {k: decode(v) for k, v in data["v"].items()}
        if attrs.has(cls):
            init = {f.name: f for f in attrs.fields(cls)}
            return cls(**{(f.alias or n): fields[n] for n, f in init.items() if f.init})
        return cls(**fields)
    return {k: decode(v) for k, v in data.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


class Snapshotable(Protocol):
    """A piece of saved state: a stage's keyed state or its open windows."""

    def snapshot(self) -> Any:
        """The state as JSON data."""

    def restore(self, data: Any) -> None:
        """Replace the state by what ``snapshot`` returned."""


class KeyedState(MutableMapping[Any, Any]):
    """One stage's keyed state: a mapping from key to a value that can be saved.

    ``flow.state()`` returns it while the stage call holds its ``lock``.
    """

    __slots__ = ("_data", "lock", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        """The stage's state key (``stage_key``)."""
        self._data: dict[Any, Any] = {}
        self.lock = threading.Lock()
        """Held by the stage call using the state (``flow.state()`` takes it)."""

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._data[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        return self._data.get(key, default)

    def __repr__(self) -> str:
        return f"KeyedState({self.name!r}, {len(self._data)} keys)"

    def snapshot(self) -> Any:
        """Every key and value as JSON data (a list of ``[key, value]`` pairs).

        Raises:
            StateValueError: a key or value cannot be saved (naming the stage and key).
        """
        out = []
        for key, value in self._data.items():
            try:
                out.append([encode(key), encode(value)])
            except TypeError as exc:
                raise StateValueError(
                    f"state of stage {self.name!r}: key {key!r} cannot be saved: {exc}"
                ) from exc
        return out

    def restore(self, data: Any) -> None:
        """Replace the state by a ``snapshot``."""
        self._data = {_hashable(decode(k)): decode(v) for k, v in data}


class StateStore:
    """All saved state of one flow definition, by stage key (thread-safe)."""

    __slots__ = ("_lock", "_parts", "_restored")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[str, Snapshotable] = {}
        self._restored: dict[str, Any] = {}
        """Saved data of parts not asked for yet (restored before the stage ran)."""

    def part(self, key: str, make: Callable[[str], Snapshotable]) -> Any:
        """The state part ``key`` (made by ``make(key)`` on first use, from saved data
        when a checkpoint restored some)."""
        part = self._parts.get(key)
        if part is not None:
            return part
        with self._lock:
            part = self._parts.get(key)
            if part is None:
                part = make(key)
                saved = self._restored.pop(key, None)
                if saved is not None:
                    part.restore(saved)
                self._parts[key] = part
        return part

    def __bool__(self) -> bool:
        """Whether any stage keeps state (a stateless flow's commits save none)."""
        return bool(self._parts or self._restored)

    def keyed(self, key: str) -> KeyedState:
        """The keyed state of the stage ``key``."""
        part: KeyedState = self.part(key, KeyedState)
        return part

    def snapshot(self) -> dict[str, Any]:
        """Every part's state as JSON data, by stage key (parts restored and not yet used
        are kept as they were)."""
        with self._lock:
            parts = dict(self._parts)
            out: dict[str, Any] = dict(self._restored)
        for key, part in parts.items():
            lock = getattr(part, "lock", None)
            if lock is None:
                out[key] = part.snapshot()
                continue
            with lock:
                out[key] = part.snapshot()
        return out

    def restore(self, data: dict[str, Any]) -> None:
        """Replace every part by saved data (a stream resuming from its checkpoint)."""
        with self._lock:
            self._restored = dict(data)
            parts = self._parts
            for key in list(parts):
                saved = self._restored.pop(key, None)
                if saved is None:
                    del parts[key]
                else:
                    parts[key].restore(saved)

    def clear(self) -> None:
        """Forget every stage's state."""
        with self._lock:
            self._parts = {}
            self._restored = {}
