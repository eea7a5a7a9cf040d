"""The Redis Streams source against a real redis-server: groups, decoding, spans, acks,
re-reads, re-delivery on open, takeovers of a dead consumer's entries, lag."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from kisflow import sources
from kisflow.errors import SourceError
from kisflow.sources import Chunk, Takeover
from kisflow.sources.redis import RedisStreamSource, from_url, pack_ids, unpack_ids
from tests.redisserver import free_port, redis_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with redis_server(tmp_path_factory.mktemp("redis")) as p:
        yield p


@pytest.fixture
def r(port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=port, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


def url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def source(port: int, consumer: str = "w1", **kw: Any) -> RedisStreamSource:
    kw.setdefault("min_idle", 60.0)
    return sources.redis_stream(
        url(port), stream="orders", group="billing", consumer=consumer, **kw
    )


def add(r: redis.Redis, n: int, start: int = 0) -> list[str]:
    with r.pipeline(transaction=False) as pipe:
        for i in range(start, start + n):
            pipe.xadd("orders", {"data": json.dumps({"id": i})})
        return [str(x) for x in pipe.execute()]


def read_all(src: RedisStreamSource, max_rows: int = 1000) -> list[Chunk]:
    chunks = []
    while True:
        chunk = src.read(max_rows, 0.0)
        if not chunk.size:
            return chunks
        chunks.append(chunk)


def pending(r: redis.Redis, consumer: str | None = None) -> list[str]:
    rows = r.xpending_range("orders", "billing", "-", "+", 1_000_000, consumername=consumer)
    return [p["message_id"] for p in rows]


class TestSpans:
    """Spans pack ids of one millisecond into runs and unpack to exactly the same ids."""

    def test_pack_and_unpack(self) -> None:
        ids = ["5-0", "5-1", "5-2", "5-4", "6-0", "6-1", "7-3", "5-3"]
        packed = pack_ids(ids)
        assert packed == ["5-0+2", "5-4", "6-0+1", "7-3", "5-3"]
        assert unpack_ids(packed) == ids
        assert unpack_ids([packed[:2], packed[2:]]) == ids  # a list of spans
        assert unpack_ids({"last": "7-3", "ids": packed}) == ids  # a position
        assert pack_ids([]) == []


class TestReading:
    """Entries come as rows in id order, with headers, span, position; acks empty the PEL."""

    def test_rows_headers_span_and_ack(self, port: int, r: redis.Redis) -> None:
        ids = add(r, 3)
        ids.append(r.xadd("orders", {"sku": "A-1", "qty": "2", "traceparent": "00-ab-cd-01"}))
        ids.append(r.xadd("orders", {"json": "[1, 2]"}))
        ids.append(r.xadd("orders", {"note": "hi"}))
        src = source(port)
        src.open(None)
        chunk = src.read(100, 0.1)
        assert chunk.rows == [
            {"id": 0},
            {"id": 1},
            {"id": 2},
            {"sku": "A-1", "qty": "2"},
            [1, 2],
            {"note": "hi"},
        ]
        assert chunk.headers == [{}, {}, {}, {"traceparent": "00-ab-cd-01"}, {}, {}]
        assert list(chunk.bad) == []
        assert unpack_ids(chunk.span) == ids
        assert chunk.wheres is not None
        assert chunk.wheres[4] == f"redis stream orders id {ids[4]}"
        assert src.position(chunk.span) == {"last": ids[-1], "ids": chunk.span}
        assert sorted(pending(r, "w1")) == sorted(ids)
        assert src.read(100, 0.0).size == 0
        src.ack(chunk.span)
        assert pending(r) == []
        src.close()

    def test_chunks_are_bounded_and_join(self, port: int, r: redis.Redis) -> None:
        ids = add(r, 25)
        r.xadd("orders", {"data": "{nope"})
        src = source(port)
        src.open(None)
        chunks = read_all(src, 10)
        assert [c.size for c in chunks] == [10, 10, 6]
        batch = src.join(chunks)
        assert batch.rows == [{"id": i} for i in range(25)]
        assert [b.index for b in batch.bad] == [25]
        assert unpack_ids(batch.span)[:25] == ids
        assert batch.wheres is not None
        assert len(batch.wheres) == 25
        src.ack(batch.span)
        assert pending(r) == []

    def test_a_blocking_read_waits_then_returns_an_empty_chunk(
        self, port: int, r: redis.Redis
    ) -> None:
        src = source(port)
        src.open(None)
        chunk = src.read(10, 0.2)
        assert (chunk.rows, chunk.span, chunk.bad) == ([], [], ())
        add(r, 2)
        assert src.read(10, 0.2).rows == [{"id": 0}, {"id": 1}]


class TestGroups:
    """A missing group is made (at ``start``); an existing one is used as it is."""

    def test_missing_group_and_stream_are_created_at_zero(self, port: int, r: redis.Redis) -> None:
        src = source(port)
        src.open(None)
        assert r.exists("orders") == 1
        assert [g["name"] for g in r.xinfo_groups("orders")] == ["billing"]
        add(r, 2)
        assert len(src.read(10, 0.0).rows) == 2

    def test_start_dollar_skips_history(self, port: int, r: redis.Redis) -> None:
        add(r, 5)
        src = source(port, start="$")
        src.open(None)
        assert src.read(10, 0.0).size == 0
        add(r, 1, start=5)
        assert src.read(10, 0.0).rows == [{"id": 5}]

    def test_an_existing_group_keeps_its_cursor(self, port: int, r: redis.Redis) -> None:
        add(r, 5)
        r.xgroup_create("orders", "billing", id="$")
        add(r, 2, start=5)
        src = source(port, start="0")
        src.open(None)
        assert src.read(10, 0.0).rows == [{"id": 5}, {"id": 6}]


class TestBadMessages:
    """Messages that are no row are bad records keeping their text; they are in the span."""

    def test_not_json_not_utf8_and_gone(self, port: int, r: redis.Redis) -> None:
        raw = redis.Redis(port=port)
        a = r.xadd("orders", {"data": '{"id": 1'})
        b = raw.xadd("orders", {b"name": b"caf\xe9"})
        c = raw.xadd("orders", {b"data": b'"\xff"'})
        d = add(r, 1)[0]
        src = source(port)
        src.open(None)
        chunk = src.read(10, 0.0)
        assert chunk.rows == [{"id": 0}]
        assert [(x.where, x.text, x.index) for x in chunk.bad] == [
            (f"redis stream orders id {a}", '{"id": 1', 0),
            (f"redis stream orders id {b.decode()}", '{"name": "caf\\\\xe9"}', 1),
            (f"redis stream orders id {c.decode()}", '"\\xff"', 2),
        ]
        assert chunk.bad[0].reason == "is not JSON: Expecting ',' delimiter at column 9"
        assert chunk.bad[1].reason.startswith("is not UTF-8 (byte 4:")
        assert unpack_ids(chunk.span) == [a, b.decode(), c.decode(), d]
        raw.close()

    def test_an_entry_deleted_while_pending_is_bad_on_reread(
        self, port: int, r: redis.Redis
    ) -> None:
        ids = add(r, 3)
        src = source(port)
        src.open(None)
        span = src.read(10, 0.0).span
        r.xdel("orders", ids[1])
        again = src.reread(span)
        assert again.rows == [{"id": 0}, {"id": 2}]
        assert [(b.where, b.index) for b in again.bad] == [(f"redis stream orders id {ids[1]}", 1)]
        assert "gone from the stream" in again.bad[0].reason


class TestRecovery:
    """After a crash: reread gives exactly a span; open acks the committed position and
    re-delivers this consumer's own pending entries that no intent covered."""

    def test_reread_exact_ids_whoever_owns_them(self, port: int, r: redis.Redis) -> None:
        add(r, 10)
        a, b = source(port, "a"), source(port, "b")
        a.open(None)
        b.open(None)
        first = a.read(4, 0.0)
        second = b.read(3, 0.0)
        a.ack(first.span)
        assert a.reread(second.span).rows == second.rows
        assert b.reread(first.span).rows == first.rows == [{"id": i} for i in range(4)]
        mixed = a.join([second, first])
        assert a.reread(mixed.span).rows == mixed.rows

    def test_open_redelivers_own_pending_but_not_replayed_or_committed(
        self, port: int, r: redis.Redis
    ) -> None:
        add(r, 30)
        src = source(port)
        src.open(None)
        committed = src.read(10, 0.0)  # committed, the crash came before its XACK
        intent = src.read(10, 0.0)  # in the checkpoint's intents
        lost = src.read(5, 0.0)  # read, no intent yet
        other = source(port, "w2")
        other.open(None)
        theirs = other.read(2, 0.0)
        src.close()

        again = source(port)
        again.open(src.position(committed.span))
        assert again.reread(intent.span).rows == intent.rows
        # Pages of 3 of its PEL, less the replayed ids: 19 is left out of 19..21.
        assert again.read(3, 0.0).rows == lost.rows[:2]
        # The committed position's ids were acked at that first read.
        assert sorted(pending(r, "w1")) == sorted(unpack_ids(intent.span) + unpack_ids(lost.span))
        assert again.read(100, 0.0).rows == lost.rows[2:]  # backlog done
        assert again.read(100, 0.0).rows == [{"id": i} for i in range(27, 30)]  # then new
        assert again.read(100, 0.0).size == 0
        assert theirs.rows == [{"id": 25}, {"id": 26}]

    def test_an_intents_position_stays_pending_until_acked(self, port: int, r: redis.Redis) -> None:
        add(r, 5)
        src = source(port)
        src.open(None)
        intent = src.read(5, 0.0)
        src.close()
        again = source(port)
        again.open(again.position(intent.span))  # what a stream passes with intents
        assert again.reread(intent.span).rows == intent.rows
        assert again.read(10, 0.0).size == 0
        assert again.takeovers() == []
        assert sorted(pending(r, "w1")) == sorted(unpack_ids(intent.span))
        again.ack(intent.span)
        assert pending(r) == []


