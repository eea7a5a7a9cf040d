"""Column kinds for the table stores (sqlite, sql): inferred from the first row's values.

A column's kind is declared in the table (``BOOLEAN``, ``INTEGER``, ``REAL``, ``TEXT``,
``BLOB``, ``JSON``) so values come back as the Python type they were saved as. A later
value of another type is refused (never silently changed), except an int in a REAL
column, which is stored as a float. Columns of tables made elsewhere are ``ANY``: their
values pass through as the database gives them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from kisflow.rows import safe_repr, safe_str

__all__ = ["KINDS", "fit_value", "kind_of", "kind_of_decltype"]

KINDS = ("BOOLEAN", "INTEGER", "REAL", "TEXT", "BLOB", "JSON", "ANY")


def kind_of(value: Any) -> str:
    """The kind of column a first value asks for (None and containers: JSON)."""
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "INTEGER"
    if isinstance(value, float):
        return "REAL"
    if isinstance(value, str):
        return "TEXT"
    if isinstance(value, bytes | bytearray | memoryview):
        return "BLOB"
    return "JSON"


def kind_of_decltype(decltype: str) -> str:
    """The kind of an existing column from its declared SQL type."""
    t = decltype.strip().upper()
    return t if t in KINDS else "ANY"


def fit_value(kind: str, value: Any) -> tuple[Any, str | None]:
    """``value`` as a ``kind`` column stores it (int -> float in REAL, buffers -> bytes),
    and None; or, when it does not fit, what is wrong (the caller raises its own
    ``ConnectorError`` naming row, field and table).
    """
    if value is None:
        return None, None
    ok: bool
    if kind == "BOOLEAN":
        ok = isinstance(value, bool)
    elif kind == "INTEGER":
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and not -(2**63) <= value < 2**63:
            return value, f"integer {value} does not fit in 64 bits"
    elif kind == "REAL":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
            if math.isnan(value):
                return value, "NaN cannot be stored (it reads back as NULL)"
    elif kind == "TEXT":
        ok = isinstance(value, str)
    elif kind == "BLOB":
        ok = isinstance(value, bytes | bytearray | memoryview)
        if ok:
            value = bytes(value)
    elif kind == "JSON":
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            return value, f"value {safe_repr(value)} is not JSON data: {safe_str(exc)}"
        return value, None
    else:  # ANY: what the database takes as it is
        ok = isinstance(value, int | float | str | bytes)
    if not ok:
        return value, f"the column holds {kind} values, got {type(value).__name__}"
    return value, None
