"""A Kafka topic read by a consumer group: spans are offsets per partition, acks commit them.

``sources.kafka("127.0.0.1:9092", topic="orders", group="billing")`` reads ``orders``
as a member of the consumer group ``billing`` with librdkafka (``confluent-kafka``,
the extra ``kisflow[kafka]``). A chunk's span is ``{"<partition>": [start, end]}``: the
offsets ``start <= offset < end`` of each partition it read (JSON keys are strings), and
for each other partition held an empty range at its next offset. The position after a
span is the next offset of every partition seen so far.

Offsets are committed to Kafka only in ``ack``, synchronously, once the stream has
committed the batch's effects and its checkpoint (``enable.auto.commit`` is always off).
A rebalance is followed: the offsets of a partition this consumer lost are never
committed by it, and a partition it is given starts at the furthest of the group's
committed offset, the checkpoint's position and what it had already read, so nothing
stored is read twice by it. ``reread(span)`` fetches exactly those offsets again with a
second consumer that is assigned the partitions (it never joins the group).

Consumers of one group sharing a checkpoint (``peers``) see each other: a partition
given to this one also starts past the other consumers' committed positions and
intents on it, and each of them with intents holding records of it is reported by
``takeovers()``, so the stream replays those intents under that consumer's key (a dead
consumer's batch is stored once). A live consumer's batch cut while a clean rebalance
took its partition, before its intent, stays at least once (docs/streaming.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from kisflow.errors import KisFlowError, MissingExtraError, SourceError
from kisflow.sources._base import BadRecord, Chunk, PeerView, Source, Takeover

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message, TopicPartition

__all__ = ["KafkaSource"]

_log = logging.getLogger(__name__)

_FORCED = {"enable.auto.commit": False, "enable.auto.offset.store": False}
"""Settings the source owns: offsets are committed by ``ack`` alone."""

_DEFAULTS: Mapping[str, Any] = {"auto.offset.reset": "earliest"}
"""Defaults a user's ``config`` may override: a new group reads the topic from its start."""

