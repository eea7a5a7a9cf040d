"""Stream sources with positions: what a durable ``flow.stream(source, ...)`` reads.

``Source`` is the interface (read a chunk, the span it covers, the position after it,
ack, reread after a crash); the factories below make the built-in ones, each importing
its client library on first use.
"""

from __future__ import annotations

from kisflow.sources._base import BadRecord, Chunk, Source, Takeover

__all__ = ["BadRecord", "Chunk", "Source", "Takeover"]
