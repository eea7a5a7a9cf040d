"""Durable streams: checkpoints, replayed intents, ordered commits, bad records, delivery.

The engine is tested against ``ListSource`` (tests/streamkill.py), a durable source over
a fixed list, and the built-in SQLite Save; the kill tests run a child process and
SIGKILL it at seeded random moments.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kisflow as kf
from kisflow.checkpoint import FORMAT, Batch, Checkpoint, Intent
from kisflow.observers import Observer, StreamStatus
from kisflow.sources import Chunk, Takeover
from tests.streamkill import TESTS, ListSource, count_rows, kill_loop, write_child


@pytest.fixture(autouse=True)
def _ident(pool: Any) -> None:
    """``Id``: a stage passing its rows on, for flows that need some stage."""

    @kf.faas("Id", replace=True)
    def ident(flow: kf.Flow, rows: list[Any]) -> None:
        flow.commit_row_batch(rows)


def _stored(db: Path, table: str = "rows") -> dict[object, int]:
    return count_rows(db, table, "v")


def _store_flow(db: Path, *, fail: Any = None, name: str = "durable") -> kf.Flow:
    """Verify -> Calculate -> the built-in SQLite Save (records batch keys)."""

    @kf.faas("Check", replace=True)
    def check(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(rows)

    @kf.faas("Price", replace=True)
    def price(flow: kf.Flow, rows: list[int]) -> None:
        if fail is not None:
            fail(rows)
        flow.commit_row_batch({"v": r} for r in rows)

    conn = kf.ConnConfig(cname="DB", type="sqlite", addrs=str(db), key="rows")
    return kf.FlowBuilder(name).verify("Check").calculate("Price").save("Store", conn=conn).build()


def _gated_rows(gate: threading.Event) -> Iterator[int]:
    """Rows 0..2, then 3..4 only once ``gate`` is set (or after 10 s): a slow generator."""
    yield from (0, 1, 2)
    gate.wait(10)  # the next row comes only once the first batch is out
    yield from (3, 4)


def _record_batch_keys(name: str, keys: list[str]) -> None:
    """Registers ``name``: a stage passing its rows on and noting each batch's key."""

    @kf.faas(name)
    def see(flow: kf.Flow, rows: list[Any]) -> None:
        batch = kf.current_batch()
        assert batch is not None
        keys.append(batch.key)
        flow.commit_row_batch(rows)


class TestCheckpointStore:
    """The SQLite store: intents, commits, keys, and errors naming the file."""

    def test_begin_commit_load(self, tmp_path: Path) -> None:
        ckpt = Checkpoint(tmp_path / "c.db")
        assert ckpt.load("k") is None
        assert ckpt.next_seq("k") == 1
        ckpt.begin("k", 1, [0, 10])
        ckpt.begin("k", 2, [10, 20])
        assert ckpt.intents("k") == [Intent(1, [0, 10]), Intent(2, [10, 20])]
        assert ckpt.next_seq("k") == 3
        ckpt.commit("k", 1, 10, rows=10)
        saved = ckpt.load("k")
        assert saved is not None
        assert (saved.position, saved.seq, saved.committed) == (10, 1, 10)
        assert ckpt.intents("k") == [Intent(2, [10, 20])]
        ckpt.commit("k", 2, {"p": 20}, rows=7, state={"s": 1})
        saved = ckpt.load("k")
        assert saved is not None
        assert (saved.position, saved.seq, saved.committed, saved.state) == (
            {"p": 20},
            2,
            17,
            {"s": 1},
        )
        ckpt.begin("other_1", 1, None)
        assert ckpt.keys("other_") == ["other_1"]
        assert ckpt.keys("k") == ["k"]
        assert ckpt.keys() == ["k", "other_1"]
        ckpt.close()

    def test_shared_by_two_handles(self, tmp_path: Path) -> None:
        a, b = Checkpoint(tmp_path / "c.db"), Checkpoint(tmp_path / "c.db")
        a.begin("x", 1, [0, 1])
        b.commit("x", 1, 1, rows=1)
        assert a.intents("x") == []
        saved = a.load("x")
        assert saved is not None
        assert saved.committed == 1

    def test_not_a_checkpoint_file(self, tmp_path: Path) -> None:
        path = tmp_path / "junk.db"
        path.write_bytes(b"this is not sqlite" * 100)
        with pytest.raises(kf.CheckpointError, match=r"junk\.db"):
            Checkpoint(path)

    def test_other_format_is_refused(self, tmp_path: Path) -> None:
        Checkpoint(tmp_path / "c.db").close()
        con = sqlite3.connect(tmp_path / "c.db")
        with con:
            con.execute("UPDATE kisflow_checkpoint_meta SET value='99'")
        con.close()
        expected = f"format 99, this kisflow reads format {FORMAT}"
        with pytest.raises(kf.CheckpointError, match=expected):
            Checkpoint(tmp_path / "c.db")

    def test_span_not_json(self, tmp_path: Path) -> None:
        with pytest.raises(kf.CheckpointError, match="batch 1 of 'k' has a span that is not JSON"):
            Checkpoint(tmp_path / "c.db").begin("k", 1, object())


