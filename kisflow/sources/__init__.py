"""Stream sources with positions: what a durable ``flow.stream(source, ...)`` reads.

``Source`` is the interface (read a chunk, the span it covers, the position after it,
ack, reread after a crash); the factories below make the built-in ones, each importing
its client library on first use.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any

from kisflow.sources._base import BadRecord, Chunk, Source, Takeover

if TYPE_CHECKING:
    from kisflow.sources.iterable import IterableSource

__all__ = ["BadRecord", "Chunk", "Source", "Takeover", "iterable", "jsonl"]


def iterable(
    rows: Iterable[Any] | AsyncIterable[Any], *, name: str = "iterable", reader: bool = False
) -> IterableSource:
    """A plain iterable, generator or async iterable as a (not durable) source.

    ``flow.stream(rows)`` wraps one itself; ``reader=True`` pulls it on a thread so a
    read returns within its timeout (``flow.stream`` does so when ``max_wait`` is set).
    """
    from kisflow.sources.iterable import IterableSource

    return IterableSource(rows, name=name, reader=reader)


def jsonl(
    path: str | os.PathLike[str], *, follow: bool = False, poll_interval: float = 0.05
) -> Source:
    """A JSON-lines file as a durable source: byte-offset positions, line numbers in
    messages, bad lines as ``BadRecord``s; ``follow=True`` tails the growing file (polling
    every ``poll_interval`` seconds), reading a last line once its line break is written."""
    from kisflow.sources._jsonl import JsonLinesSource

    return JsonLinesSource(path, follow=follow, poll_interval=poll_interval)