class TestTakeover:
    """Entries a dead consumer left pending over min_idle become this one's, reported
    with the dead consumer's key; ``without`` leaves out its replayed intents."""

    def test_takeover_and_without(self, port: int, r: redis.Redis) -> None:
        add(r, 12)
        dead = source(port, "dead")
        dead.open(None)
        replayed = dead.read(4, 0.0)  # its intent in the shared checkpoint
        rest = dead.read(4, 0.0)
        dead.ack(dead.read(4, 0.0).span)  # committed and acked: not pending
        dead.close()
        live = source(port, "live", min_idle=0.2, claim_every=0.05)
        live.open(None)
        assert live.takeovers() == []  # not idle long enough yet
        time.sleep(0.3)
        (took,) = live.takeovers()
        assert isinstance(took, Takeover)
        assert took.key == f"redis:127.0.0.1:{port}/0/orders/billing/dead"
        assert unpack_ids(took.span) == unpack_ids(replayed.span) + unpack_ids(rest.span)
        assert sorted(pending(r, "live")) == sorted(unpack_ids(took.span))
        assert pending(r, "dead") == []
        assert live.reread(replayed.span).rows == replayed.rows
        left = live.without(took.span, [replayed.span])
        assert left is not None
        assert live.reread(left).rows == rest.rows
        assert live.without(took.span, [replayed.span, rest.span]) is None
        live.ack(took.span)
        assert pending(r) == []
        assert live.takeovers() == []

    def test_a_dead_consumers_committed_position_is_acked_and_left_out(
        self, port: int, r: redis.Redis
    ) -> None:
        add(r, 6)
        dead = source(port, "dead")
        dead.open(None)
        done = dead.read(3, 0.0)  # committed; the crash came before its XACK
        rest = dead.read(3, 0.0)
        live = source(port, "live", min_idle=0.1, claim_every=0.01)
        live.open(None)
        time.sleep(0.2)
        (took,) = live.takeovers()
        assert len(unpack_ids(took.span)) == 6
        live.committed(dead.position(done.span))
        assert sorted(pending(r)) == sorted(unpack_ids(rest.span))
        assert live.without(took.span, []) == rest.span

    def test_a_live_consumer_is_not_taken_over_and_none_disables(
        self, port: int, r: redis.Redis
    ) -> None:
        add(r, 4)
        busy = source(port, "busy", min_idle=0.3, claim_every=0.01)
        busy.open(None)
        busy.read(4, 0.0)
        never = source(port, "never", min_idle=None)
        never.open(None)
        other = source(port, "other", min_idle=0.3, claim_every=0.01)
        other.open(None)
        time.sleep(0.4)
        assert never.takeovers() == []
        assert busy.takeovers() == []  # its own idle entries are no takeover
        assert len(pending(r, "busy")) == 4
        assert [t.key.rsplit("/", 1)[1] for t in other.takeovers()] == ["busy"]

    def test_a_restart_reports_an_unfinished_takeover_again(
        self, port: int, r: redis.Redis
    ) -> None:
        add(r, 6)
        dead = source(port, "dead")
        dead.open(None)
        span = dead.read(6, 0.0).span
        live = source(port, "live", min_idle=0.1, claim_every=0.01)
        live.open(None)
        time.sleep(0.2)
        (took,) = live.takeovers()
        live.ack(unpack_ids(span)[:2])  # two done, then the crash
        live.close()
        again = source(port, "live", min_idle=0.1, claim_every=0.01)
        again.open(None)
        mine = unpack_ids(span)[2:4]  # the previous run began them as its own intent
        assert again.reread(mine).rows == [{"id": 2}, {"id": 3}]
        (took2,) = again.takeovers()
        assert took2.key == took.key
        assert unpack_ids(took2.span) == unpack_ids(span)[2:]
        assert unpack_ids(again.without(took2.span, [])) == unpack_ids(span)[4:]
        assert again.read(100, 0.0).size == 0  # not re-delivered as its own as well