class TestResume:
    """A stream with a checkpoint goes on after its last committed batch."""

    def test_stop_and_resume_stores_every_row_once(self, tmp_path: Path) -> None:
        db, ckpt = tmp_path / "rows.db", tmp_path / "c.ckpt.db"
        flow = _store_flow(db)
        src = ListSource(range(100))
        with flow.stream(src, batch_size=10, checkpoint=ckpt) as stream:
            for _ in stream:
                if stream.batches_done == 3:
                    stream.stop()
        assert (stream.committed, stream.position) == (30, 30)
        assert stream.delivery == "exactly-once"
        src2 = ListSource(range(100))
        with flow.stream(src2, batch_size=10, checkpoint=ckpt) as again:
            results = list(again)
        assert src2.log[0] == ("open", 30)
        assert len(results) == 7
        assert (again.committed, again.position) == (70, 100)
        assert _stored(db) == dict.fromkeys(range(100), 1)
        saved = Checkpoint(ckpt).load("list:list")
        assert saved is not None
        assert (saved.committed, saved.seq) == (100, 10)

    def test_without_a_checkpoint_a_rerun_stores_again(self, tmp_path: Path) -> None:
        """No checkpoint, no batch keys: a second run is a new run (at least once), and
        the stores never skip rows because an earlier stream used the same numbers."""
        db = tmp_path / "rows.db"
        flow = _store_flow(db)
        for _ in range(2):
            stream = flow.stream(ListSource(range(20)), batch_size=10)
            assert [len(r.output) for r in stream] == [10, 10]
            assert stream.delivery == "at-least-once"
        assert _stored(db) == dict.fromkeys(range(20), 2)

    def test_a_failure_without_checkpoint_names_the_span_only(self, tmp_path: Path) -> None:
        def boom(rows: list[int]) -> None:
            raise ValueError("boom")

        flow = _store_flow(tmp_path / "rows.db", fail=boom)
        with pytest.raises(kf.StageExecutionError) as info:
            list(flow.stream(ListSource(range(5)), batch_size=10))
        assert info.value.__notes__ == ["in stream batch 1 (list:list span [0,5])"]

    def test_acks_after_each_commit_in_order(self, tmp_path: Path) -> None:
        src = ListSource(range(25))
        list(_store_flow(tmp_path / "r.db").stream(src, batch_size=10, checkpoint=tmp_path / "c"))
        acks = [span for call, span in src.log if call == "ack"]
        assert acks == [[0, 10], [10, 20], [20, 25]]

    def test_a_crash_after_the_save_replays_the_intent_once(self, tmp_path: Path) -> None:
        """The Save stored batch 2, then the run died before its commit: the restart
        replays exactly that span under the same key and the Save stores nothing."""
        db, ckpt = tmp_path / "rows.db", tmp_path / "c.ckpt.db"

        @kf.faas("After")
        def after(flow: kf.Flow, rows: list[Any]) -> None:
            if any(r["v"] == 15 for r in rows) and not crashed.is_set():
                crashed.set()
                raise RuntimeError("simulated crash after the Save")
            flow.commit_row_batch(rows)

        crashed = threading.Event()
        conn = kf.ConnConfig(cname="DB", type="sqlite", addrs=str(db), key="rows")

        @kf.faas("Price")
        def price(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch({"v": r} for r in rows)

        flow = (
            kf.FlowBuilder("crash")
            .calculate("Price")
            .save("Store", conn=conn)
            .calculate("After")
            .build()
        )
        with pytest.raises(kf.StageExecutionError) as info:
            list(flow.stream(ListSource(range(30)), batch_size=10, checkpoint=ckpt))
        notes = "\n".join(info.value.__notes__)
        assert "in stream batch 2 (list:list span [10,20], seq 2)" in notes
        assert "the checkpoint stays at position 10" in notes
        assert _stored(db) == dict.fromkeys(range(20), 1)  # batch 2 stored, not committed
        assert Checkpoint(ckpt).intents("list:list") == [Intent(2, [10, 20])]
        src = ListSource(range(30))
        stream = flow.stream(src, batch_size=10, checkpoint=ckpt)
        results = list(stream)
        assert src.log[:2] == [("open", 20), ("reread", [10, 20])]
        assert [len(r.output) for r in results] == [10, 10]
        assert _stored(db) == dict.fromkeys(range(30), 1)
        assert Checkpoint(ckpt).intents("list:list") == []
        saved = Checkpoint(ckpt).load("list:list")
        assert saved is not None
        assert (saved.position, saved.committed) == (30, 30)

    def test_a_source_opened_after_an_intent_is_told_what_is_committed(
        self, tmp_path: Path
    ) -> None:
        """Opened at the last intent (to reread it), the source still hears the committed
        position, so it can ack a batch whose commit landed but whose ack did not."""
        ckpt = Checkpoint(tmp_path / "c.ckpt.db")
        ckpt.begin("list:list", 1, [0, 10])
        ckpt.commit("list:list", 1, 10, rows=10)
        ckpt.begin("list:list", 2, [10, 20])

        class Told(ListSource):
            def committed(self, position: object) -> None:
                self.log.append(("committed", position))

        @kf.faas("Pass")
        def passing(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("told").calculate("Pass").build()
        src = Told(range(30))
        list(flow.stream(src, batch_size=10, checkpoint=ckpt))
        assert src.log[:3] == [("open", 20), ("committed", 10), ("reread", [10, 20])]

    def test_batch_key_is_the_same_when_replayed(self, tmp_path: Path) -> None:
        keys: list[str] = []
        ckpt = tmp_path / "c"
        Checkpoint(ckpt).begin("list:list", 1, [0, 3])  # as a crash leaves it

        _record_batch_keys("Keys", keys)
        flow = kf.FlowBuilder("keys").calculate("Keys").build()
        list(flow.stream(ListSource(range(5)), batch_size=3, checkpoint=ckpt))
        assert keys == ["list:list#1", "list:list#2"]
        assert kf.current_batch() is None

    def test_current_batch_says_where_the_batch_is(self, tmp_path: Path) -> None:
        batches: list[Batch] = []

        @kf.faas("Where")
        def where(flow: kf.Flow, rows: list[int]) -> None:
            batch = kf.current_batch()
            assert batch is not None
            batches.append(batch)
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("where").calculate("Where").build()
        list(flow.stream(ListSource(range(5)), batch_size=3, checkpoint=tmp_path / "c"))
        assert [(b.source, b.seq, b.span, b.checkpoint) for b in batches] == [
            ("list:list", 1, [0, 3], str(tmp_path / "c")),
            ("list:list", 2, [3, 5], str(tmp_path / "c")),
        ]


class TestOrderedCommits:
    """Several batches in flight commit in source order; a failure leaves committed == store."""

    def test_results_and_commits_in_source_order(self, tmp_path: Path) -> None:
        db, ckpt = tmp_path / "rows.db", tmp_path / "c"
        seen: list[StreamStatus] = []

        class Watch(Observer):
            def stream_committed(self, flow: str, status: StreamStatus) -> None:
                seen.append(status)

        def slow_odd(rows: list[int]) -> None:
            time.sleep(0.02 if rows[0] % 20 == 0 else 0.0)

        flow = _store_flow(db, fail=slow_odd)
        stream = flow.stream(
            ListSource(range(200)),
            kf.RunOptions(observers=[Watch()]),
            batch_size=10,
            max_in_flight=4,
            checkpoint=ckpt,
        )
        flat = [row["v"] for r in stream for row in r.output]
        assert flat == list(range(200))
        assert [s.position for s in seen] == list(range(10, 201, 10))
        assert [s.committed for s in seen] == list(range(10, 201, 10))
        assert [s.batch for s in seen] == list(range(1, 21))
        assert all(s.checkpoint_time is not None for s in seen)
        assert _stored(db) == dict.fromkeys(range(200), 1)

    @pytest.mark.parametrize("in_flight", [2, 4])
    def test_failure_with_batches_in_flight_committed_equals_store(
        self, tmp_path: Path, in_flight: int
    ) -> None:
        db, ckpt = tmp_path / "rows.db", tmp_path / "c"
        reached = threading.Event()

        def fail_on_batch_6(rows: list[int]) -> None:
            if rows[0] == 50:
                reached.wait(5)  # let the later batches reach their Save gate
                raise ValueError("bad batch 6")
            if rows[0] > 50:
                reached.set()

        flow = _store_flow(db, fail=fail_on_batch_6)
        stream = flow.stream(
            ListSource(range(200)), batch_size=10, max_in_flight=in_flight, checkpoint=ckpt
        )
        results: list[Any] = []
        with pytest.raises(kf.StageExecutionError, match="bad batch 6") as info:
            results.extend(stream)
        assert len(results) == 5
        assert stream.committed == 50
        assert sum(_stored(db).values()) == stream.committed
        assert _stored(db) == dict.fromkeys(range(50), 1)
        notes = "\n".join(info.value.__notes__)
        assert "stream batch 6 (list:list span [50,60], seq 6)" in notes
        assert "checkpoint stays at position 50" in notes
        saved = Checkpoint(ckpt).load("list:list")
        assert saved is not None
        assert saved.position == 50

    def test_plain_iterable_failure_with_threads_stores_what_it_committed(
        self, tmp_path: Path
    ) -> None:
        """The issue's bug: 4 in flight, rows_done disagreed with the store."""
        db = tmp_path / "rows.db"

        def fail_on_batch_3(rows: list[int]) -> None:
            if rows[0] == 20:
                time.sleep(0.05)
                raise ValueError("bad batch 3")

        flow = _store_flow(db, fail=fail_on_batch_3)
        stream = flow.stream(range(200), batch_size=10, max_in_flight=4)
        with pytest.raises(kf.StageExecutionError):
            list(stream)
        assert stream.committed == stream.rows_done == 20
        assert sum(_stored(db).values()) == 20

    def test_async_stream_failure_committed_equals_store(self, tmp_path: Path) -> None:
        db, ckpt = tmp_path / "rows.db", tmp_path / "c"

        def fail_on_batch_4(rows: list[int]) -> None:
            if rows[0] == 30:
                time.sleep(0.05)
                raise ValueError("bad batch 4")

        flow = _store_flow(db, fail=fail_on_batch_4)
        stream = flow.astream(
            ListSource(range(200)), batch_size=10, max_in_flight=4, checkpoint=ckpt
        )

        async def consume() -> list[Any]:
            out = []
            async for result in stream:
                out.append(result)
            return out

        with pytest.raises(kf.StageExecutionError, match="bad batch 4"):
            asyncio.run(consume())
        assert stream.committed == 30
        assert _stored(db) == dict.fromkeys(range(30), 1)
        saved = Checkpoint(ckpt).load("list:list")
        assert saved is not None
        assert saved.position == 30

    def test_cancelling_an_async_stream_commits_the_batches_in_flight(self, tmp_path: Path) -> None:
        db, ckpt = tmp_path / "rows.db", tmp_path / "c"
        flow = _store_flow(db, fail=lambda rows: time.sleep(0.01))
        stream = flow.astream(
            ListSource(range(1000)), batch_size=10, max_in_flight=3, checkpoint=ckpt
        )

        async def consume() -> None:
            async with stream:  # closed in this task: the batches in flight commit
                async for _ in stream:
                    if stream.batches_done == 2:
                        asyncio.current_task().cancel()  # type: ignore[union-attr]
                        await asyncio.sleep(1)

        with pytest.raises(asyncio.CancelledError):
            asyncio.run(consume())
        assert stream.interrupted is True
        stored = _stored(db)
        assert stored == dict.fromkeys(range(stream.committed), 1)  # in order, once
        assert 20 <= stream.committed <= 50
        saved = Checkpoint(ckpt).load("list:list")
        assert saved is not None
        assert saved.position == stream.committed

    def test_async_stream_resumes(self, tmp_path: Path) -> None:
        db, ckpt = tmp_path / "rows.db", tmp_path / "c"
        flow = _store_flow(db)

        async def consume(stop_after: int | None) -> int:
            stream = flow.astream(
                ListSource(range(95)), batch_size=10, max_in_flight=3, checkpoint=ckpt
            )
            async for _ in stream:
                if stop_after is not None and stream.batches_done == stop_after:
                    stream.stop()
            return stream.committed

        first = asyncio.run(consume(2))
        second = asyncio.run(consume(None))
        assert first >= 20
        assert first % 10 == 0
        assert first + second == 95
        assert _stored(db) == dict.fromkeys(range(95), 1)

    def test_async_stream_replays_intents(self, tmp_path: Path) -> None:
        db, ckpt = tmp_path / "rows.db", tmp_path / "c"
        flow = _store_flow(db)
        list(flow.stream(ListSource(range(10)), batch_size=10, checkpoint=ckpt))
        Checkpoint(ckpt).begin("list:list", 2, [10, 20])  # begun, then a crash
        src = ListSource(range(25))

        async def consume() -> list[int]:
            stream = flow.astream(src, batch_size=10, max_in_flight=2, checkpoint=ckpt)
            return [len(r.output) async for r in stream]

        assert asyncio.run(consume()) == [10, 5]
        assert src.log[:2] == [("open", 20), ("reread", [10, 20])]
        assert _stored(db) == dict.fromkeys(range(25), 1)

    def test_a_bad_record_with_batches_in_flight_yields_those_before(self, tmp_path: Path) -> None:
        db, ckpt = tmp_path / "rows.db", tmp_path / "c"
        records: list[object] = [*range(35), "!bad", *range(36, 50)]
        stream = _store_flow(db).stream(
            ListSource(records), batch_size=10, max_in_flight=4, checkpoint=ckpt
        )
        got: list[Any] = []
        with pytest.raises(kf.SourceError, match="record 35 is marked bad"):
            got.extend(stream)
        assert len(got) == 3  # the batches read before the bad one came out, committed
        assert stream.committed == 30
        assert _stored(db) == dict.fromkeys(range(30), 1)

    def test_plain_iterables_tell_stream_committed_too(self) -> None:
        seen: list[StreamStatus] = []

        class Watch(Observer):
            def stream_committed(self, flow: str, status: StreamStatus) -> None:
                seen.append(status)

        flow = kf.FlowBuilder("plain").calculate("Id").build()
        options = kf.RunOptions(observers=[Watch()])
        stream = flow.stream(range(25), options, batch_size=10)
        assert [len(r.output) for r in stream] == [10, 10, 5]
        assert [(s.batch, s.position, s.committed) for s in seen] == [
            (1, None, 10),
            (2, None, 20),
            (3, None, 25),
        ]
        assert (stream.committed, stream.position, stream.delivery) == (25, None, "at-most-once")


class TestTimeBounds:
    """``max_wait`` bounds a batch's wait on a slow source; ``idle_timeout`` ends a stream."""

    def test_max_wait_cuts_a_batch_of_a_slow_generator(self) -> None:
        first_out = threading.Event()
        flow = kf.FlowBuilder("slow").calculate("Id").build()
        outputs = []
        for result in flow.stream(_gated_rows(first_out), batch_size=100, max_wait=0.05):
            outputs.append(result.output)
            first_out.set()
        assert outputs == [[0, 1, 2], [3, 4]]

    def test_without_max_wait_the_batch_waits_for_rows(self) -> None:
        """The control: the same generator without max_wait gives one batch."""
        first_out = threading.Event()
        release = threading.Timer(0.2, first_out.set)
        release.start()
        flow = kf.FlowBuilder("slow").calculate("Id").build()
        got = [r.output for r in flow.stream(_gated_rows(first_out), batch_size=100)]
        assert got == [[0, 1, 2, 3, 4]]

    @pytest.mark.parametrize("driver", ["stream", "astream"])
    def test_max_wait_with_an_async_generator(self, driver: str) -> None:
        async def slow() -> Any:
            for i in range(3):
                yield i
            await asyncio.sleep(0.5)
            yield 3

        flow = kf.FlowBuilder("aslow").calculate("Id").build()

        async def consume() -> list[Any]:
            return [r.output async for r in flow.astream(slow(), batch_size=100, max_wait=0.05)]

        if driver == "stream":
            outputs = [r.output for r in flow.stream(slow(), batch_size=100, max_wait=0.05)]
        else:
            outputs = asyncio.run(consume())
        assert outputs == [[0, 1, 2], [3]]

    def test_idle_timeout_ends_a_followed_source(self, tmp_path: Path) -> None:
        src = ListSource(range(25), follow=True)
        flow = _store_flow(tmp_path / "r.db")
        stream = flow.stream(src, batch_size=10, idle_timeout=0.2, checkpoint=tmp_path / "c")
        assert [len(r.output) for r in stream] == [10, 10, 5]
        assert (stream.idle, stream.interrupted, stream.committed) == (True, False, 25)

    def test_idle_timeout_on_a_plain_generator(self) -> None:
        def tail() -> Iterator[int]:
            yield from range(5)
            time.sleep(30)  # never more: the stream ends by idle_timeout

        stream = (
            kf.FlowBuilder("tail")
            .calculate("Id")
            .build()
            .stream(tail(), batch_size=3, idle_timeout=0.2)
        )
        assert [r.output for r in stream] == [[0, 1, 2], [3, 4]]
        assert stream.idle is True

    @pytest.mark.parametrize("bad", [-1, "1", True])
    def test_bad_seconds(self, bad: Any) -> None:
        flow = kf.FlowBuilder("x").calculate("Id").build()
        with pytest.raises(kf.ConfigError, match="stream max_wait must be a number"):
            flow.stream([1], max_wait=bad)


class TestTakeovers:
    """Records taken over from a dead consumer: its intents replay under its key."""

    def test_dead_consumers_intents_then_the_rest(self, tmp_path: Path) -> None:
        db, ckpt = tmp_path / "rows.db", tmp_path / "c"
        Checkpoint(ckpt).begin("list:dead", 4, [100, 105])  # what the dead one began

        class Claiming(ListSource):
            claimed = False

            def takeovers(self) -> list[Takeover]:
                if self.claimed:
                    return []
                self.claimed = True
                return [Takeover("list:dead", [100, 110])]

            def without(self, span: Any, spans: Any) -> Any:
                self.log.append(("without", (span, spans)))
                return [105, 110]

            def reread(self, span: Any) -> Chunk:
                if span[0] < 100:
                    return super().reread(span)
                self.log.append(("reread", span))
                return Chunk(list(range(*span)), span)  # the dead consumer's records

        keys: list[str] = []

        _record_batch_keys("SeeKey", keys)
        conn = kf.ConnConfig(cname="DB", type="sqlite", addrs=str(db), key="rows")

        @kf.faas("Wrap")
        def wrap(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch({"v": r} for r in rows)

        flow = (
            kf.FlowBuilder("take").calculate("Wrap").calculate("SeeKey").save("S", conn=conn)
        ).build()
        src = Claiming(range(100))
        stream = flow.stream(src, batch_size=50, checkpoint=ckpt)
        positions = []
        sizes = []
        for result in stream:
            sizes.append(len(result.output))
            positions.append(stream.position)
        assert sizes == [5, 5, 50, 50]
        assert positions == [None, None, 50, 100]  # taken records never move it
        assert keys == ["list:dead#4", "list:list#1", "list:list#2", "list:list#3"]
        assert ("without", ([100, 110], [[100, 105]])) in src.log
        assert Checkpoint(ckpt).intents("list:dead") == []
        dead = Checkpoint(ckpt).load("list:dead")
        assert dead is not None
        assert (dead.seq, dead.committed) == (4, 5)
        acks = [span for call, span in src.log if call == "ack"]
        assert acks[:2] == [[100, 105], [105, 110]]
        assert _stored(db) == dict.fromkeys(range(110), 1)
        assert stream.position == 100  # the own key's position: taken records don't move it

    def test_a_taken_intent_is_replayed_but_not_resumed_after(self, tmp_path: Path) -> None:
        ckpt = tmp_path / "c"
        store = Checkpoint(ckpt)
        store.begin("list:list", 1, [0, 10])
        store.begin("list:list", 2, [105, 110], taken=True)
        assert store.intents("list:list")[1] == Intent(2, [105, 110], taken=True)
        src = ListSource(range(120))
        flow_positions: list[Any] = []
        stream = _store_flow(tmp_path / "r.db").stream(src, batch_size=10, checkpoint=ckpt)
        for _ in stream:
            flow_positions.append(stream.position)
            if len(flow_positions) == 2:
                stream.stop()
        assert src.log[:3] == [("open", 10), ("reread", [0, 10]), ("reread", [105, 110])]
        assert flow_positions == [10, 10]
        saved = Checkpoint(ckpt).load("list:list")
        assert saved is not None
        assert saved.position == 10


class TestBackpressure:
    """The source is pulled: records read and not committed stay within the bound."""

    @pytest.mark.parametrize("in_flight", [1, 3])
    def test_read_ahead_is_bounded(self, tmp_path: Path, in_flight: int) -> None:
        src = ListSource(range(500))
        flow = _store_flow(tmp_path / "r.db")
        stream = flow.stream(src, batch_size=20, max_in_flight=in_flight, checkpoint=tmp_path / "c")
        ahead = [src.at - stream.committed for _ in stream]
        assert max(ahead) <= 20 * in_flight
        assert stream.committed == 500


class TestBadRecords:
    """Bad records and rejected rows go to the dead-letter sink, committed with the batch."""

    def test_bad_records_are_letters_and_committed(self, tmp_path: Path) -> None:
        db, ckpt = tmp_path / "rows.db", tmp_path / "c"
        letters: list[kf.DeadLetter] = []
        records: list[object] = [0, 1, "!oops", 3, 4, "!again", 6]
        flow = _store_flow(db)
        stream = flow.stream(
            ListSource(records), batch_size=4, checkpoint=ckpt, dead_letters=letters
        )
        assert [len(r.output) for r in stream] == [3, 2]
        assert [(x.row, x.error, x.reason) for x in letters] == [
            ("!oops", "list:list record 2 is marked bad", "bad record"),
            ("!again", "list:list record 5 is marked bad", "bad record"),
        ]
        assert (stream.committed, stream.position) == (7, 7)
        assert _stored(db) == {0: 1, 1: 1, 3: 1, 4: 1, 6: 1}
        again = flow.stream(ListSource(records), batch_size=4, checkpoint=ckpt)
        assert list(again) == []  # nothing redelivered

    def test_without_a_sink_the_error_names_the_record_and_keeps_the_checkpoint(
        self, tmp_path: Path
    ) -> None:
        db, ckpt = tmp_path / "rows.db", tmp_path / "c"
        records: list[object] = [0, 1, 2, 3, "!poison", 5]
        stream = _store_flow(db).stream(ListSource(records), batch_size=3, checkpoint=ckpt)
        with pytest.raises(kf.SourceError) as info:
            list(stream)
        message = str(info.value)
        assert "list:list record 4 is marked bad; record was '!poison'" in message
        assert "checkpoint stays at position 3" in message
        assert (info.value.source, info.value.position) == ("list:list", 3)
        assert Checkpoint(ckpt).intents("list:list") == []
        saved = Checkpoint(ckpt).load("list:list")
        assert saved is not None
        assert saved.position == 3
        assert _stored(db) == {0: 1, 1: 1, 2: 1}

    def test_the_flows_sink_takes_bad_records_and_rejected_rows(self, tmp_path: Path) -> None:
        letters: list[kf.DeadLetter] = []

        @kf.faas("Reject7")
        def reject(flow: kf.Flow, rows: list[int]) -> None:
            for r in rows:
                if r == 7:
                    flow.dead_letter(r, "seven")
                else:
                    flow.commit_row(r)

        flow = kf.FlowBuilder("rej").verify("Reject7").dead_letters(letters).build()
        records: list[object] = [*range(10), "!x"]
        stream = flow.stream(ListSource(records), batch_size=20, checkpoint=tmp_path / "c")
        assert [r.output for r in stream] == [[0, 1, 2, 3, 4, 5, 6, 8, 9]]
        assert sorted((x.reason, str(x.row)) for x in letters) == [
            ("bad record", "!x"),
            ("rejected", "7"),
        ]
        assert stream.position == 11


class TestDelivery:
    """``delivery=`` is checked before the first row is read, naming what is missing."""

    def test_plain_iterable_cannot_be_exactly_once(self) -> None:
        read = {"n": 0}

        def rows() -> Iterator[int]:
            read["n"] += 1
            yield 1

        flow = kf.FlowBuilder("d").calculate("Id").build()
        with pytest.raises(kf.DeliveryError, match=r"needs a durable source.*plain iterable"):
            flow.stream(rows(), delivery="exactly-once")
        assert read["n"] == 0
        assert flow.stream([1]).delivery == "at-most-once"

    def test_exactly_once_needs_a_checkpoint(self, tmp_path: Path) -> None:
        src = ListSource(range(3))
        with pytest.raises(kf.DeliveryError, match="needs a checkpoint"):
            _store_flow(tmp_path / "r.db").stream(src, delivery="exactly-once")
        assert src.log == []

    def test_a_user_save_that_does_not_join_is_refused(self, tmp_path: Path) -> None:
        @kf.faas("MySave")
        def my_save(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("u").save("MySave").build()
        src = ListSource(range(3))
        with pytest.raises(kf.DeliveryError, match="Save stage 'MySave' is a FaaS that does not"):
            flow.stream(src, checkpoint=tmp_path / "c", delivery="exactly-once")
        assert src.log == []
        assert flow.stream(src, checkpoint=tmp_path / "c").delivery == "at-least-once"

    def test_a_joining_user_save_and_builtin_stores_are_accepted(self, tmp_path: Path) -> None:
        @kf.faas("MySave", joins_commit=True)
        def my_save(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("u").save("MySave").build()
        stream = flow.stream(
            ListSource(range(3)), checkpoint=tmp_path / "c", delivery="exactly-once"
        )
        assert stream.delivery == "exactly-once"
        assert [r.output for r in stream] == [[0, 1, 2]]
        stream = _store_flow(tmp_path / "r.db").stream(
            ListSource(range(3)), checkpoint=tmp_path / "c2", delivery="exactly-once"
        )
        assert stream.delivery == "exactly-once"

    def test_unknown_delivery(self) -> None:
        with pytest.raises(kf.ConfigError, match="delivery must be one of"):
            kf.FlowBuilder("x").calculate("Id").build().stream([1], delivery="twice")

    def test_checkpoint_with_a_plain_iterable(self, tmp_path: Path) -> None:
        with pytest.raises(kf.DeliveryError, match="a checkpoint needs a durable source"):
            kf.FlowBuilder("x").calculate("Id").build().stream([1], checkpoint=tmp_path / "c")


class TestUserSaveHook:
    """A user FaaS Save joins the commit with ``kf.current_batch()``: see examples/."""

    def test_the_example_runs_and_stores_once(self) -> None:
        import runpy

        module = runpy.run_path(str(TESTS.parent / "examples" / "stream" / "own_save.py"))
        stored, replayed = module["main"]()
        assert stored == list(range(1, 31))
        assert replayed == 1

    def test_current_batch_in_a_stream_without_checkpoint_is_none(self) -> None:
        seen: list[Batch | None] = []

        @kf.faas("See")
        def see(flow: kf.Flow, rows: list[int]) -> None:
            seen.append(kf.current_batch())
            flow.commit_row_batch(rows)

        list(
            kf.FlowBuilder("s").calculate("See").build().stream(ListSource(range(4)), batch_size=2)
        )
        assert seen == [None, None]


# -- kill tests -------------------------------------------------------------------------

_CHILD = """
import sys, sqlite3, time
import kisflow as kf
from tests.streamkill import ListSource

db, mode = sys.argv[1], sys.argv[2]
N = {n}

@kf.faas("Check")
def check(flow, rows):
    flow.commit_row_batch(rows)

@kf.faas("Price")
def price(flow, rows):
    flow.commit_row_batch({{"v": r}} for r in rows)

@kf.faas("After")
def after(flow, rows):
    print("saved", flush=True)
    time.sleep(0.2)  # the window between the Save and the commit, where kills land
    flow.commit_row_batch(rows)

if mode == "builtin":
    conn = kf.ConnConfig(cname="DB", type="sqlite", addrs=db, key="rows")
    flow = kf.FlowBuilder("kill").verify("Check").calculate("Price").save("Store", conn=conn)
    flow = flow.calculate("After").build()
else:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("CREATE TABLE IF NOT EXISTS rows (v INTEGER)")
    con.execute("CREATE TABLE IF NOT EXISTS done (key TEXT PRIMARY KEY)")

    @kf.faas("Store", joins_commit=mode == "joined")
    def store(flow, rows):
        batch = kf.current_batch()
        con.execute("BEGIN IMMEDIATE")
        if mode == "joined" and con.execute(
            "SELECT 1 FROM done WHERE key=?", (batch.key,)
        ).fetchone():
            con.execute("ROLLBACK")
            return
        con.executemany("INSERT INTO rows VALUES (?)", [(r["v"],) for r in rows])
        if mode == "joined":
            con.execute("INSERT INTO done VALUES (?)", (batch.key,))
        con.execute("COMMIT")
        flow.commit_row_batch(rows)

    flow = kf.FlowBuilder("kill").verify("Check").calculate("Price").save("Store")
    flow = flow.calculate("After").build()

src = ListSource(range(N))
with flow.stream(src, batch_size=50, checkpoint=db + ".ckpt", idle_timeout=0.5) as stream:
    for result in stream:
        print("batch", stream.position, flush=True)
print("done", stream.committed, flush=True)
"""


def _kill_run(tmp_path: Path, mode: str, *, n: int, seed: int, ready: str) -> dict[object, int]:
    script = write_child(tmp_path, _CHILD.format(n=n))
    db = tmp_path / "rows.db"
    report = kill_loop(
        script, args=[str(db), mode], kills=5, seed=seed, ready=ready, delay=(0.0, 0.1)
    )
    assert report.kills == 5, report.outputs
    assert report.returncode == 0, report.stderr
    assert "done" in report.stdout
    return _stored(db)


@pytest.mark.slow
class TestKills:
    """SIGKILL at seeded random moments, restart: exactly once with Saves that join."""

    def test_builtin_save_exactly_once_after_kills(self, tmp_path: Path) -> None:
        counts = _kill_run(tmp_path, "builtin", n=2000, seed=10, ready="saved")
        assert counts == dict.fromkeys(range(2000), 1)

    def test_user_save_joining_via_the_hook_exactly_once(self, tmp_path: Path) -> None:
        counts = _kill_run(tmp_path, "joined", n=2000, seed=11, ready="saved")
        assert counts == dict.fromkeys(range(2000), 1)

    def test_control_user_save_not_joining_duplicates(self, tmp_path: Path) -> None:
        counts = _kill_run(tmp_path, "own", n=2000, seed=12, ready="saved")
        assert set(counts) == set(range(2000))  # nothing lost: at least once
        assert max(counts.values()) > 1  # the kills right after its Save duplicated rows


def test_sources_iterable_stays_a_factory_after_use() -> None:
    """The factory is not shadowed by its module once the module is imported."""
    from kisflow import sources

    first = sources.iterable([1, 2])
    second = sources.iterable([3])
    assert type(first) is type(second)
    assert callable(sources.iterable)
