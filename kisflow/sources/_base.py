"""What every stream source is: records read in chunks, each chunk with the exact span it covers.

A durable stream pulls its source (never pushed): ``read`` returns at most ``max_rows``
records within ``timeout`` seconds. The stream joins the chunks of one batch (``join``),
records the batch's span in its checkpoint *before* running it (an intent), runs it,
commits the span's ``position`` with the batch's effects, and only then ``ack``s the span
so the source may forget it (Redis ``XACK``, a Kafka offset commit). After a crash the
stream reopens the source at the last committed position and ``reread``s each intent's
span, so a batch that may have been half-stored runs again with exactly the same rows
and the same idempotency key: the built-in Saves store it once.

Spans and positions are plain JSON values (dicts, lists, str, int), defined by each
source: a file's byte offsets, a Redis stream's entry ids, a Kafka topic's offsets per
partition. The stream never looks inside them.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

__all__ = ["BadRecord", "Chunk", "PeerIntent", "PeerSaved", "PeerView", "Source", "Takeover"]


@attrs.frozen
class BadRecord:
    """A record the source read but could not turn into a row (not UTF-8, not JSON).

    It is part of the span (its position is committed with the batch), so a poison
    message is never redelivered forever: with a dead-letter sink it becomes a letter that
    keeps ``text``; without one the stream stops with an error naming ``where``.
    """

    where: str
    """Where it is, for messages: ``orders.jsonl line 12``, ``redis stream orders id 1-0``."""
    text: str
    """The record's raw text (decoded with backslash escapes when it is not UTF-8)."""
    reason: str
    """Why it is no row: ``is not JSON: Expecting value at column 1``."""
    index: int
    """Where it sat among the chunk's records (rows and bad records together, from 0)."""


@attrs.frozen
class Chunk:
    """Records read in one go: the rows, the bad records, and the span they cover.

    ``span`` is JSON-able and covers every record of the chunk, rows and bad ones alike:
    ``Source.reread(span)`` gives the same rows again. ``headers`` holds one mapping per
    row (message headers, e.g. a W3C ``traceparent``) when the source has them, else None.
    """

    rows: list[Any]
    span: Any
    bad: Sequence[BadRecord] = ()
    headers: list[Mapping[str, str]] | None = None
    wheres: Sequence[str] | None = None
    """One description per row (``orders.jsonl line 12``), for errors; None if the source
    has no better name for a row than its index."""

    @property
    def size(self) -> int:
        """Records in the chunk: rows and bad records."""
        return len(self.rows) + len(self.bad)


@attrs.frozen
class Takeover:
    """Records this source took over from a dead consumer of its group (Redis
    ``XAUTOCLAIM``): ``key`` is that consumer's source key, ``span`` what was taken.

    The stream replays the dead consumer's intents found in a shared checkpoint under
    the dead consumer's key (so their Saves stay exactly once), and runs what is left
    of ``span`` (``Source.without``) as ordinary batches of its own.
    """

    key: str
    span: Any


class PeerSaved(Protocol):
    """What a consumer committed last, as ``PeerView.load`` gives it."""

    @property
    def position(self) -> Any:
        """The source position after its last committed batch (JSON value)."""


class PeerIntent(Protocol):
    """A batch a consumer began and did not commit, as ``PeerView.intents`` gives it."""

    @property
    def seq(self) -> int:
        """The batch's number under its consumer's key."""

    @property
    def span(self) -> Any:
        """The records the batch holds, as the source spells them (JSON value)."""


class PeerView(Protocol):
    """A read-only view of a stream's checkpoint (``kisflow.checkpoint.Checkpoint`` is
    one): the consumers of a group that share it see each other's positions and intents."""

    def keys(self, prefix: str = "") -> Sequence[str]:
        """The keys with a committed position or an intent that start with ``prefix``."""

    def load(self, key: str) -> PeerSaved | None:
        """What was last committed under ``key``, or None."""

    def intents(self, key: str) -> Sequence[PeerIntent]:
        """The batches begun under ``key`` and not committed, in seq order."""


