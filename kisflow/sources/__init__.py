"""Stream sources with positions: what a durable ``flow.stream(source, ...)`` reads.

``Source`` is the interface (read a chunk, the span it covers, the position after it,
ack, reread after a crash); the factories below make the built-in ones, each importing
its client library on first use.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any

from kisflow.sources._base import BadRecord, Chunk, Source, Takeover

if TYPE_CHECKING:
    from kisflow.sources.iterable import IterableSource

__all__ = ["BadRecord", "Chunk", "Source", "Takeover", "iterable"]


def iterable(
    rows: Iterable[Any] | AsyncIterable[Any], *, name: str = "iterable", reader: bool = False
) -> IterableSource:
    """A plain iterable, generator or async iterable as a (not durable) source.

    ``flow.stream(rows)`` wraps one itself; ``reader=True`` pulls it on a thread so a
    read returns within its timeout (``flow.stream`` does so when ``max_wait`` is set).
    """
    from kisflow.sources.iterable import IterableSource

    return IterableSource(rows, name=name, reader=reader)
