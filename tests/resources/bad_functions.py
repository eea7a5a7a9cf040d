"""FaaS that kisflow must refuse at registration, each for one reason.

``CASES`` maps each function to the parameter the ``FaaSSignatureError`` must name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import kisflow as kf


class NotARecord:
    """A plain class: neither attrs nor a dataclass, so not a row type."""

    def __init__(self, x: int) -> None:
        self.x = x


def no_flow(rows: list[int]) -> None:
    """Has rows but no flow parameter."""


def flow_wrong_type(flow: int, rows: list[int]) -> None:
    """Its first parameter is named flow but annotated as something else."""


def two_contexts(ctx: Any, other: Any, flow: kf.Flow) -> None:
    """Two parameters before the flow."""


def rows_not_a_list(flow: kf.Flow, rows: int) -> None:
    """Rows annotated with a scalar instead of a list."""


def rows_a_tuple(flow: kf.Flow, rows: tuple[int, ...]) -> None:
    """Rows annotated as a tuple, which kisflow does not pass."""


def rows_a_set(flow: kf.Flow, rows: set[int]) -> None:
    """Rows annotated as a set."""


def rows_unsupported(flow: kf.Flow, rows: list[NotARecord]) -> None:
    """Rows of a plain class kisflow cannot structure."""


def rows_of_tuples(flow: kf.Flow, rows: list[tuple[int, int]]) -> None:
    """Rows of tuples."""


def rows_optional(flow: kf.Flow, rows: list[int | None]) -> None:
    """Rows of a union."""


def returns_value(flow: kf.Flow, rows: list[int]) -> int:
    """Returns a value instead of committing rows."""
    return len(rows)


def returns_list(flow: kf.Flow, rows: list[int]) -> list[int]:
    """Returns its rows instead of committing them."""
    return rows


async def async_returns_value(flow: kf.Flow, rows: list[int]) -> int:
    """An async FaaS returning a value."""
    return len(rows)


def generator_wrong_return(flow: kf.Flow, rows: list[int]) -> list[int]:
    """A generator annotated as returning a list."""
    yield from rows


def generator_async_iterator(flow: kf.Flow, rows: list[int]) -> AsyncIterator[int]:
    """A sync generator annotated as an async iterator."""
    yield from rows


async def async_generator_sync_iterator(flow: kf.Flow, rows: list[int]) -> Iterator[int]:
    """An async generator annotated as a sync iterator."""
    for r in rows:
        yield r


def generator_unsupported_output(flow: kf.Flow, rows: list[int]) -> Iterator[NotARecord]:
    """A generator yielding a type kisflow cannot pass on."""
    for r in rows:
        yield NotARecord(r)


def star_args(flow: kf.Flow, *args: Any) -> None:
    """Takes *args."""


def star_kwargs(flow: kf.Flow, rows: list[int], **kwargs: Any) -> None:
    """Takes **kwargs."""


def keyword_only(flow: kf.Flow, rows: list[int], *, limit: int) -> None:
    """A keyword-only parameter kisflow cannot fill."""


def extra_parameter(flow: kf.Flow, rows: list[int], extra: int) -> None:
    """A third positional parameter without a default."""


def unresolvable_rows(flow: kf.Flow, rows: list[Missing]) -> None:  # noqa: F821
    """Its rows annotation names a type that does not exist."""


def unresolvable_return(flow: kf.Flow) -> Nowhere:  # noqa: F821
    """Its return annotation names a type that does not exist."""


NOT_CALLABLE = 42

CASES: dict[str, tuple[Any, str]] = {
    "no_flow": (no_flow, "flow"),
    "flow_wrong_type": (flow_wrong_type, "flow"),
    "two_contexts": (two_contexts, "other"),
    "rows_not_a_list": (rows_not_a_list, "rows"),
    "rows_a_tuple": (rows_a_tuple, "rows"),
    "rows_a_set": (rows_a_set, "rows"),
    "rows_unsupported": (rows_unsupported, "rows"),
    "rows_of_tuples": (rows_of_tuples, "rows"),
    "rows_optional": (rows_optional, "rows"),
    "returns_value": (returns_value, "return"),
    "returns_list": (returns_list, "return"),
    "async_returns_value": (async_returns_value, "return"),
    "generator_wrong_return": (generator_wrong_return, "return"),
    "generator_async_iterator": (generator_async_iterator, "return"),
    "async_generator_sync_iterator": (async_generator_sync_iterator, "return"),
    "generator_unsupported_output": (generator_unsupported_output, "output"),
    "star_args": (star_args, "args"),
    "star_kwargs": (star_kwargs, "kwargs"),
    "keyword_only": (keyword_only, "limit"),
    "extra_parameter": (extra_parameter, "extra"),
    "unresolvable_rows": (unresolvable_rows, "rows"),
    "unresolvable_return": (unresolvable_return, "return"),
    "not_callable": (NOT_CALLABLE, "fn"),
}