class TestLagAndErrors:
    """lag() from XINFO GROUPS; errors are SourceErrors naming the source."""

    def test_lag(self, port: int, r: redis.Redis) -> None:
        add(r, 7)
        src = source(port)
        src.open(None)
        assert src.lag() == 7
        src.read(5, 0.0)
        assert src.lag() == 2

    def test_server_down_is_a_retryable_source_error(self) -> None:
        src = source(free_port(), timeout=1.0)
        with pytest.raises(SourceError, match="cannot open the group") as info:
            src.open(None)
        assert info.value.retryable is True
        assert info.value.source.endswith("/orders/billing/w1")

    def test_bad_arguments(self, port: int) -> None:
        with pytest.raises(SourceError, match="stream must be a non-empty string"):
            sources.redis_stream(url(port), stream="", group="g", consumer="c")
        with pytest.raises(SourceError, match="min_idle must be > 0"):
            sources.redis_stream(url(port), stream="s", group="g", consumer="c", min_idle=0)
        with pytest.raises(SourceError, match="is no redis URL"):
            sources.redis_stream("http://x", stream="s", group="g", consumer="c")

    def test_the_key_is_stable(self, port: int) -> None:
        src = sources.redis_stream(
            f"redis://127.0.0.1:{port}/3", stream="s", group="g", consumer="c"
        )
        assert src.key == f"redis:127.0.0.1:{port}/3/s/g/c"
        assert src.durable is True
        assert "group 'g'" in src.describe()


