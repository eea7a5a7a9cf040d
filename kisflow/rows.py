"""Row conversion: JSON strings, dicts and record instances to a stage's declared row type.

A stage that declares ``rows: list[T]`` gets each input row as a ``T``. Instances of
``T`` pass through untouched; JSON strings are parsed; mappings are structured with
cattrs; other records (attrs classes, dataclasses) are unstructured and structured again
(KisFlow's "dump to JSON and parse back"). Scalar fields are checked strictly (a float
is never truncated into an int field), and non-record types are checked with typeguard.
A row that cannot be converted is reported with its index, never replaced by a zero
value. For a record type whose fields are plain scalars, a batch conversion is generated
once per type (``RowType.batch``): a dict row whose values already have their fields'
types is built as ``T(row["a"], ...)``, as fast as hand-written code; any other row takes
the full path, so results and errors are the same.

A record type may own its decoding, as KisFlow's per-type serializer does: a classmethod
``__kisflow_decode__(cls, raw)`` receives each str/bytes row before any JSON parsing, and
``__kisflow_ignore_case__ = True`` matches mapping keys to fields ignoring case (Go's
``encoding/json``). Both are read once per row type, when its ``RowType`` is built (and
when cattrs first builds the type's hook), never per row.

Messages show rows through ``safe_repr``: bounded in size and depth, and never raising,
whatever the row (an int too long to print, 10,000-deep nesting, a ``__repr__`` that
raises).
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import inspect
import json
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import cattrs
import cattrs.cols
import typeguard

from kisflow.errors import KisFlowError

__all__ = [
    "DECODE_HOOK",
    "IGNORE_CASE",
    "RowConversionFailure",
    "RowType",
    "describe_type",
    "is_record_type",
    "is_supported_row_type",
    "row_type_problem",
    "safe_repr",
    "safe_str",
    "type_fits",
]

_SCALARS: tuple[type, ...] = (int, float, str, bool)
_JSON_TEXT = (str, bytes, bytearray)


def is_record_type(tp: Any) -> bool:
    """Whether ``tp`` is a class with named fields that cattrs can structure."""
    return isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp))


def _is_dict_type(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def is_supported_row_type(tp: Any) -> bool:
    """Whether kisflow can convert rows to ``tp``.

    Supported: ``Any``/``object`` (no conversion), attrs classes and dataclasses, ``dict``
    and ``Mapping`` (optionally parameterised), and the JSON scalars int, float, str, bool.
    """
    return (
        tp is Any
        or tp is object
        or is_record_type(tp)
        or _is_dict_type(tp)
        or (isinstance(tp, type) and tp in _SCALARS)
    )


def describe_type(tp: Any) -> str:
    """A short readable name for a row type (``ScoreIn``, ``dict[str, int]``, ``Any``)."""
    if tp is Any:
        return "Any"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return repr(tp).replace("typing.", "")


def _record_fields(tp: type) -> dict[str, tuple[Any, bool]]:
    """Field name -> (type, required) for an attrs class or dataclass."""
    hints = typing.get_type_hints(tp)
    if attrs.has(tp):
        return {
            f.name: (hints.get(f.name, Any), f.default is attrs.NOTHING)
            for f in attrs.fields(tp)
            if f.init
        }
    return {
        f.name: (
            hints.get(f.name, Any),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(tp)
        if f.init
    }


def type_fits(produced: Any, consumed: Any) -> bool:
    """Whether rows of type ``produced`` can feed a stage that takes ``consumed``.

    True when the consumer takes anything, when ``produced`` is (a subclass of)
    ``consumed``, when a record goes to a dict-taking stage, when dicts go to a record
    stage (their keys are checked row by row at run time), or when two record types
    match structurally: every required field of the consumer exists in the producer with
    a compatible type (the JSON round trip KisFlow itself does). Raw rows (str, bytes)
    fit a record type that decodes them itself (``__kisflow_decode__``).
    """
    if consumed is Any or consumed is object or produced is consumed or produced is Any:
        return True
    if _is_union(produced):
        return all(type_fits(p, consumed) for p in typing.get_args(produced))
    if _is_union(consumed):
        return any(type_fits(produced, c) for c in typing.get_args(consumed))
    if produced is bool:
        # rows are converted strictly: a bool is never accepted as an int or a float
        return consumed is bool
    if isinstance(produced, type) and isinstance(consumed, type) and issubclass(produced, consumed):
        return True
    if _is_dict_type(consumed):
        return _fits_dict(produced, consumed)
    if _is_dict_type(produced) and is_record_type(consumed):
        return True  # a mapping's keys are unknown until run time: conversion checks them
    if is_record_type(produced) and is_record_type(consumed):
        have = _record_fields(produced)
        for name, (want_type, required) in _record_fields(consumed).items():
            if name not in have:
                if required:
                    return False
                continue
            got_type = have[name][0]
            if not (
                got_type == want_type
                or type_fits(got_type, want_type)
                or _numeric(got_type, want_type)
            ):
                return False
        return True
    if produced in _JSON_TEXT and _decode_hook(consumed) is not None:
        return True  # the consumer decodes raw rows itself
    return _numeric(produced, consumed)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _fits_dict(produced: Any, consumed: Any) -> bool:
    """A record or dict feeding a ``dict[K, V]`` stage: every value must fit ``V``."""
    if not (is_record_type(produced) or _is_dict_type(produced)):
        return False
    args = typing.get_args(consumed)
    if len(args) != 2:
        return True
    key, value = args
    if is_record_type(produced):
        return type_fits(str, key) and all(
            type_fits(t, value) for t, _ in _record_fields(produced).values()
        )
    produced_args = typing.get_args(produced)
    if len(produced_args) != 2:
        return True  # a bare dict: its values are checked row by row at run time
    return type_fits(produced_args[0], key) and type_fits(produced_args[1], value)


def _numeric(produced: Any, consumed: Any) -> bool:
    return produced is int and consumed is float


# -- safe rendering of rows for messages ------------------------------------------------

_INT_BITS = 14_000
"""Ints longer than this (about 4,200 digits, under Python's 4,300-digit limit on
int-to-str conversion) are described instead of printed."""


class _Full(Exception):
    """The rendering reached its limit: what was written so far is enough."""


class _Render:
    """``repr`` of a value, written piece by piece until ``limit`` characters.

    Builtin containers (and subclasses that keep their ``__repr__``) are walked here, so
    their nesting is bounded by ``depth`` and their size by ``limit``; other objects use
    their own ``repr``, cut to what is left.
    """

    __slots__ = ("active", "left", "parts")

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.left = limit + 1  # one character past the limit tells the caller to cut
        self.active: set[int] = set()  # containers being written: a cycle shows as [...]

    def emit(self, text: str) -> None:
        if len(text) >= self.left:
            self.parts.append(text[: self.left])
            raise _Full
        self.parts.append(text)
        self.left -= len(text)

    def value(self, x: Any, depth: int) -> None:
        shown: Any = type(x).__repr__  # the slot, so subclasses that keep it render alike
        if shown is str.__repr__:
            self.emit(repr(x[: self.left]))
        elif shown is int.__repr__:
            self.emit(_int_text(x))
        elif shown is dict.__repr__:
            self.container(x, depth, "{", "}", items=True)
        elif shown is list.__repr__:
            self.container(x, depth, "[", "]")
        elif shown is tuple.__repr__:
            self.container(x, depth, "(", ",)" if len(x) == 1 else ")")
        elif shown is set.__repr__ or shown is frozenset.__repr__:
            name = type(x).__name__
            if not x:
                self.emit(f"{name}()")
            elif type(x) is set:
                self.container(x, depth, "{", "}")
            else:
                self.container(x, depth, f"{name}({{", "})")
        elif shown is bytes.__repr__ or shown is bytearray.__repr__:
            self.emit(repr(x[: self.left]))
        else:
            self.other(x, depth)

    def container(self, x: Any, depth: int, start: str, end: str, *, items: bool = False) -> None:
        key = id(x)
        if (depth <= 0 and x) or key in self.active:
            self.emit(f"{start}...{end}")
            return
        self.active.add(key)
        self.emit(start)
        first = True
        for item in x.items() if items else x:
            if not first:
                self.emit(", ")
            first = False
            if items:
                self.value(item[0], depth - 1)
                self.emit(": ")
                self.value(item[1], depth - 1)
            else:
                self.value(item, depth - 1)
        self.emit(end)
        self.active.discard(key)

    def other(self, x: Any, depth: int) -> None:
        try:
            text = repr(x)
        except Exception as exc:  # a __repr__ that raises, a record holding a huge int
            if is_record_type(type(x)) and depth > 0:
                self.fields(x, depth)
            else:
                self.emit(f"<{_type_name(x)} object: repr raised {type(exc).__name__}>")
            return
        self.emit(text[: self.left])

    def fields(self, x: Any, depth: int) -> None:
        """A record whose ``repr`` failed, field by field: ``Name(a=1, b=...)``."""
        tp = type(x)
        if attrs.has(tp):
            names = [f.name for f in attrs.fields(tp) if f.repr is not False]
        else:
            names = [f.name for f in dataclasses.fields(x) if f.repr]
        self.emit(f"{_type_name(x)}(")
        for i, name in enumerate(names):
            self.emit(f"{', ' if i else ''}{name}=")
            self.value(getattr(x, name, None), depth - 1)
        self.emit(")")


def _int_text(x: int) -> str:
    if x.bit_length() > _INT_BITS:
        return f"<int of about {int(x.bit_length() * 0.30103) + 1} digits>"
    try:
        return repr(x)
    except ValueError:  # sys.set_int_max_str_digits() set lower than _INT_BITS
        return f"<int of about {int(x.bit_length() * 0.30103) + 1} digits>"


def _type_name(x: Any) -> str:
    """The class's qualified name without its ``<locals>`` path, as attrs prints it."""
    try:
        return str(type(x).__qualname__).rsplit(">.", 1)[-1]
    except Exception:  # pragma: no cover - a metaclass that hides __qualname__
        return "object"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_repr(value: Any, limit: int = 120, depth: int = 8) -> str:
    """``repr(value)`` for a message: at most ``limit`` characters, and never raising.

    A row that prints normally prints as ``repr`` prints it (cut to ``limit``, ending in
    ``...``). What ``repr`` cannot print is shown anyway: containers nested deeper than
    ``depth`` as ``[...]``, an int too long to print as ``<int of about N digits>``, an
    object whose ``repr`` raises as ``<Type object: repr raised Error>`` (a record field
    by field). The work done is bounded by ``limit``, not by the row's size.
    """
    try:
        if limit < 8:
            limit = 8
        out = _Render(limit)
        with contextlib.suppress(_Full):
            out.value(value, depth)
        text = "".join(out.parts)
        return text if len(text) <= limit else text[: limit - 3] + "..."
    except Exception as exc:  # e.g. RecursionError when called near the recursion limit
        # Even a comparison counts against the recursion limit: with no stack left, this
        # fallback must still return, so it calls as little as it can.
        try:
            text = f"<{type(value).__name__} object: repr raised {type(exc).__name__}>"
        except Exception:
            text = "<unprintable>"
        return text[:limit]


