"""Stream sources with positions: what a durable ``flow.stream(source, ...)`` reads.

``Source`` is the interface (read a chunk, the span it covers, the position after it,
ack, reread after a crash); the factories below make the built-in ones, each importing
its client library on first use.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from kisflow.sources._base import BadRecord, Chunk, Source, Takeover

if TYPE_CHECKING:
    from kisflow.sources.iterable import IterableSource
    from kisflow.sources.redis import RedisStreamSource

__all__ = ["BadRecord", "Chunk", "Source", "Takeover", "iterable", "redis_stream"]


def iterable(
    rows: Iterable[Any] | AsyncIterable[Any], *, name: str = "iterable", reader: bool = False
) -> IterableSource:
    """A plain iterable, generator or async iterable as a (not durable) source.

    ``flow.stream(rows)`` wraps one itself; ``reader=True`` pulls it on a thread so a
    read returns within its timeout (``flow.stream`` does so when ``max_wait`` is set).
    """
    from kisflow.sources.iterable import IterableSource

    return IterableSource(rows, name=name, reader=reader)


def redis_stream(
    url: str,
    *,
    stream: str,
    group: str,
    consumer: str,
    min_idle: float | None = 60.0,
    start: str = "0",
    claim_every: float | None = None,
    claim_count: int = 10_000,
    json_fields: Sequence[str] = ("data", "json", "row"),
    header_fields: Sequence[str] = ("traceparent", "tracestate"),
    timeout: float = 10.0,
) -> RedisStreamSource:
    """A Redis stream read as ``consumer`` of consumer group ``group`` (extra
    ``kisflow[redis]``); entries other consumers left pending over ``min_idle`` seconds
    are taken over. See ``kisflow.sources.redis`` and docs/streaming.md."""
    from kisflow.sources.redis import RedisStreamSource

    return RedisStreamSource(
        url,
        stream=stream,
        group=group,
        consumer=consumer,
        min_idle=min_idle,
        start=start,
        claim_every=claim_every,
        claim_count=claim_count,
        json_fields=json_fields,
        header_fields=header_fields,
        timeout=timeout,
    )
