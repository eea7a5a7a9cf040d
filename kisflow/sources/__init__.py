"""Stream sources with positions: what a durable ``flow.stream(source, ...)`` reads.

``Source`` is the interface (read a chunk, the span it covers, the position after it,
ack, reread after a crash); the factories below make the built-in ones, each importing
its client library on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kisflow.sources._base import BadRecord, Chunk, Source, Takeover

if TYPE_CHECKING:
    from kisflow.sources._kafka import KafkaSource

__all__ = ["BadRecord", "Chunk", "Source", "Takeover", "kafka"]


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