class Source(abc.ABC):
    """A stream source with positions; subclass it to read another system.

    The stream calls, in order: ``open(position)``; ``reread(span)`` for each batch a
    crash left uncommitted (its checkpoint's intents); then per batch ``read`` (until
    ``batch_size`` rows or ``max_wait``), ``join``, ``position(span)`` when the batch
    commits and ``ack(span)`` after the commit, with ``takeovers()`` between batches;
    ``close()`` at the end; with a checkpoint, ``peers(view)`` right after ``open``. All
    calls come from one thread. Errors are ``kisflow.errors.SourceError`` naming the
    source and the position.

    After a crash the stream opens the source at ``position(span)`` of the last intent
    (the last batch begun, not taken over), then rereads every intent's span: so
    ``position`` must follow from the span alone, ``reread`` must not move the read
    cursor, and ``read`` goes on after the opened position. A source whose positions
    mean nothing on their own (a consumer group's cursor) may ignore them.
    """

    durable: bool = True
    """Whether positions survive a restart (``reread`` and ``open(position)`` work). A
    plain iterable is not durable: a stream over it is at most once, as before."""

    @property
    @abc.abstractmethod
    def key(self) -> str:
        """A stable name for the checkpoint: the same source (and consumer) after a
        restart has the same key, e.g. ``jsonl:/data/orders.jsonl`` or
        ``redis:127.0.0.1:6379/0/orders/billing/worker-1``."""

    @abc.abstractmethod
    def open(self, position: Any | None) -> None:
        """Start reading after ``position`` (a value ``position()`` returned before), or
        from the source's own start when None (a file's first byte, a group's cursor)."""

    @abc.abstractmethod
    def read(self, max_rows: int, timeout: float) -> Chunk | None:
        """Up to ``max_rows`` records, waiting at most ``timeout`` seconds for the first.

        Returns what is available (possibly fewer rows), an empty chunk when nothing came
        in time, or None once a finite source has nothing more (a file not followed).
        """

    def join(self, chunks: Sequence[Chunk]) -> Chunk:
        """One chunk of several read in a row (a batch): by default their spans as a list."""
        if len(chunks) == 1:
            return chunks[0]
        rows: list[Any] = []
        bad: list[BadRecord] = []
        headers: list[Mapping[str, str]] | None = []
        wheres: list[str] | None = []
        for chunk in chunks:
            offset = len(rows) + len(bad)
            bad.extend(attrs.evolve(b, index=b.index + offset) for b in chunk.bad)
            if headers is not None:
                headers = None if chunk.headers is None else [*headers, *chunk.headers]
            if wheres is not None:
                wheres = None if chunk.wheres is None else [*wheres, *chunk.wheres]
            rows.extend(chunk.rows)
        return Chunk(rows, [c.span for c in chunks], bad, headers, wheres)

    @abc.abstractmethod
    def reread(self, span: Any) -> Chunk:
        """Exactly the records ``span`` covers, read again (a batch replayed after a
        crash). Raises ``SourceError`` when they are gone (a truncated file)."""

    @abc.abstractmethod
    def position(self, span: Any) -> Any:
        """The position to resume after once ``span`` (and all before it) is committed."""

    def ack(self, span: Any) -> None:  # noqa: B027 - most sources have nothing to ack
        """Tell the source it may forget ``span`` (committed for good); by default nothing."""

    def committed(self, position: Any) -> None:  # noqa: B027 - most sources need nothing
        """A position the checkpoint holds as committed, told after ``open`` (this
        consumer's, when the stream opened after it to reread intents) and before a
        takeover is replayed (the dead consumer's): the source may ack what it covers, in
        case a crash came between the commit and the ack. By default nothing."""

    def peers(self, view: PeerView) -> None:  # noqa: B027 - most sources need no peers
        """The stream's checkpoint, read only, told once after ``open`` and before the
        first read (only when the stream has a checkpoint). The consumers of one group
        sharing it see each other's committed positions and intents: a source given a
        dead consumer's partitions (Kafka) starts after them and reports a ``Takeover``
        so the stream replays that consumer's intents under its key. By default nothing."""

    def takeovers(self) -> Sequence[Takeover]:
        """Records taken over from dead consumers since the last call (none by default)."""
        return ()

    def without(self, span: Any, spans: Sequence[Any]) -> Any:
        """``span`` minus the records of ``spans`` (what is left of a takeover once the
        dead consumer's intents are replayed), or None when nothing is left."""
        raise NotImplementedError(f"{type(self).__name__} takes nothing over")

    def lag(self) -> int | None:
        """Records the source holds beyond what was read, when it knows (else None)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional for a source with nothing to release
        """Release what the source holds (connections, files); the stream's last call."""

    def describe(self) -> str:
        """The source as a user names it, for messages (by default its key)."""
        return self.key