def safe_str(value: Any, limit: int = 500) -> str:
    """``str(value)`` for a message (an exception's text), at most ``limit`` characters.

    Never raises: an object whose ``str`` raises (``ValueError(10**5000)``) is shown as
    ``safe_repr`` of its arguments, or by its type.
    """
    limit = max(limit, 8)
    if type(value) is str:
        return _cut(value, limit)
    try:
        text = str(value)
    except Exception as exc:
        if isinstance(value, BaseException) and value.args:
            args = value.args[0] if len(value.args) == 1 else value.args
            return safe_repr(args, limit)
        return _cut(f"<{_type_name(value)} object: str raised {type(exc).__name__}>", limit)
    return _cut(text, limit)


# -- strict scalar hooks: never truncate, never stringify ---------------------------


def _structure_int(value: Any, _: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise TypeError(f"expected an int, got {type(value).__name__} {safe_repr(value)}")


def _structure_float(value: Any, _: Any) -> float:
    if type(value) is float:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected a float, got {type(value).__name__} {safe_repr(value)}")


def _structure_str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a str, got {type(value).__name__} {safe_repr(value)}")


def _structure_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected a bool, got {type(value).__name__} {safe_repr(value)}")


def _not_text(tp: Any, hook: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Wrap a collection hook so a string or a mapping is refused, not split into items."""

    def structure(value: Any, target: Any) -> Any:
        if isinstance(value, (*_JSON_TEXT, collections.abc.Mapping)):
            raise TypeError(
                f"expected a list for {describe_type(tp)}, "
                f"got {type(value).__name__} {safe_repr(value)}"
            )
        return hook(value, target)

    return structure


def _sequence_hook(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    origin = typing.get_origin(tp) or tp
    if origin is tuple:
        return _not_text(tp, cattrs.cols.homogenous_tuple_structure_factory(tp, conv))
    return _not_text(tp, cattrs.cols.list_structure_factory(tp, conv))


def _set_hook(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    args = typing.get_args(tp)
    item = args[0] if args else Any
    origin = typing.get_origin(tp) or tp
    build = frozenset if origin is frozenset else set

    def structure(value: Any, _: Any) -> Any:
        return build(conv.structure(v, item) for v in value)

    return _not_text(tp, structure)


# -- a row type's own decoding ---------------------------------------------------------

DECODE_HOOK = "__kisflow_decode__"
"""A record type's classmethod ``(cls, raw)``: turns a raw str/bytes row into a row."""

IGNORE_CASE = "__kisflow_ignore_case__"
"""A record type's class attribute: ``True`` matches mapping keys to fields ignoring case."""


def _decode_hook(tp: Any) -> Callable[[Any], Any] | None:
    """``tp.__kisflow_decode__`` (bound to ``tp``), or None; read once per row type."""
    if not is_record_type(tp):
        return None
    hook: Callable[[Any], Any] | None = getattr(tp, DECODE_HOOK, None)
    return hook


def _ignores_case(tp: Any) -> bool:
    return is_record_type(tp) and getattr(tp, IGNORE_CASE, False) is True


def row_type_problem(tp: Any) -> str | None:
    """What is wrong with a record type's decoding hooks, or None (also without hooks).

    ``__kisflow_decode__`` must be callable with one argument, the raw row (a classmethod
    ``(cls, raw)`` or a staticmethod ``(raw)``); ``__kisflow_ignore_case__`` must be a bool.
    """
    if not is_record_type(tp):
        return None
    name = describe_type(tp)
    hook = getattr(tp, DECODE_HOOK, None)
    if hook is not None:
        if not callable(hook):
            return (
                f"{name}.{DECODE_HOOK} must be a classmethod (cls, raw), got {type(hook).__name__}"
            )
        try:
            inspect.signature(hook).bind("raw")
        except TypeError:
            return (
                f"{name}.{DECODE_HOOK} must take one argument, the raw str or bytes row: "
                f"declare it '@classmethod def {DECODE_HOOK}(cls, raw)'"
            )
        except ValueError:  # no signature to read (a builtin): trust it
            pass
    flag = getattr(tp, IGNORE_CASE, False)
    if not isinstance(flag, bool):
        return f"{name}.{IGNORE_CASE} must be True or False, got {type(flag).__name__}"
    return None


def _own_decoding(tp: type, hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Decode a raw row with the type's hook; what it returns must be a row of ``tp``."""
    name = describe_type(tp)
    unstructure = converter.unstructure

    def decode(raw: Any) -> Any:
        row = hook(raw)
        if isinstance(row, tp | collections.abc.Mapping):
            return row
        if is_record_type(type(row)):
            return unstructure(row)
        raise TypeError(
            f"{name}.{DECODE_HOOK} returned {type(row).__name__}; it must return a {name} "
            f"or a mapping of its fields"
        )

    return decode


def _key_folder(tp: type) -> Callable[[Any], Any]:
    """Map a mapping's keys to ``tp``'s field names ignoring case (Go's ``encoding/json``).

    A key naming a field exactly is kept; another key is matched case-insensitively; keys
    naming no field are kept (and ignored, as any extra key is). When several keys land
    on one field, the last wins, as in Go.
    """
    names = list(_record_fields(tp))
    exact = frozenset(names)
    folded: dict[str, str] = {}
    for field in names:
        folded.setdefault(field.lower(), field)

    def fold(row: Any) -> Any:
        if not isinstance(row, collections.abc.Mapping) or exact.issuperset(row):
            return row
        out: dict[Any, Any] = {}
        for key, value in row.items():
            if key not in exact and isinstance(key, str):
                key = folded.get(key.lower(), key)
            out[key] = value
        return out

    return fold


def _ignore_case_hook(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """The structure hook of a record type that ignores key case: fold keys, then structure.

    Registered as a cattrs hook factory, so nested records that ignore case do too; cattrs
    builds it once per type.
    """
    fold = _key_folder(tp)
    structure = conv.gen_structure_attrs_fromdict(tp)

    def hook(row: Any, target: Any) -> Any:
        return structure(fold(row), target)

    return hook


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=False)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(bool, _structure_bool)
    # cattrs builds a list from any iterable, so "ab" would become ["a", "b"].
    conv.register_structure_hook_factory(cattrs.cols.is_sequence, _sequence_hook)
    conv.register_structure_hook_factory(cattrs.cols.is_any_set, _set_hook)
    conv.register_structure_hook_factory(_ignores_case, lambda tp: _ignore_case_hook(tp, conv))
    return conv


converter: cattrs.Converter = _make_converter()
"""The cattrs converter kisflow uses for rows; register hooks on it for custom types."""


class RowConversionFailure(KisFlowError, ValueError):
    """One row that could not be converted: its index, the row and the cause.

    The run turns it into a ``RowConversionError`` naming the flow and stage (or a dead
    letter); on its own it is what ``RowType.convert`` raises. ``reason`` is the cause's
    text, bounded; a row nested past Python's recursion limit has a ``ValueError`` cause
    saying so (chained to the ``RecursionError``), not the ``RecursionError`` itself.
    """

    def __init__(self, index: int, row: Any, cause: BaseException) -> None:
        if isinstance(cause, RecursionError):
            deep = ValueError("nested too deeply to convert (past Python's recursion limit)")
            deep.__cause__ = cause
            cause = deep
        self.index = index
        self.row = row
        self.cause = cause
        self.reason = safe_str(cause)
        super().__init__(index, row, cause)

    def __str__(self) -> str:
        return f"row {self.index} ({safe_repr(self.row)}): {self.reason}"

    def __repr__(self) -> str:
        return f"RowConversionFailure({self})"


def _from_json(row: Any) -> Any:
    try:
        return json.loads(row)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply to parse") from exc
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({safe_str(exc)})") from exc


_FAST_SCALARS = {int: _structure_int, float: _structure_float, str: _structure_str}
"""Field types a generated batch conversion checks inline, with the hook it stands for."""


def _batch_converter(
    tp: Any, one: Callable[[Any], Any]
) -> Callable[[Sequence[Any]], list[Any]] | None:
    """A conversion of a whole batch to ``tp``, generated once per row type, or None.

    For a record type whose fields are all ``int``, ``float``, ``str`` or ``Any`` and whose
    structuring is cattrs' own generated hook (no hook registered by the user, no key
    folding), a dict row that has every field, each value of its field's exact type, is
    built as ``tp(row["a"], row["b"], ...)``, as hand-written code would; every other row
    goes through ``one`` (the full conversion). It raises only where the full conversion
    fails too (a missing required key is a ``KeyError``); the caller then finds the row.
    """
    if not is_record_type(tp) or _ignores_case(tp):
        return None
    hook = converter.get_structure_hook(tp)
    code = getattr(hook, "__code__", None)
    if code is None or not code.co_filename.startswith("<cattrs generated"):
        return None
    try:
        required = {name: need for name, (_, need) in _record_fields(tp).items()}
        hints = typing.get_type_hints(tp)
    except Exception:  # e.g. a forward reference that does not resolve: the full path
        return None
    if attrs.has(tp):
        fields = [(f.name, f.alias or f.name, f.kw_only, f.init) for f in attrs.fields(tp)]
    else:
        fields = [(f.name, f.name, bool(f.kw_only), f.init) for f in dataclasses.fields(tp)]
    if not fields or not all(init for *_, init in fields):
        return None
    names: dict[str, Any] = {"_cls": tp, "_one": one, "_dict": dict}
    checks, args = ["type(r) is _dict"], []
    for i, (name, alias, kw_only, _) in enumerate(fields):
        field_type = hints.get(name, Any)
        if not name.isidentifier() or not alias.isidentifier():
            return None
        if not required[name]:  # a row without it takes the default: the full way
            checks.append(f"{name!r} in r")
        if field_type is Any:
            checks.append(f"((v{i} := r[{name!r}]) is v{i})")  # binds it; any value goes
        elif field_type in _FAST_SCALARS and (
            converter.get_structure_hook(field_type) is _FAST_SCALARS[field_type]
        ):
            names[f"_t{i}"] = field_type
            checks.append(f"type(v{i} := r[{name!r}]) is _t{i}")
        else:
            return None
        args.append(f"{alias}=v{i}" if kw_only else f"v{i}")
    source = (
        "def convert(rows):\n"
        f"    return [_cls({', '.join(args)}) if {' and '.join(checks)} "
        "else r if type(r) is _cls else _one(r) for r in rows]\n"
    )
    exec(compile(source, f"<kisflow row conversion {describe_type(tp)}>", "exec"), names)
    batch: Callable[[Sequence[Any]], list[Any]] = names["convert"]
    return batch


class RowType:
    """Converts rows to one declared type; built once per FaaS, at registration."""

    __slots__ = ("batch", "convert_one", "passthrough", "type")

    def __init__(self, tp: Any) -> None:
        self.type = tp
        self.passthrough = tp is Any or tp is object
        self.convert_one: Callable[[Any], Any] = self._build(tp)
        self.batch = None if self.passthrough else _batch_converter(tp, self.convert_one)

    def _build(self, tp: Any) -> Callable[[Any], Any]:
        if self.passthrough:
            return lambda row: row
        if is_record_type(tp):
            problem = row_type_problem(tp)
            if problem is not None:
                raise TypeError(problem)
            hook = converter.get_structure_hook(tp)
            unstructure = converter.unstructure
            own = _decode_hook(tp)
            decode = _from_json if own is None else _own_decoding(tp, own)

            def record(row: Any) -> Any:
                if isinstance(row, tp):
                    return row
                if isinstance(row, _JSON_TEXT):
                    row = decode(row)
                    if isinstance(row, tp):  # the type's own decoding made the row
                        return row
                elif not isinstance(row, collections.abc.Mapping):
                    row = unstructure(row)
                if not isinstance(row, collections.abc.Mapping):
                    raise TypeError(
                        f"expected a mapping, a JSON object or a record for "
                        f"{describe_type(tp)}, got {type(row).__name__}"
                    )
                try:
                    return hook(row, tp)
                except KeyError as exc:
                    # cattrs without detailed validation reports a missing key as KeyError
                    raise TypeError(
                        f"missing required field {exc.args[0]!r} for {describe_type(tp)}"
                    ) from exc

            return record
        if _is_dict_type(tp):
            generic = bool(typing.get_args(tp))

            def mapping(row: Any) -> Any:
                if isinstance(row, _JSON_TEXT):
                    row = _from_json(row)
                elif is_record_type(type(row)):
                    row = converter.unstructure(row)
                elif isinstance(row, collections.abc.Mapping) and not isinstance(row, dict):
                    row = dict(row)  # e.g. a MappingProxyType: the stage asked for a dict
                if not isinstance(row, dict):
                    raise TypeError(f"expected a JSON object or a dict, got {type(row).__name__}")
                if generic:
                    typeguard.check_type(
                        row,
                        tp,
                        collection_check_strategy=typeguard.CollectionCheckStrategy.ALL_ITEMS,
                    )
                return row

            return mapping

        def scalar(row: Any) -> Any:
            if tp is not str and isinstance(row, _JSON_TEXT):
                row = _from_json(row)
            if tp is float and type(row) is int:
                return float(row)
            if tp is not bool and isinstance(row, bool):
                raise TypeError(f"expected {describe_type(tp)}, got bool {row!r}")
            typeguard.check_type(row, tp)
            return row

        return scalar

    def convert(self, rows: Sequence[Any]) -> list[Any]:
        """Convert a batch; raise ``RowConversionFailure`` for the first bad row.

        The common case (every row converts) runs as one list comprehension; the index of
        a bad row is found by a second, row-by-row pass only when something failed.
        """
        if self.passthrough:
            return rows if isinstance(rows, list) else list(rows)
        tp = self.type
        one = self.convert_one
        try:
            if self.batch is not None:
                # It raises only where the full conversion fails too (a missing required
                # key, a row the full path refuses): find that row below.
                return self.batch(rows)
            return [row if type(row) is tp else one(row) for row in rows]
        except Exception:
            pass
        for index, row in enumerate(rows):
            try:
                if type(row) is not tp:
                    one(row)
            except Exception as exc:
                raise RowConversionFailure(index, row, exc) from exc
        raise AssertionError("unreachable: a row failed, then converted")  # pragma: no cover

    def convert_each(self, rows: Sequence[Any]) -> tuple[list[Any], list[RowConversionFailure]]:
        """Convert row by row, returning the converted rows and every failure."""
        good: list[Any] = []
        bad: list[RowConversionFailure] = []
        tp = self.type
        one = self.convert_one
        for index, row in enumerate(rows):
            if self.passthrough or type(row) is tp:
                good.append(row)
                continue
            try:
                good.append(one(row))
            except Exception as exc:
                bad.append(RowConversionFailure(index, row, exc))
        return good, bad
