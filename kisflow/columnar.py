"""Columnar stages: a FaaS that takes its rows as a Polars DataFrame (extra ``polars``).

A FaaS declares ``rows: pl.DataFrame`` (or ``Annotated[pl.DataFrame, Columns(...)]`` to
declare the columns it needs) and commits a DataFrame with ``flow.commit_row_batch``.
The run converts a layer of rows to a DataFrame once, on entry to the first columnar
stage (``FrameRows.convert``); a DataFrame committed by one stage is handed as it is to
the next columnar stage (and to a Save or Load on a built-in store); a row stage gets it
back as rows (``rows_of``: dicts, then its declared row type). ``result.output`` is the
DataFrame when the last stage committed one. A columnar Verify rejects rows by passing
a DataFrame to ``flow.dead_letter``: each of its rows is one dead letter, its reason the
``REASON`` column when the frame has one (docs/columnar.md).

Polars is imported only where a DataFrame is made or read, never by importing kisflow:
``is_frame`` asks ``sys.modules`` whether polars was imported at all.
"""

from __future__ import annotations

import collections.abc
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from kisflow.errors import CommitError, MissingExtraError
from kisflow.rows import (
    RowConversionFailure,
    _record_fields,
    converter,
    is_record_type,
    safe_repr,
)

__all__ = [
    "REASON",
    "Columns",
    "FileSlice",
    "Frame",
    "FrameRows",
    "as_rows",
    "file_slices",
    "fits",
    "frame_of",
    "is_frame",
    "is_frame_type",
    "load_slice",
    "merge_commit",
    "polars",
    "row_after_frame",
    "rows_of",
]

REASON = "dead_letter_reason"
"""The column of a rejected DataFrame (``flow.dead_letter(frame)``) that holds each row's
reason; the column is not stored with the row."""


def polars(needed_by: str = "a columnar stage") -> Any:
    """The polars module, or ``MissingExtraError`` naming ``kisflow[polars]``."""
    try:
        import polars as pl
    except ImportError as exc:
        raise MissingExtraError("polars", "polars", needed_by=needed_by) from exc
    return pl


def is_frame(value: Any) -> bool:
    """Whether ``value`` is a Polars DataFrame (False, importing nothing, without polars)."""
    pl = sys.modules.get("polars")
    return pl is not None and isinstance(value, pl.DataFrame)


def is_frame_type(tp: Any) -> bool:
    """Whether the annotation ``tp`` is ``polars.DataFrame``."""
    pl = sys.modules.get("polars")
    return pl is not None and tp is pl.DataFrame


# -- schemas ---------------------------------------------------------------------------


def _dtype_name(dtype: Any) -> str:
    return str(dtype)


@attrs.frozen(repr=False, init=False)
class Columns:
    """A DataFrame's declared columns (name and Polars dtype), for the build-time check.

    ``output=Columns(stu_id=pl.Int64, avg_score=pl.Float64)`` on a columnar FaaS says what
    it commits; ``rows: Annotated[pl.DataFrame, Columns(...)]`` what it needs (rows are
    converted to those columns and dtypes on entry). A ``pl.Schema`` or a mapping of
    column to dtype is accepted wherever a ``Columns`` is.
    """

    items: tuple[tuple[str, Any], ...]

    def __init__(self, columns: Mapping[str, Any] | None = None, /, **named: Any) -> None:
        merged = {**(dict(columns) if columns is not None else {}), **named}
        self.__attrs_init__(tuple(merged.items()))

    def schema(self) -> dict[str, Any]:
        """Column name -> Polars dtype, in order."""
        return dict(self.items)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}: {_dtype_name(dtype)}" for name, dtype in self.items)
        return f"Columns({inner})"


def as_columns(value: Any) -> Columns | None:
    """``value`` as ``Columns`` when it declares a DataFrame's columns, else None."""
    if isinstance(value, Columns):
        return value
    pl = sys.modules.get("polars")
    if pl is None:
        return None
    if isinstance(value, pl.Schema):
        return Columns(dict(value))
    if (
        isinstance(value, Mapping)
        and value
        and all(isinstance(k, str) and _is_dtype(pl, d) for k, d in value.items())
    ):
        return Columns(value)
    return None


def _is_dtype(pl: Any, dtype: Any) -> bool:
    """Whether ``dtype`` is a Polars dtype, as a class (``pl.Int64``) or an instance."""
    return isinstance(dtype, pl.DataType) or (
        isinstance(dtype, type) and issubclass(dtype, pl.DataType)
    )


