"""FaaS in a module using ``from __future__ import annotations``: every annotation is a string."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

import attrs

import kisflow as kf


@attrs.define
class Order:
    """A row type defined in this module, so the string annotations must resolve here."""

    order_id: int
    amount: float = 0.0


@attrs.define
class Total:
    """An output row type."""

    order_id: int
    total: float


def plain(flow: kf.Flow, rows: list[Order]) -> None:
    """Annotated rows and None return, both as strings."""


def sequence(flow: kf.Flow, rows: Sequence[Order]) -> None:
    """Rows as a Sequence."""


def generator(flow: kf.Flow, rows: list[Order]) -> Iterator[Total]:
    """Yields totals; the output type is read from the string annotation."""
    for r in rows:
        yield Total(r.order_id, r.amount)


async def async_generator(
    ctx: dict[str, int], flow: kf.Flow, rows: list[Order]
) -> AsyncIterator[Total]:
    """A context first, then an async generator."""
    for r in rows:
        yield Total(r.order_id, r.amount * ctx.get("rate", 1))
