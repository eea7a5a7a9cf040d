"""Stream sources with positions: what a durable ``flow.stream(source, ...)`` reads.

``Source`` is the interface (read a chunk, the span it covers, the position after it,
ack, reread after a crash); the factories below make the built-in ones, each importing
its client library on first use.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kisflow.sources._base import BadRecord, Chunk, PeerView, Source, Takeover

if TYPE_CHECKING:
    from kisflow.sources._iterable import IterableSource
    from kisflow.sources._kafka import KafkaSource
    from kisflow.sources.redis import RedisStreamSource

__all__ = [
    "BadRecord",
    "Chunk",
    "PeerView",
    "Source",
    "Takeover",
    "iterable",
    "jsonl",
    "kafka",
    "redis_stream",
]


def iterable(
    rows: Iterable[Any] | AsyncIterable[Any], *, name: str = "iterable", reader: bool = False
) -> IterableSource:
    """A plain iterable, generator or async iterable as a (not durable) source.

    ``flow.stream(rows)`` wraps one itself; ``reader=True`` pulls it on a thread so a
    read returns within its timeout (``flow.stream`` does so when ``max_wait`` is set).
    """
    from kisflow.sources._iterable import IterableSource

    return IterableSource(rows, name=name, reader=reader)


def jsonl(
    path: str | os.PathLike[str], *, follow: bool = False, poll_interval: float = 0.05
) -> Source:
    """A JSON-lines file as a durable source: byte-offset positions, line numbers in
    messages, bad lines as ``BadRecord``s; ``follow=True`` tails the growing file (polling
    every ``poll_interval`` seconds), reading a last line once its line break is written."""
    from kisflow.sources._jsonl import JsonLinesSource

    return JsonLinesSource(path, follow=follow, poll_interval=poll_interval)


def kafka(
    bootstrap: str,
    *,
    topic: str,
    group: str,
    consumer: str | None = None,
    config: Mapping[str, Any] | None = None,
) -> KafkaSource:
    """A Kafka ``topic`` read by consumer ``group`` (extra ``kisflow[kafka]``).

    ``config`` passes librdkafka settings through (``session.timeout.ms``,
    ``security.protocol``, ...); offsets are committed only after each batch's effects
    are. Consumers of one group sharing a checkpoint need distinct ``consumer`` names.
    """
    from kisflow.sources._kafka import KafkaSource

    return KafkaSource(bootstrap, topic=topic, group=group, consumer=consumer, config=config)


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