class TestMissingExtra:
    """Without redis-py the factory raises MissingExtraError; importing sources loads none."""

    def test_missing_redis(self) -> None:
        code = textwrap.dedent(
            """
            import json, sys
            sys.modules["redis"] = None
            import kisflow as kf
            from kisflow import sources
            try:
                sources.redis_stream("redis://127.0.0.1:1/0", stream="s", group="g", consumer="c")
            except kf.MissingExtraError as exc:
                print(json.dumps([exc.extra, exc.name, str(exc)]))
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr
        extra, name, message = json.loads(done.stdout)
        assert (extra, name) == ("redis", "redis")
        assert "pip install 'kisflow[redis]'" in message

    def test_importing_sources_loads_no_redis(self) -> None:
        code = "import sys, kisflow, kisflow.sources; print('redis' in sys.modules)"
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        assert done.stdout.strip() == "False", done.stderr


class TestInAStream:
    """The source under ``flow.stream``: rows stored, bad messages dead letters, a rerun
    with the same checkpoint stores nothing again and leaves nothing pending."""

    def test_stream_into_sqlite_with_letters(
        self, port: int, r: redis.Redis, tmp_path: Path
    ) -> None:
        import sqlite3

        import kisflow as kf

        add(r, 250)
        bad_id = r.xadd("orders", {"data": "{broken"})
        add(r, 50, start=250)
        conn = kf.ConnConfig(cname="db", type="sqlite", addrs=str(tmp_path / "o.db"), key="o")
        flow = kf.FlowBuilder("orders-redis").save("Store", conn=conn).build()
        letters: list[kf.DeadLetter] = []
        ckpt = tmp_path / "o.ckpt.db"
        with flow.stream(
            source(port),
            batch_size=100,
            checkpoint=ckpt,
            idle_timeout=0.3,
            dead_letters=letters,
            delivery="exactly-once",
            progress=False,
        ) as stream:
            sizes = [len(result.output) for result in stream]
        assert sum(sizes) == 300
        assert stream.committed == 301
        assert [(x.row, x.reason) for x in letters] == [("{broken", "bad record")]
        assert f"redis stream orders id {bad_id}" in letters[0].error
        assert "is not JSON" in letters[0].error
        assert pending(r) == []
        with flow.stream(
            source(port), batch_size=100, checkpoint=ckpt, idle_timeout=0.2, progress=False
        ) as again:
            assert list(again) == []
        with sqlite3.connect(tmp_path / "o.db") as db:
            ids = [i for (i,) in db.execute("SELECT id FROM o ORDER BY id")]
        assert ids == list(range(300))


class TestFromUrl:
    """A ``--source`` URL names stream, group and consumer in its query."""

    def test_a_url_with_its_query(self, port: int, r: redis.Redis) -> None:
        src = from_url(
            f"redis://127.0.0.1:{port}/0?stream=orders&group=billing&consumer=w9"
            "&min_idle=2.5&start=%24&socket_keepalive=true"
        )
        assert src.key == f"redis:127.0.0.1:{port}/0/orders/billing/w9"
        assert (src.min_idle, src.start, src.claim_every) == (2.5, "$", 1.25)
        assert src.url == f"redis://127.0.0.1:{port}/0?socket_keepalive=true"
        add(r, 2)
        src.open(None)  # at "$": the two entries are history
        assert src.read(10, 0.0).size == 0
        assert from_url("redis://h:1/0?stream=s&group=g&consumer=c&min_idle=none").min_idle is None

    def test_bad_urls(self) -> None:
        with pytest.raises(SourceError, match="needs group and consumer in its query"):
            from_url("redis://127.0.0.1:6379/0?stream=orders")
        with pytest.raises(SourceError, match="min_idle must be seconds or none, got 'soon'"):
            from_url("redis://h:1/0?stream=s&group=g&consumer=c&min_idle=soon")


def test_a_corrupt_takeover_note_is_a_source_error(port: int, r: redis.Redis) -> None:
    r.hset("kisflow:claims:orders:billing", "w1", "[1, 2")
    with pytest.raises(
        SourceError, match="the takeover note in hash 'kisflow:claims:orders:billing'"
    ):
        source(port).open(None)