@attrs.frozen(repr=False)
class Frame:
    """The rows type of a columnar stage: a DataFrame, with the columns it needs (or None)."""

    columns: Columns | None = None

    def __repr__(self) -> str:
        return "DataFrame" if self.columns is None else f"DataFrame[{self.columns!r}]"


# -- the build-time check --------------------------------------------------------------

_SCALAR_KINDS: dict[type, str] = {int: "int", float: "float", str: "str", bool: "bool"}


def _kind(dtype: Any) -> str | None:
    """``int``/``float``/``str``/``bool`` for a Polars dtype (class or instance), or None."""
    pl = sys.modules.get("polars")
    if pl is None:
        return None
    if dtype == pl.Boolean:
        return "bool"
    if dtype in (pl.String, pl.Categorical) or dtype == pl.Utf8:
        return "str"
    try:
        if dtype.is_integer():
            return "int"
        if dtype.is_float():
            return "float"
    except (AttributeError, TypeError):
        pass
    return None


def _kind_fits(got: str | None, want: str | None) -> bool:
    if got is None or want is None:
        return got == want
    return got == want or (got == "int" and want == "float")


def _dtype_fits(got: Any, want: Any) -> bool:
    return bool(got == want) or (_kind(got) is not None and _kind_fits(_kind(got), _kind(want)))


def fits(produced: Any, consumed: Any) -> bool | None:
    """Whether ``produced`` feeds ``consumed`` when either side is columnar; else None.

    A DataFrame without declared columns fits anything (rows convert at run time); a
    declared ``Columns`` output must hold every column (and a compatible dtype) that the
    next stage's ``Columns`` or record type requires; a record output must have the
    fields a next stage's ``Columns`` name.
    """
    out_cols = as_columns(produced)
    produced_frame = out_cols is not None or is_frame_type(produced) or isinstance(produced, Frame)
    consumed_frame = isinstance(consumed, Frame)
    if not produced_frame and not consumed_frame:
        return None
    want = consumed.columns if consumed_frame else None
    if consumed_frame:
        if want is None or (out_cols is None and produced_frame):
            return True
        if out_cols is not None:
            have = out_cols.schema()
            return all(n in have and _dtype_fits(have[n], d) for n, d in want.items)
        if is_record_type(produced):
            fields = _record_fields(produced)
            return all(
                n in fields and _kind_fits(_SCALAR_KINDS.get(fields[n][0]), _kind(d))
                for n, d in want.items
            )
        return True  # dicts, Any: their keys are only known at run time
    # a DataFrame feeding a row stage
    if out_cols is None or consumed is Any or consumed is object:
        return True
    if is_record_type(consumed):
        have = out_cols.schema()
        for name, (tp, required) in _record_fields(consumed).items():
            if name not in have:
                if required:
                    return False
                continue
            kind = _SCALAR_KINDS.get(tp)
            if kind is not None and not _kind_fits(_kind(have[name]), kind):
                return False
        return True
    origin = getattr(consumed, "__origin__", consumed)
    return origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping)


# -- conversion -------------------------------------------------------------------------


def rows_of(frame: Any) -> list[Any]:
    """A DataFrame's rows as dicts (what a row stage after a columnar one gets)."""
    rows: list[Any] = frame.to_dicts()
    return rows


def as_rows(output: Any) -> Any:
    """A run's output as rows to iterate: a DataFrame's as dicts, anything else as it is."""
    return rows_of(output) if is_frame(output) else output


def _as_mapping(row: Any) -> dict[str, Any]:
    """One row as a dict of columns: a mapping, a record, or a JSON object string."""
    if isinstance(row, dict):
        return row
    if isinstance(row, Mapping):
        return dict(row)
    if isinstance(row, str | bytes | bytearray):
        try:
            value = json.loads(row)
        except ValueError as exc:
            raise ValueError(f"not valid JSON ({exc})") from exc
        if isinstance(value, dict):
            return value
        raise TypeError(f"expected a JSON object, got JSON {type(value).__name__}")
    if is_record_type(type(row)):
        value = converter.unstructure(row)
        if isinstance(value, dict):
            return value
    raise TypeError(
        f"expected a mapping, a record or a JSON object for a DataFrame row, "
        f"got {type(row).__name__}"
    )