_LOST_MEMBERSHIP = frozenset(
    ("REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "_NO_OFFSET")
)
"""Commit errors meaning the group moved on: the partitions are someone else's now."""


def _client() -> Any:
    """The ``confluent_kafka`` module, or ``MissingExtraError`` naming the extra."""
    try:
        import confluent_kafka
    except ImportError as exc:
        raise MissingExtraError("kafka", "confluent_kafka", needed_by="sources.kafka") from exc
    return confluent_kafka


def _span_ends(span: Any) -> dict[int, tuple[int, int]]:
    """``{partition: (start, end)}`` of a span (a dict, or a list of them joined)."""
    out: dict[int, tuple[int, int]] = {}
    parts = span if isinstance(span, list) else [span]
    for part in parts:
        items: Iterable[tuple[int, tuple[int, int]]]
        if isinstance(part, list):
            items = _span_ends(part).items()
        else:
            items = [(int(p), (int(r[0]), int(r[1]))) for p, r in dict(part).items()]
        for p, (start, end) in items:
            if p in out:
                was = out[p]
                if start == end:  # an empty range only says where the partition was
                    start, end = was if was[0] < was[1] else (max(start, was[0]),) * 2
                elif was[0] < was[1]:
                    start, end = min(start, was[0]), max(end, was[1])
            out[p] = (start, end)
    return out


def _why(exc: BaseException) -> str:
    """A client exception's own message (a ``KafkaError``'s text, not its repr)."""
    err = exc.args[0] if exc.args else exc
    text = getattr(err, "str", None)
    return str(text()) if callable(text) else str(err)


def _text(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="backslashreplace")


class KafkaSource(Source):
    """One consumer of a Kafka consumer group reading one topic (see the module doc)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topic: str,
        group: str,
        consumer: str | None = None,
        config: Mapping[str, Any] | None = None,
        open_timeout: float = 10.0,
        reread_timeout: float = 30.0,
    ) -> None:
        if not bootstrap or not topic or not group:
            raise SourceError(
                "sources.kafka needs a bootstrap address, a topic and a group "
                f"(got bootstrap={bootstrap!r}, topic={topic!r}, group={group!r})",
                source=f"kafka:{bootstrap}/{topic}/{group}",
            )
        _client()  # the extra is missing: say so at once, not on the stream's first read
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.consumer = consumer
        self.open_timeout = open_timeout
        self.reread_timeout = reread_timeout
        user = dict(config or {})
        for name in ("group.id", "bootstrap.servers", *_FORCED):
            if name in user:
                raise SourceError(
                    f"sources.kafka config must not set {name!r}: the source sets it "
                    "(bootstrap and group are parameters; offsets are committed by ack)",
                    source=self._key(),
                )
        self.config: dict[str, Any] = {
            **_DEFAULTS,
            **user,
            **_FORCED,
            "bootstrap.servers": bootstrap,
            "group.id": group,
        }
        if consumer is not None:
            self.config.setdefault("client.id", consumer)
        self._main: Consumer | None = None
        self._replayer: Consumer | None = None
        self._assigned: set[int] = set()
        self._stored: dict[int, int] = {}
        """Next offset per partition whose effects are stored (checkpoint or acks)."""
        self._committed: dict[int, int] = {}
        """Next offset per partition this source committed to Kafka."""
        self._read: dict[int, int] = {}
        """Next offset per partition after the last record read."""
        self._view: PeerView | None = None
        """The stream's shared checkpoint (``peers``): the group's other consumers."""
        self._taken: list[Takeover] = []
        """Peers whose intents hold records of partitions given to this consumer."""
        self._failure: KisFlowError | None = None
        """An error met in a rebalance callback, raised by the next ``read``."""

    def _group_key(self) -> str:
        """``kafka:BOOTSTRAP/TOPIC/GROUP``: what every consumer's key of the group starts with."""
        return f"kafka:{self.bootstrap}/{self.topic}/{self.group}"

    def _key(self) -> str:
        base = self._group_key()
        return base if self.consumer is None else f"{base}/{self.consumer}"

    @property
    def key(self) -> str:
        """``kafka:BOOTSTRAP/TOPIC/GROUP[/CONSUMER]``: give each consumer of a group
        that shares a checkpoint its own ``consumer`` name."""
        return self._key()

    @property
    def assigned(self) -> tuple[int, ...]:
        """The partitions the group gave this consumer now (empty before the first read)."""
        return tuple(sorted(self._assigned))

    def describe(self) -> str:
        """The topic, group and broker, for messages."""
        return f"kafka topic {self.topic!r} (group {self.group!r} at {self.bootstrap})"

    def _error(self, message: str, *, retryable: bool = False) -> SourceError:
        return SourceError(
            f"{self.describe()}: {message}",
            source=self.key,
            position=self._position(self._stored),
            retryable=retryable,
        )

    @staticmethod
    def _position(ends: Mapping[int, int]) -> dict[str, int]:
        return {str(p): ends[p] for p in sorted(ends)}

    def _ends(self, span: Any) -> dict[int, tuple[int, int]]:
        """``_span_ends`` of a span this source made; ``SourceError`` for anything else."""
        try:
            return _span_ends(span)
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise self._error(f"span {span!r} is not [start, end] offsets per partition") from exc

    def _cooperative(self) -> bool:
        strategy = str(self.config.get("partition.assignment.strategy", ""))
        return "cooperative" in strategy or str(self.config.get("group.protocol")) == "consumer"

    def _offsets(self, position: Any) -> dict[int, int]:
        """``{partition: next offset}`` of a position; ``SourceError`` when it is none."""
        try:
            return {int(p): int(o) for p, o in dict(position).items()}
        except (TypeError, ValueError) as exc:
            raise self._error(f"position {position!r} is not offsets per partition") from exc

    def open(self, position: Any | None) -> None:
        """Join the group (on the first read) and start each partition after ``position``
        or the group's committed offset, whichever is further."""
        ck = _client()
        if position is not None:
            self._stored = self._offsets(position)
        try:
            main = ck.Consumer(self.config, logger=_log)
        except (ck.KafkaException, TypeError, ValueError) as exc:
            raise self._error(f"bad config: {exc}") from exc
        try:
            meta = main.list_topics(self.topic, timeout=self.open_timeout)
        except ck.KafkaException as exc:
            main.close()
            raise self._error(f"cannot connect: {_why(exc)}", retryable=True) from exc
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            main.close()
            why = "" if topic is None or topic.error is None else f" ({topic.error.str()})"
            raise self._error(f"the topic does not exist{why}")
        main.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        self._main = main

    def peers(self, view: PeerView) -> None:
        """The shared checkpoint: each partition the group gives this consumer is
        checked against the other consumers' positions and intents (``_from_peers``)."""
        self._view = view

    def _peer_keys(self) -> list[str]:
        """The checkpoint keys of this group's other consumers on this topic."""
        if self._view is None:
            return []
        base = self._group_key()
        own = self._key()
        return [
            k for k in self._view.keys(base) if (k == base or k.startswith(base + "/")) and k != own
        ]

    def _from_peers(self, parts: Iterable[int]) -> dict[int, int]:
        """What the group's other consumers left of ``parts`` (partitions just given to
        this one), from the shared checkpoint: ``{partition: offset}`` to start at least
        at (past each peer's committed position and the end of each of its intents).

        A peer's committed position is stored, so it joins ``_stored`` (and is committed
        to Kafka, in case the peer died between its checkpoint's commit and its ack). A
        peer whose intents hold records of ``parts`` is queued as a ``Takeover``: the
        stream replays those intents under the peer's key, so the Saves' marks skip what
        it had stored, and this consumer reads only what comes after them.
        """
        view = self._view
        wanted = set(parts)
        floors: dict[int, int] = {}
        if view is None or not wanted:
            return floors
        queued = {t.key for t in self._taken}
        for key in self._peer_keys():
            saved = view.load(key)
            if saved is not None and saved.position is not None:
                for p, at in self._offsets(saved.position).items():
                    if p in wanted:
                        self._stored[p] = max(at, self._stored.get(p, 0))
                        floors[p] = max(at, floors.get(p, 0))
            held: dict[int, tuple[int, int]] = {}
            for intent in view.intents(key):
                for p, (start, end) in self._ends(intent.span).items():
                    if p not in wanted:
                        continue
                    floors[p] = max(end, floors.get(p, 0))
                    if start < end:
                        was = held.get(p, (start, end))
                        held[p] = (min(start, was[0]), max(end, was[1]))
            if held and key not in queued:
                span = {str(p): list(held[p]) for p in sorted(held)}
                _log.warning(
                    "%s: taking over %s's batch(es) in flight on %s",
                    self.describe(),
                    key,
                    self._ranges(held, held),
                )
                self._taken.append(Takeover(key=key, span=span))
                queued.add(key)
        return floors

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start each new partition at the furthest offset known stored, read or left
        by another consumer of the group (``_from_peers``)."""
        ck = _client()
        try:
            committed = consumer.committed(partitions, timeout=self.open_timeout)
        except ck.KafkaException as exc:
            _log.warning("%s: cannot fetch committed offsets: %s", self.describe(), exc)
            committed = partitions
        try:
            floors = self._from_peers(tp.partition for tp in partitions)
        except KisFlowError as exc:  # raised by the next read: the callback must assign
            self._failure, floors = exc, {}
        behind: list[TopicPartition] = []
        for tp, done in zip(partitions, committed, strict=True):
            p = tp.partition
            group_at = done.offset if done.offset >= 0 else None
            if group_at is not None:
                self._committed[p] = max(group_at, self._committed.get(p, 0))
            known = [
                o
                for o in (group_at, self._stored.get(p), self._read.get(p), floors.get(p))
                if o is not None
            ]
            if known:
                tp.offset = max(known)
            stored = self._stored.get(p)
            if stored is not None and (group_at is None or stored > group_at):
                behind.append(ck.TopicPartition(self.topic, p, stored))
            self._assigned.add(p)
        if self._cooperative():
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        if behind:  # stored by a batch whose ack a crash cut off: commit it now
            self._commit(behind)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Forget partitions this consumer lost: it commits nothing for them any more."""
        for tp in partitions:
            self._assigned.discard(tp.partition)

    def _consumer(self) -> Consumer:
        if self._main is None:
            raise self._error("is not open (call open first) or already closed")
        return self._main

    def _records(
        self, messages: Iterable[Message], ranges: Mapping[int, tuple[int, int]] | None
    ) -> Chunk:
        """A chunk of messages; with ``ranges`` (a reread) only offsets inside them, else
        only offsets past what was read or stored (a partition sought back)."""
        rows: list[Any] = []
        bad: list[BadRecord] = []
        headers: list[Mapping[str, str]] = []
        wheres: list[str] = []
        span: dict[int, list[int]] = {}
        for m in messages:
            p, off = m.partition(), m.offset()
            if p is None or off is None:
                continue
            if ranges is None:
                floor = max(self._read.get(p, -1), self._stored.get(p, -1))
                if off < floor:
                    continue
                self._read[p] = off + 1
            elif not ranges[p][0] <= off < ranges[p][1]:
                continue
            where = f"kafka topic {self.topic} partition {p} offset {off}"
            value = m.value()
            try:
                if value is None:
                    raise ValueError("has no value (a tombstone)")
                row = json.loads(value)
            except ValueError as exc:
                reason = str(exc) if value is None else f"is not JSON: {exc}"
                bad.append(BadRecord(where, _text(value), reason, len(rows) + len(bad)))
            else:
                rows.append(row)
                raw = m.headers() or ()
                pairs = raw.items() if isinstance(raw, dict) else raw
                headers.append({k: _text(v) for k, v in pairs})
                wheres.append(where)
            seen = span.setdefault(p, [off, off + 1])
            seen[0], seen[1] = min(seen[0], off), max(seen[1], off + 1)
        return Chunk(rows, {str(p): span[p] for p in sorted(span)}, bad, headers, wheres)

    def _check(self, m: Message) -> bool:
        """True when ``m`` is a record; raises on errors that stop the stream."""
        err = m.error()
        if err is None:
            return True
        ck = _client()
        if err.code() == ck.KafkaError._PARTITION_EOF:
            return False
        if err.fatal() or err.code() in (
            ck.KafkaError.UNKNOWN_TOPIC_OR_PART,
            ck.KafkaError._UNKNOWN_TOPIC,
            ck.KafkaError.TOPIC_AUTHORIZATION_FAILED,
            ck.KafkaError.GROUP_AUTHORIZATION_FAILED,
        ):
            raise self._error(f"cannot read: {err.str()}", retryable=err.retriable())
        _log.warning("%s: %s (librdkafka retries)", self.describe(), err.str())
        return False

    def read(self, max_rows: int, timeout: float) -> Chunk:
        """Up to ``max_rows`` records: waits up to ``timeout`` for the first, then takes
        what the client already fetched."""
        consumer = self._consumer()
        ck = _client()
        try:
            first = consumer.poll(max(timeout, 0.0))
            got = [] if first is None else [first]
            if got and max_rows > 1:
                got.extend(consumer.consume(max_rows - 1, 0))
        except ck.KafkaException as exc:
            raise self._error(f"cannot read: {_why(exc)}", retryable=True) from exc
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        chunk = self._records([m for m in got if self._check(m)], None)
        if not chunk.size:
            return chunk
        # Every partition held is in the span, those without records as an empty range at
        # their next offset: the position after any batch then covers them all (a restart
        # opens after its last uncommitted batch, by that batch's span alone).
        span = dict(chunk.span)
        for p in self._assigned:
            at = max(self._read.get(p, -1), self._stored.get(p, -1))
            if str(p) not in span and at >= 0:
                span[str(p)] = [at, at]
        return attrs.evolve(chunk, span={k: span[k] for k in sorted(span, key=int)})

    def join(self, chunks: Sequence[Chunk]) -> Chunk:
        """Chunks read in a row as one: their spans merged per partition."""
        joined = super().join(chunks)
        if len(chunks) == 1:
            return joined
        ends = self._ends([c.span for c in chunks])
        return Chunk(
            joined.rows,
            {str(p): list(ends[p]) for p in sorted(ends)},
            joined.bad,
            joined.headers,
            joined.wheres,
        )

    def reread(self, span: Any) -> Chunk:
        """Exactly the offsets of ``span``, fetched by a consumer assigned them."""
        ck = _client()
        ranges = {p: r for p, r in self._ends(span).items() if r[0] < r[1]}
        if not ranges:
            return Chunk([], {})
        if self._replayer is None:
            settings = {**self.config, "enable.partition.eof": True, "auto.offset.reset": "error"}
            try:
                self._replayer = ck.Consumer(settings, logger=_log)
            except ck.KafkaException as exc:
                raise self._error(f"cannot connect: {_why(exc)}", retryable=True) from exc
        replayer = self._replayer
        replayer.assign([ck.TopicPartition(self.topic, p, r[0]) for p, r in ranges.items()])
        todo = set(ranges)
        got: list[Message] = []
        deadline = time.monotonic() + self.reread_timeout
        try:
            while todo:
                if time.monotonic() > deadline:
                    raise self._error(
                        f"cannot read offsets {self._ranges(ranges, todo)} again within "
                        f"{self.reread_timeout} s",
                        retryable=True,
                    )
                for m in replayer.consume(1000, 0.2):
                    p, off = m.partition(), m.offset()
                    if p not in todo or off is None:
                        continue
                    err = m.error()
                    if err is not None and err.code() != ck.KafkaError._PARTITION_EOF:
                        raise self._error(
                            f"cannot read offsets {self._ranges(ranges, {p})} again: "
                            f"{err.str()} (removed by retention?)"
                        )
                    if err is not None:  # the partition's end
                        if off < ranges[p][1]:
                            raise self._error(
                                f"offsets {self._ranges(ranges, {p})} are gone: the "
                                f"partition ends at {off}"
                            )
                        todo.discard(p)
                        continue
                    if off >= ranges[p][1] - 1:
                        todo.discard(p)
                    got.append(m)
        except ck.KafkaException as exc:
            raise self._error(f"cannot read again: {_why(exc)}", retryable=True) from exc
        finally:
            replayer.unassign()
        return self._records(got, ranges)

    def _ranges(self, ranges: Mapping[int, tuple[int, int]], parts: Iterable[int]) -> str:
        return ", ".join(f"partition {p} [{ranges[p][0]}, {ranges[p][1]})" for p in sorted(parts))

    def position(self, span: Any) -> dict[str, int]:
        """The next offset of every partition stored so far, ``span`` included."""
        ends = dict(self._stored)
        for p, (_, end) in self._ends(span).items():
            ends[p] = max(end, ends.get(p, 0))
        return self._position(ends)

    def ack(self, span: Any) -> None:
        """Commit the span's offsets to Kafka (synchronously), for the partitions this
        consumer still holds; the ones it lost are the new owner's to commit."""
        self._store({p: end for p, (_, end) in self._ends(span).items()})

    def committed(self, position: Any) -> None:
        """A position the checkpoint holds as committed (this consumer's, or a dead one's
        before its takeover): its offsets are stored, so commit them to Kafka for the
        partitions held (the others when the group gives them to this consumer)."""
        self._store(self._offsets(position))

    def _store(self, ends: Mapping[int, int]) -> None:
        """Record ``ends`` as stored; commit those past Kafka's for the partitions held."""
        ck = _client()
        mine: list[TopicPartition] = []
        for p, end in ends.items():
            self._stored[p] = max(end, self._stored.get(p, 0))
            if p in self._assigned and self._stored[p] > self._committed.get(p, -1):
                mine.append(ck.TopicPartition(self.topic, p, self._stored[p]))
        if mine:
            self._commit(mine)

    def _commit(self, offsets: list[TopicPartition]) -> None:
        ck = _client()
        try:
            done = self._consumer().commit(offsets=offsets, asynchronous=False)
        except ck.KafkaException as exc:
            err = exc.args[0]
            if err.name() in _LOST_MEMBERSHIP:
                _log.info("%s: offsets not committed, the group rebalanced: %s", self.key, err)
                return
            raise self._error(f"cannot commit offsets: {err.str()}", retryable=True) from exc
        for tp in done or offsets:
            if tp.error is not None:
                if tp.error.name() in _LOST_MEMBERSHIP:
                    continue
                raise self._error(
                    f"cannot commit partition {tp.partition} offset {tp.offset}: {tp.error.str()}",
                    retryable=True,
                )
            self._committed[tp.partition] = max(tp.offset, self._committed.get(tp.partition, 0))

    def takeovers(self) -> Sequence[Takeover]:
        """The group's other consumers whose intents hold records of partitions given
        to this one since the last call (see ``peers``)."""
        taken, self._taken = self._taken, []
        return taken

    def without(self, span: Any, spans: Sequence[Any]) -> Any:
        """Nothing: a takeover's span is its peer's intents, replayed whole (or already
        committed by someone), and what comes after them is read by the group as usual."""
        return None

    def lag(self) -> int | None:
        """Records past what was read in the partitions held (the high watermarks the
        last fetches reported), or None before any is known."""
        if self._main is None:
            return None
        ck = _client()
        total: int | None = None
        for p in sorted(self._assigned):
            try:
                marks = self._main.get_watermark_offsets(
                    ck.TopicPartition(self.topic, p), cached=True
                )
            except ck.KafkaException:
                continue
            if marks is None or marks[1] < 0:
                continue
            at = max(self._read.get(p, 0), self._stored.get(p, 0))
            total = (total or 0) + max(marks[1] - at, 0)
        return total

    def close(self) -> None:
        """Leave the group and close both consumers."""
        ck = _client()
        main, replayer = self._main, self._replayer
        self._main = self._replayer = None
        self._assigned.clear()
        try:
            if replayer is not None:
                replayer.close()
            if main is not None:
                main.close()
        except (ck.KafkaException, RuntimeError) as exc:
            raise self._error(f"cannot close: {exc}") from exc
