"""A Redis Streams source (extra ``kisflow[redis]``): one consumer of a consumer group.

It reads with ``XREADGROUP`` as consumer ``consumer`` of group ``group`` (an existing
group is used as it is; a missing one is created with ``MKSTREAM`` at ``start``, ``0``
by default: the whole stream). The group's pending entries list (PEL) is the real
cursor: an entry read stays pending until the stream has committed its batch, then it
is ``XACK``\\ ed.

**Spans** are the batch's entry ids, packed: a list of strings, each one id
(``"1700000000000-5"``) or a run of ids of one millisecond (``"1700000000000-5+99"``:
``-5`` to ``-104``, all of them in the batch). A run is exact: no other id can lie
between two consecutive sequence numbers, so ``XRANGE`` over a run returns exactly its
entries (``reread``, whoever owns them now).

**Positions** are ``{"last": <the batch's highest id>, "ids": <its span>}``: the ids are
there so that a restart after a crash between the commit and the ``XACK`` acks them
instead of running them again.

**Opening** acks the committed position's ids (at the first read, unless the stream re-read
them: then it was an intent's), then, before any new entry, re-delivers
this consumer's own pending entries (``XREADGROUP`` from id 0) except those the stream
replayed from its checkpoint (``reread``) and those taken over from a dead consumer.

**Takeover**: every ``claim_every`` seconds (between batches) the entries other
consumers left pending longer than ``min_idle`` seconds are found (``XPENDING ... IDLE``)
and claimed (``XCLAIM`` with the same ``min_idle``, so of two live consumers only one
gets each entry); they are reported per dead consumer as
``Takeover(key=<its source key>, span=<ids>)``. ``XAUTOCLAIM`` would claim them in one
call but does not say whose they were, and the stream needs that to replay the dead
consumer's checkpoint intents under its key. Claims are noted in the hash
``kisflow:claims:<stream>:<group>`` first, so a consumer that crashes while replaying a
takeover reports it again when it restarts.

**Messages → rows**: the header fields (``traceparent``, ``tracestate`` by default) go
to ``Chunk.headers``; if one field is left and it is named ``data``, ``json`` or ``row``
(the redis connector's stream Save writes ``row``), its value is parsed as JSON and is
the row; otherwise the row is the dict of fields (str to str). A message that is not
UTF-8 or whose JSON field is not JSON is a ``BadRecord`` with its text; an entry deleted
from the stream while pending (trimmed) is a ``BadRecord`` too, so it never blocks the
stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn, overload

from kisflow.errors import MissingExtraError, SourceError
from kisflow.sources._base import BadRecord, Chunk, Source, Takeover

__all__ = ["RedisStreamSource", "from_url"]

_JSON_FIELDS = ("data", "json", "row")
_HEADER_FIELDS = ("traceparent", "tracestate")
_DECODER = json.JSONDecoder()
_ACK_CHUNK = 10_000
"""Ids per XACK command (a pipeline sends several)."""


def _parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def pack_ids(ids: Sequence[str]) -> list[str]:
    """Entry ids (in read order) as a span: consecutive ids of one millisecond as runs."""
    out: list[str] = []
    prefix = following = ""
    start = end = 0
    for entry_id in ids:
        if entry_id == following:  # the next id of the run (most ids of a busy stream)
            end += 1
            following = prefix + str(end + 1)
            continue
        if prefix:
            out.append(_run(prefix, start, end))
        ms, _, seq = entry_id.partition("-")
        prefix = ms + "-"
        start = end = int(seq)
        following = prefix + str(end + 1)
    if prefix:
        out.append(_run(prefix, start, end))
    return out


def _run(prefix: str, start: int, end: int) -> str:
    return f"{prefix}{start}" if start == end else f"{prefix}{start}+{end - start}"


def _runs(span: Any) -> Iterator[tuple[str, str, int]]:
    """``(first id, last id, count)`` for each run of a span (or of a position, or of
    a list of spans)."""
    if isinstance(span, Mapping):
        span = span.get("ids", ())
    if isinstance(span, str):
        span = (span,)
    for item in span:
        if not isinstance(item, str):
            yield from _runs(item)
            continue
        first, plus, more = item.partition("+")
        if not plus:
            yield first, first, 1
            continue
        ms, _, seq = first.partition("-")
        extra = int(more)
        yield first, f"{ms}-{int(seq) + extra}", extra + 1


def unpack_ids(span: Any) -> list[str]:
    """The entry ids a span covers, in its order."""
    ids: list[str] = []
    for first, _last, count in _runs(span):
        if count == 1:
            ids.append(first)
        else:
            ms, _, seq = first.partition("-")
            start = int(seq)
            ids.extend(f"{ms}-{s}" for s in range(start, start + count))
    return ids


class _Wheres(Sequence[str]):
    """``redis stream S id X`` per row, made only when an error asks for one."""

    __slots__ = ("_ids", "_stream")

    def __init__(self, stream: str, ids: list[str]) -> None:
        self._stream = stream
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [f"redis stream {self._stream} id {i}" for i in self._ids[index]]
        return f"redis stream {self._stream} id {self._ids[index]}"


class RedisStreamSource(Source):
    """Entries of a Redis stream read as one consumer of a consumer group.

    Args:
        url: a ``redis://host:port/db`` (or ``rediss://``, ``unix://``) URL.
        stream: the stream's key.
        group: the consumer group; used as it is when it exists, else created at ``start``.
        consumer: this consumer's name, stable across restarts (its checkpoint key).
        min_idle: seconds an entry of another consumer must have been pending untouched
            before this one takes it over; None: never take over.
        start: where a group created here starts: ``"0"`` (the whole stream) or ``"$"``
            (only entries added from now on), or an entry id.
        claim_every: seconds between two looks for entries to take over (default:
            ``min_idle / 2``, at most 5).
        claim_count: entries taken over at most per look.
        json_fields: the field names whose single value is a JSON row.
        header_fields: the fields that are message headers (``Chunk.headers``), not row.
        timeout: socket timeout in seconds for commands (a blocking read waits less).
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str,
        group: str,
        consumer: str,
        min_idle: float | None = 60.0,
        start: str = "0",
        claim_every: float | None = None,
        claim_count: int = 10_000,
        json_fields: Sequence[str] = _JSON_FIELDS,
        header_fields: Sequence[str] = _HEADER_FIELDS,
        timeout: float = 10.0,
    ) -> None:
        for name, value in (("stream", stream), ("group", group), ("consumer", consumer)):
            if not isinstance(value, str) or not value:
                raise self._config_error(url, f"{name} must be a non-empty string, got {value!r}")
        if min_idle is not None and not min_idle > 0:
            raise self._config_error(url, f"min_idle must be > 0 seconds or None, got {min_idle!r}")
        if claim_count < 1:
            raise self._config_error(url, f"claim_count must be >= 1, got {claim_count!r}")
        if not timeout > 0:
            raise self._config_error(url, f"timeout must be > 0 seconds, got {timeout!r}")
        self.url = url
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.min_idle = min_idle
        self.start = start
        if claim_every is None:
            claim_every = 5.0 if min_idle is None else min(min_idle / 2, 5.0)
        self.claim_every = claim_every
        self.claim_count = claim_count
        self.timeout = timeout
        self._json_fields = frozenset(f.encode() for f in json_fields)
        self._header_fields = frozenset(f.encode() for f in header_fields)
        self._client: Any = None
        self._base = self._key_base(url)
        self._replayed: set[str] = set()
        """Ids re-read since open (intents): never delivered again as new."""
        self._claimed: set[str] = set()
        """Ids taken over since open (or re-reported at open): not in the backlog."""
        self._done: set[str] = set()
        """Ids of committed positions (``committed``): never delivered again."""
        self._backlog: str | None = None
        """The id after which this consumer's own pending entries are re-delivered, or
        None once they all have been."""
        self._reports: list[Takeover] = []
        self._next_claim = 0.0
        self._opened_at: list[str] = []
        self._stream_b = stream.encode()
        self._claims_key = f"kisflow:claims:{stream}:{group}"

    # -- naming ----------------------------------------------------------------------

    @staticmethod
    def _config_error(url: str, text: str) -> SourceError:
        return SourceError(f"redis stream source at {url!r}: {text}", source=f"redis:{url}")

    def _key_base(self, url: str) -> str:
        try:
            from redis.connection import parse_url
        except ImportError as exc:
            raise MissingExtraError("redis", "redis", needed_by="sources.redis_stream") from exc
        try:
            kw = parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise self._config_error(url, f"is no redis URL ({exc})") from exc
        db = kw.get("db", 0)
        if "path" in kw:
            return f"redis:unix:{kw['path']}/{db}"
        return f"redis:{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{db}"

    def key_for(self, consumer: str) -> str:
        """The source key of ``consumer`` of this stream and group (its checkpoint key)."""
        return f"{self._base}/{self.stream}/{self.group}/{consumer}"

    @property
    def key(self) -> str:
        """``redis:HOST:PORT/DB/STREAM/GROUP/CONSUMER``."""
        return self.key_for(self.consumer)

    def describe(self) -> str:
        """The stream, group and consumer, as a user names them."""
        return (
            f"redis stream {self.stream!r} (group {self.group!r}, consumer "
            f"{self.consumer!r}) at {self._base.removeprefix('redis:')}"
        )

    def _fail(self, doing: str, exc: BaseException, position: Any = None) -> NoReturn:
        import redis

        retryable = isinstance(exc, redis.ConnectionError | redis.TimeoutError)
        raise SourceError(
            f"{self.describe()}: cannot {doing}: {exc}",
            source=self.key,
            position=position,
            retryable=retryable,
        ) from exc

    # -- opening ---------------------------------------------------------------------

    def open(self, position: Any | None) -> None:
        """Connect, make the group if it is missing, take up an unfinished takeover, and
        queue this consumer's own pending entries for re-delivery; ``position``'s ids are
        acked at the first read unless the stream re-reads them first."""
        import redis

        try:
            client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                decode_responses=False,
            )
        except ValueError as exc:
            raise self._config_error(self.url, f"is no redis URL ({exc})") from exc
        self._client = client
        try:
            try:
                client.xgroup_create(self._stream_b, self.group, id=self.start, mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._recover_claims()
        except redis.RedisError as exc:
            self._fail("open the group", exc, position)
        self._replayed.clear()
        self._backlog = "0"
        # The position is the last committed batch's (acked at the first read: the crash
        # may have come before its XACK) unless the stream re-reads it (then it was an
        # intent's: not committed, and it must stay pending until it is).
        self._opened_at = [] if position is None else unpack_ids(position)

    def _recover_claims(self) -> None:
        """Report again the takeovers a previous run of this consumer had not finished."""
        raw = self._client.hget(self._claims_key, self.consumer)
        if raw is None:
            return
        try:
            noted: dict[str, list[str]] = json.loads(raw)
            if not isinstance(noted, dict):
                raise ValueError(f"a {type(noted).__name__}, not an object")
        except ValueError as exc:
            raise SourceError(
                f"{self.describe()}: the takeover note in hash {self._claims_key!r} field "
                f"{self.consumer!r} is not kisflow's ({exc}); delete that field to go on",
                source=self.key,
            ) from exc
        mine = self._own_pending()
        kept: dict[str, list[str]] = {}
        for owner, span in noted.items():
            ids = [i for i in unpack_ids(span) if i in mine]
            if ids:
                kept[owner] = pack_ids(ids)
                self._claimed.update(ids)
                self._reports.append(Takeover(key=self.key_for(owner), span=kept[owner]))
        if kept:
            self._client.hset(self._claims_key, self.consumer, json.dumps(kept))
        else:
            self._client.hdel(self._claims_key, self.consumer)

    def _own_pending(self) -> set[str]:
        ids: set[str] = set()
        after = "-"
        while True:
            page = self._client.xpending_range(
                self._stream_b, self.group, after, "+", 10_000, consumername=self.consumer
            )
            if not page:
                return ids
            for entry in page:
                ids.add(entry["message_id"].decode())
            after = "(" + page[-1]["message_id"].decode()

    # -- reading ---------------------------------------------------------------------

    def read(self, max_rows: int, timeout: float) -> Chunk:
        """Up to ``max_rows`` entries: first this consumer's own pending ones, then new
        ones (``XREADGROUP ... >``), waiting at most ``timeout`` seconds for them."""
        if self._opened_at:
            self._settle()
        client = self._client
        try:
            while self._backlog is not None:
                reply = client.xreadgroup(
                    self.group, self.consumer, {self._stream_b: self._backlog}, count=max_rows
                )
                entries = reply[0][1] if reply else []
                if not entries:
                    self._backlog = None
                    break
                self._backlog = entries[-1][0].decode()
                skip = self._replayed | self._claimed | self._done
                if skip:
                    entries = [e for e in entries if e[0].decode() not in skip]
                if entries:
                    return self._chunk(entries)
            block = int(timeout * 1000)
            reply = client.xreadgroup(
                self.group,
                self.consumer,
                {self._stream_b: ">"},
                count=max_rows,
                block=min(block, int(self.timeout * 500)) if block > 0 else None,
            )
        except Exception as exc:
            self._fail("read", exc)
        if not reply:
            return Chunk([], [])
        return self._chunk(reply[0][1])

    def _chunk(self, entries: Sequence[tuple[bytes, Mapping[bytes, bytes] | None]]) -> Chunk:
        rows: list[Any] = []
        bad: list[BadRecord] = []
        ids = [raw_id.decode() for raw_id, _ in entries]
        headers: list[Mapping[str, str]] | None = None
        json_fields = self._json_fields
        header_fields = self._header_fields
        decode = _DECODER.decode
        append = rows.append
        for index, (_raw_id, fields) in enumerate(entries):
            if fields is not None and len(fields) == 1 and headers is None:
                # The common case first: one field, no headers so far.
                ((name, value),) = fields.items()
                try:
                    if name in json_fields:
                        append(decode(value.decode()))
                    else:
                        append({name.decode(): value.decode()})
                    continue
                except (ValueError, RecursionError) as exc:
                    bad.append(self._bad(ids[index], index, fields, exc))
                    continue
            if not fields:
                bad.append(self._gone(ids[index], index))
                continue
            head: dict[str, str] | None = None
            if header_fields and len(fields) > 1 and not header_fields.isdisjoint(fields):
                fields = dict(fields)
                head = {}
                for name in header_fields & fields.keys():
                    head[name.decode("utf-8", "backslashreplace")] = fields.pop(name).decode(
                        "utf-8", "backslashreplace"
                    )
            row: Any
            try:
                if len(fields) == 1:
                    ((name, value),) = fields.items()
                    if name in json_fields:
                        row = decode(value.decode())
                    else:
                        row = {name.decode(): value.decode()}
                else:
                    row = {k.decode(): v.decode() for k, v in fields.items()}
            except (ValueError, RecursionError) as exc:
                bad.append(self._bad(ids[index], index, fields, exc))
                continue
            if head is not None or headers is not None:
                if headers is None:
                    headers = [{} for _ in rows]
                headers.append(head or {})
            append(row)
        row_ids = ids
        if bad:
            skip = {b.index for b in bad}
            row_ids = [i for n, i in enumerate(ids) if n not in skip]
        return Chunk(rows, pack_ids(ids), bad, headers, _Wheres(self.stream, row_ids))

    def _gone(self, entry_id: str, index: int) -> BadRecord:
        return BadRecord(
            where=f"redis stream {self.stream} id {entry_id}",
            text="",
            reason="is gone from the stream (deleted or trimmed while pending)",
            index=index,
        )

    def _bad(
        self, entry_id: str, index: int, fields: Mapping[bytes, bytes], exc: BaseException
    ) -> BadRecord:
        shown = {
            k.decode("utf-8", "backslashreplace"): v.decode("utf-8", "backslashreplace")
            for k, v in fields.items()
        }
        if len(shown) == 1 and next(iter(fields)) in self._json_fields:
            text = next(iter(shown.values()))
        else:
            text = json.dumps(shown, ensure_ascii=False)
        if isinstance(exc, UnicodeDecodeError):
            reason = f"is not UTF-8 (byte {exc.start + 1}: {exc.reason})"
        elif isinstance(exc, json.JSONDecodeError):
            reason = f"is not JSON: {exc.msg} at column {exc.colno}"
        elif isinstance(exc, RecursionError):
            reason = "is nested too deeply to read as JSON"
        else:
            reason = f"cannot be read as JSON: {exc}"
        return BadRecord(
            where=f"redis stream {self.stream} id {entry_id}", text=text, reason=reason, index=index
        )

    def join(self, chunks: Sequence[Chunk]) -> Chunk:
        """One chunk of several: rows, bad records and ids in read order."""
        if len(chunks) == 1:
            return chunks[0]
        rows: list[Any] = []
        bad: list[BadRecord] = []
        span: list[str] = []
        row_ids: list[str] = []
        headers: list[Mapping[str, str]] | None = None
        if any(c.headers is not None for c in chunks):
            headers = []
        for chunk in chunks:
            offset = len(rows) + len(bad)
            if chunk.bad:
                bad.extend(
                    BadRecord(b.where, b.text, b.reason, b.index + offset) for b in chunk.bad
                )
            if headers is not None:
                headers.extend(chunk.headers or [{} for _ in chunk.rows])
            rows.extend(chunk.rows)
            span.extend(chunk.span)
            wheres = chunk.wheres
            if isinstance(wheres, _Wheres):
                row_ids.extend(wheres._ids)
        return Chunk(rows, span, bad, headers, _Wheres(self.stream, row_ids))

    def reread(self, span: Any) -> Chunk:
        """Exactly the entries of ``span`` (``XRANGE`` per run, pipelined), whoever owns
        them; an entry no longer in the stream is a ``BadRecord``."""
        runs = list(_runs(span))
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for first, last, count in runs:
                    pipe.xrange(self._stream_b, first, last, count=count)
                replies = pipe.execute()
        except Exception as exc:
            self._fail("re-read a batch", exc, span)
        found: dict[str, Mapping[bytes, bytes]] = {}
        for reply in replies:
            for raw_id, fields in reply:
                found[raw_id.decode()] = fields
        ids = unpack_ids(span)
        self._replayed.update(ids)
        return self._chunk([(i.encode(), found.get(i)) for i in ids])

    def position(self, span: Any) -> Any:
        """``{"last": <highest id>, "ids": span}``; the group's PEL is the real cursor."""
        last = max((_parse_id(last) for _first, last, _n in _runs(span)), default=None)
        return {"last": None if last is None else f"{last[0]}-{last[1]}", "ids": span}

    def _settle(self) -> None:
        """Ack the ids of the position opened at that were not re-read (committed)."""
        ids = [i for i in self._opened_at if i not in self._replayed]
        self._opened_at = []
        if ids:
            self.committed(ids)

    def committed(self, position: Any) -> None:
        """A position the checkpoint holds as committed (this consumer's at open, or a
        dead one's before its takeover is replayed): ack its ids, in case the crash came
        between the commit and the ``XACK``, and never deliver them again (``without``)."""
        ids = unpack_ids(position)
        self._done.update(ids)
        self.ack(ids)

    def ack(self, span: Any) -> None:
        """``XACK`` the span's ids (one pipeline)."""
        ids = unpack_ids(span)
        if not ids:
            return
        try:
            if len(ids) <= _ACK_CHUNK:
                self._client.xack(self._stream_b, self.group, *ids)
                return
            with self._client.pipeline(transaction=False) as pipe:
                for at in range(0, len(ids), _ACK_CHUNK):
                    pipe.xack(self._stream_b, self.group, *ids[at : at + _ACK_CHUNK])
                pipe.execute()
        except Exception as exc:
            self._fail("acknowledge a batch", exc, span)

    # -- taking over -----------------------------------------------------------------

    def takeovers(self) -> Sequence[Takeover]:
        """Entries other consumers left pending over ``min_idle`` seconds, now this
        consumer's, one ``Takeover`` per previous owner (looked for every
        ``claim_every`` seconds)."""
        if self._opened_at:
            self._settle()
        reports, self._reports = self._reports, []
        if self.min_idle is None:
            return reports
        now = time.monotonic()
        if now < self._next_claim:
            return reports
        self._next_claim = now + self.claim_every
        idle_ms = int(self.min_idle * 1000)
        try:
            page = self._client.xpending_range(
                self._stream_b, self.group, "-", "+", self.claim_count, idle=idle_ms
            )
            owners: dict[str, list[str]] = {}
            for entry in page:
                owner = entry["consumer"].decode()
                if owner != self.consumer:
                    owners.setdefault(owner, []).append(entry["message_id"].decode())
            if not owners:
                return reports
            self._note_claims({o: pack_ids(ids) for o, ids in owners.items()})
            for owner, ids in owners.items():
                got = self._client.xclaim(
                    self._stream_b, self.group, self.consumer, idle_ms, ids, justid=True
                )
                claimed = [g.decode() for g in got]
                if claimed:
                    self._claimed.update(claimed)
                    reports.append(Takeover(key=self.key_for(owner), span=pack_ids(claimed)))
        except Exception as exc:
            self._fail("take over pending entries", exc)
        return reports

    def _note_claims(self, claims: dict[str, list[str]]) -> None:
        """Add ``claims`` to this consumer's note (before claiming, so a crash in
        between leaves a note that open() reconciles with the PEL)."""
        raw = self._client.hget(self._claims_key, self.consumer)
        noted: dict[str, list[str]] = {} if raw is None else json.loads(raw)
        for owner, span in claims.items():
            noted[owner] = [*noted.get(owner, []), *span]
        self._client.hset(self._claims_key, self.consumer, json.dumps(noted))

    def without(self, span: Any, spans: Sequence[Any]) -> Any:
        """``span`` minus the ids of ``spans`` and of every batch re-read since open
        (a dead consumer's replayed intents), or None when nothing is left."""
        drop = set(unpack_ids(list(spans))) | self._replayed | self._done
        left = [i for i in unpack_ids(span) if i not in drop]
        return pack_ids(left) if left else None

    def lag(self) -> int | None:
        """Entries of the stream not yet delivered to the group (``XINFO GROUPS`` lag,
        Redis 7), or None when Redis cannot tell."""
        try:
            groups = self._client.xinfo_groups(self._stream_b)
        except Exception:
            return None
        for info in groups:
            name = info.get("name")
            if name in (self.group, self.group.encode()):
                lag = info.get("lag")
                return lag if isinstance(lag, int) else None
        return None

    def close(self) -> None:
        """Close the connection (pending entries stay pending for the next run)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


_URL_TEXT = ("stream", "group", "consumer", "start")
_URL_SECONDS = ("min_idle", "claim_every")


def from_url(url: str) -> RedisStreamSource:
    """The source a URL names, as the command line's ``--source`` gives it:
    ``redis://HOST:PORT/DB?stream=S&group=G&consumer=C`` (also ``min_idle=`` seconds or
    ``none``, ``start=``, ``claim_every=``); other query arguments stay redis-py's."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _URL_TEXT or name in _URL_SECONDS:
            ours[name] = value
        else:
            rest.append((name, value))
    base = urlunsplit(parts._replace(query=urlencode(rest)))
    missing = [name for name in ("stream", "group", "consumer") if not ours.get(name)]
    if missing:
        raise RedisStreamSource._config_error(
            base,
            f"needs {' and '.join(missing)} in its query, e.g. "
            f"redis://127.0.0.1:6379/0?stream=orders&group=billing&consumer=worker-1",
        )
    seconds: dict[str, float | None] = {}
    for name in _URL_SECONDS:
        if name in ours:
            text = ours[name]
            try:
                seconds[name] = None if text.lower() == "none" else float(text)
            except ValueError:
                raise RedisStreamSource._config_error(
                    base, f"{name} must be seconds or none, got {text!r}"
                ) from None
    return RedisStreamSource(
        base,
        stream=ours["stream"],
        group=ours["group"],
        consumer=ours["consumer"],
        start=ours.get("start", "0"),
        **seconds,  # type: ignore[arg-type]
    )
