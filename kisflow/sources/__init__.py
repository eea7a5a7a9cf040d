"""Stream sources with positions: what a durable ``flow.stream(source, ...)`` reads.

``Source`` is the interface (read a chunk, the span it covers, the position after it,
ack, reread after a crash); the factories below make the built-in ones, each importing
its client library on first use.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kisflow.sources._base import BadRecord, Chunk, Source, Takeover

if TYPE_CHECKING:
    from kisflow.sources._kafka import KafkaSource
    from kisflow.sources.iterable import IterableSource

__all__ = ["BadRecord", "Chunk", "Source", "Takeover", "iterable", "kafka"]


def iterable(
    rows: Iterable[Any] | AsyncIterable[Any], *, name: str = "iterable", reader: bool = False
) -> IterableSource:
    """A plain iterable, generator or async iterable as a (not durable) source.

    ``flow.stream(rows)`` wraps one itself; ``reader=True`` pulls it on a thread so a
    read returns within its timeout (``flow.stream`` does so when ``max_wait`` is set).
    """
    from kisflow.sources.iterable import IterableSource

    return IterableSource(rows, name=name, reader=reader)


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