def frame_of(rows: Sequence[Any], columns: Columns | None = None) -> Any:
    """Rows (dicts, records, JSON objects) as one DataFrame; raise for the first bad row.

    With ``columns`` the frame has exactly those columns and dtypes (a missing key is
    null, other keys are left out, a value of another dtype is an error, never cast);
    without, each column's dtype is inferred from all its values: ints and floats make
    a float column, other mixes (an int and a str) are an error naming the row.

    Raises:
        RowConversionFailure: naming the first row that does not convert.
    """
    pl = polars()
    schema = None if columns is None else columns.schema()
    fast = _by_columns(pl, rows, schema)
    if fast is not None:
        return fast
    good, bad = _convert_each(pl, rows, schema)
    if bad:
        raise bad[0]
    return good


def _strict(pl: Any, rows: Sequence[Mapping[str, Any]], schema: dict[str, Any]) -> Any:
    """Mappings as a frame of exactly ``schema`` (missing keys null); raises on a dtype."""
    data = {name: [row.get(name) for row in rows] for name in schema}
    try:
        return pl.DataFrame(data, schema=schema, strict=True)
    except Exception as exc:  # Polars' message runs on with hints: keep its first line
        raise TypeError(_first_line(exc)) from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _by_columns(pl: Any, rows: Sequence[Any], schema: dict[str, Any] | None) -> Any:
    """The common case, fast: dicts that all have the same keys, one list per column.

    None when it does not apply (other rows, keys that differ, values that do not build
    a column of one dtype): the caller then converts row by row. A column's dtype is
    inferred from all its values and built strictly, so no value is truncated.
    """
    if not rows or type(rows[0]) is not dict:
        return None
    names = list(rows[0]) if schema is None else list(schema)
    try:
        if schema is None and len(set().union(*rows)) != len(names):
            return None
        data = {name: [row[name] for row in rows] for name in names}
        return pl.DataFrame(data, schema=schema, strict=True)
    except Exception:  # a key missing, a row that is not a mapping, mixed dtypes
        return None


_NUMBERS = (int, float)


def _kind_of(value: Any) -> type:
    """What a column may mix: ints with floats, else values of one type."""
    tp = type(value)
    return float if tp is int else tp


def _inferred(pl: Any, rows: Sequence[Mapping[str, Any]]) -> tuple[Any, int, str]:
    """Mappings as a frame, each column's dtype inferred from all its values.

    Returns ``(frame, -1, "")``, or ``(None, position, reason)`` for the first row whose
    value does not fit its column's other values (an int among strs, say).
    """
    names = list(dict.fromkeys(name for row in rows for name in row))
    series = []
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            series.append(pl.Series(name, values, strict=True))
            continue
        except Exception as exc:
            error = exc
        if all(v is None or (type(v) in _NUMBERS) for v in values):
            series.append(pl.Series(name, values, dtype=pl.Float64, strict=True))
            continue
        first = next((i for i, v in enumerate(values) if v is not None), 0)
        kind = _kind_of(values[first])
        for pos, value in enumerate(values):
            if value is not None and _kind_of(value) is not kind:
                return (
                    None,
                    pos,
                    f"column {name!r} holds {type(values[first]).__name__} values, this "
                    f"row {type(value).__name__} {safe_repr(value, 60)}; a column holds "
                    f"values of one type (ints and floats make floats)",
                )
        return None, first, f"column {name!r}: {_first_line(error)}"
    return pl.DataFrame(series), -1, ""


def _convert_each(
    pl: Any, rows: Sequence[Any], schema: dict[str, Any] | None
) -> tuple[Any, list[RowConversionFailure]]:
    """The rows that convert, as a frame, and a failure for each row that does not."""
    kept: list[dict[str, Any]] = []
    where: list[int] = []
    bad: list[RowConversionFailure] = []
    for index, row in enumerate(rows):
        try:
            mapped = _as_mapping(row)
            if schema is not None:
                _strict(pl, [mapped], schema)
        except Exception as exc:
            bad.append(RowConversionFailure(index, row, exc))
            continue
        kept.append(mapped)
        where.append(index)
    if schema is not None:
        return _strict(pl, kept, schema), bad
    while True:  # a row whose value clashes with its column's others is dropped, then retried
        frame, pos, reason = _inferred(pl, kept)
        if frame is not None:
            break
        index = where.pop(pos)
        del kept[pos]
        bad.append(RowConversionFailure(index, rows[index], TypeError(reason)))
    bad.sort(key=lambda failure: failure.index)
    return frame, bad


class FrameRows:
    """Converts a columnar stage's input to a DataFrame (``RowType``'s columnar twin)."""

    __slots__ = ("columns",)

    def __init__(self, columns: Columns | None) -> None:
        self.columns = columns

    def convert(self, rows: Any) -> Any:
        """A DataFrame of ``rows``; a DataFrame is passed on as it is (same object)."""
        if is_frame(rows):
            if self.columns is not None:
                self._check_columns(rows)
            return rows
        return frame_of(rows, self.columns)

    def convert_each(self, rows: Sequence[Any]) -> tuple[Any, list[RowConversionFailure]]:
        """The rows that convert, as one DataFrame, and every failure."""
        if is_frame(rows):
            return self.convert(rows), []
        pl = polars()
        return _convert_each(pl, rows, None if self.columns is None else self.columns.schema())

    def _check_columns(self, frame: Any) -> None:
        assert self.columns is not None
        have = frame.schema
        for name, dtype in self.columns.items:
            if name not in have or not _dtype_fits(have[name], dtype):
                got = "no such column" if name not in have else f"dtype {have[name]}"
                raise RowConversionFailure(
                    0,
                    f"<DataFrame of {frame.height} rows>",
                    TypeError(f"column {name!r} must be {dtype}, the DataFrame has {got}"),
                )


# -- committing -------------------------------------------------------------------------


def merge_commit(buffer: Any, rows: Iterable[Any]) -> Any:
    """A stage's result after it commits ``rows`` (a DataFrame, or rows after one).

    The first DataFrame committed becomes the result as it is; rows committed before it
    and what is committed after it are concatenated to it (columns by name).
    """
    committed = is_frame(rows)
    if committed and type(buffer) is list and not buffer:
        return rows  # the common case: one DataFrame, handed on as it is
    pl = polars()
    frame = rows if committed else frame_of(list(rows))
    if is_frame(buffer):
        return pl.concat([buffer, frame], how="diagonal_relaxed")
    if not buffer:
        return frame
    return pl.concat([frame_of(buffer), frame], how="diagonal_relaxed")


def row_after_frame(flow: str, stage: str) -> CommitError:
    """The error for ``commit_row`` in a stage whose result is already a DataFrame."""
    return CommitError(
        f"flow {flow!r} stage {stage!r}: commit_row after a DataFrame was committed; "
        f"commit further rows with commit_row_batch (a DataFrame or a list of rows)",
        flow=flow,
        stage=stage,
    )


def rejected_rows(frame: Any, reason: str) -> list[tuple[dict[str, Any], str]]:
    """Each row of a rejected DataFrame with its reason (its ``REASON`` column, if any)."""
    if REASON in frame.columns:
        reasons = [str(r) for r in frame.get_column(REASON).to_list()]
        rows = frame.drop(REASON).to_dicts()
        return list(zip(rows, reasons, strict=True))
    return [(row, reason) for row in frame.to_dicts()]


# -- partitions that are file slices ------------------------------------------------------


@attrs.frozen
class FileSlice:
    """A partition of a Parquet or CSV file: ``length`` rows from row ``offset``."""

    path: str
    offset: int
    length: int


def _scan(pl: Any, path: str) -> Any:
    return pl.scan_csv(path) if path.endswith(".csv") else pl.scan_parquet(path)


def file_slices(path: str, rows_per_partition: int) -> list[FileSlice]:
    """Partition descriptions for ``run_partitions``: slices of a Parquet or CSV file.

    Only the row count is read here; each worker reads its own slice (``load_slice``)
    straight into a DataFrame, so no Python rows are made or shipped.
    """
    if rows_per_partition < 1:
        raise ValueError(f"rows_per_partition must be at least 1, got {rows_per_partition}")
    pl = polars("kisflow.columnar.file_slices")
    total = int(_scan(pl, path).select(pl.len()).collect().item())
    return [
        FileSlice(path, start, min(rows_per_partition, total - start))
        for start in range(0, total, rows_per_partition)
    ]


def load_slice(part: FileSlice) -> Any:
    """A ``FileSlice``'s rows as a DataFrame (the ``load`` of ``run_partitions``)."""
    pl = polars("kisflow.columnar.load_slice")
    return _scan(pl, part.path).slice(part.offset, part.length).collect()
