"""Tests for micro-batch streams: order, bounded memory, clean stops and the JSONL runner."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import kisflow as kf
from kisflow import observers
from kisflow.executors import AsyncStream, Stream, run_jsonl_stream
from kisflow.observers import Observer
from kisflow.options import RunOptions


def _double_flow(name: str = "double") -> kf.Flow:
    @kf.faas("Double", replace=True)
    def double(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(r * 2 for r in rows)

    return kf.FlowBuilder(name).calculate("Double").build()


def _sqlite_save_flow(db: Path, *, on_batch: Any = None, name: str = "save") -> kf.Flow:
    """A flow whose Save stage writes each batch to SQLite in one transaction."""
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE IF NOT EXISTS rows (v INTEGER)")
    con.close()
    calls = {"n": 0}

    @kf.faas("SaveRows")
    def save_rows(flow: kf.Flow, rows: list[int]) -> None:
        calls["n"] += 1
        if on_batch is not None:
            on_batch(calls["n"])
        con = sqlite3.connect(db)
        try:
            with con:
                con.executemany("INSERT INTO rows VALUES (?)", [(r,) for r in rows])
        finally:
            con.close()
        flow.commit_row_batch(rows)

    return kf.FlowBuilder(name).save("SaveRows").build()


def _count(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT COUNT(*) FROM rows").fetchone()[0])
    finally:
        con.close()


class TestStreamResults:
    """Each batch's result comes out in source order with the rows-done figures."""

    def test_batches_in_order_with_partial_last_batch(self) -> None:
        stream = _double_flow().stream(iter(range(25)), batch_size=10)
        outputs = [r.output for r in stream]
        assert outputs == [
            [i * 2 for i in range(10)],
            [i * 2 for i in range(10, 20)],
            [i * 2 for i in range(20, 25)],
        ]
        assert (stream.rows_done, stream.batches_done, stream.interrupted) == (25, 3, False)

    def test_a_list_is_cut_by_slicing_and_left_as_it_was(self) -> None:
        rows = list(range(25))
        stream = _double_flow().stream(rows, batch_size=10)
        outputs = [r.output for r in stream]
        assert outputs == [
            [i * 2 for i in range(10)],
            [i * 2 for i in range(10, 20)],
            [i * 2 for i in range(20, 25)],
        ]
        assert rows == list(range(25))
        assert (stream.rows_done, stream.batches_done) == (25, 3)

    def test_rows_appended_to_a_list_during_the_stream_are_streamed(self) -> None:
        # As a for loop over the list would: its slices see the rows appended since.
        rows = list(range(10))
        seen = []
        for result in _double_flow().stream(rows, batch_size=4):
            seen.extend(result.output)
            if len(rows) < 14:
                rows.append(len(rows))
        assert seen == [i * 2 for i in range(14)]

    def test_async_iterable_source_in_sync_stream(self) -> None:
        async def source() -> AsyncIterator[int]:
            for i in range(7):
                await asyncio.sleep(0)
                yield i

        stream = _double_flow().stream(source(), batch_size=3)
        assert [r.output for r in stream] == [[0, 2, 4], [6, 8, 10], [12]]
        assert stream.rows_done == 7

    def test_threads_in_flight_keep_order(self) -> None:
        stream = _double_flow().stream(range(1000), batch_size=7, max_in_flight=4)
        flat = [x for r in stream for x in r.output]
        assert flat == [i * 2 for i in range(1000)]
        assert stream.batches_done == 143

    def test_empty_source_yields_nothing(self) -> None:
        stream = _double_flow().stream([], batch_size=5)
        assert list(stream) == []
        assert stream.rows_done == 0

    @pytest.mark.parametrize(("batch_size", "max_in_flight"), [(0, 1), (5, 0), ("5", 1)])
    def test_bad_sizes_are_config_errors(self, batch_size: Any, max_in_flight: Any) -> None:
        with pytest.raises(kf.ConfigError, match="flow 'double': stream"):
            _double_flow().stream([1], batch_size=batch_size, max_in_flight=max_in_flight)


class TestStreamMemory:
    """Memory stays bounded whatever the source's length."""

    @pytest.mark.parametrize("max_in_flight", [1, 3])
    def test_source_is_read_at_most_max_in_flight_batches_ahead(self, max_in_flight: int) -> None:
        produced = {"n": 0}

        def source() -> Iterator[int]:
            for i in range(1000):
                produced["n"] += 1
                yield i

        stream = _double_flow().stream(
            source(), batch_size=50, max_in_flight=max_in_flight, handle_sigint=False
        )
        ahead = []
        for _ in stream:
            ahead.append(produced["n"] - stream.rows_done)
        assert max(ahead) <= max_in_flight * 50
        assert stream.rows_done == 1000

    def test_two_million_rows_within_a_fixed_bound(self) -> None:
        # A fresh interpreter, so its peak RSS is the stream's alone (tracemalloc is 10x slower).
        proc = subprocess.run(
            [sys.executable, "-c", _MEMORY_SCRIPT],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        figures = json.loads(proc.stdout)
        total = 2_000_000
        assert figures["rows_done"] == total
        assert figures["kept"] == total - len(range(0, total, 3))
        assert figures["batches"] == 100
        # Materialising the 2 M dict rows alone needs ~400 MB more than the baseline.
        growth = figures["peak_kb"] - figures["baseline_kb"]
        assert growth < 60 * 1024, f"peak RSS grew by {growth / 1024:.0f} MB"


_MEMORY_SCRIPT = """
import json, resource
from typing import Any
import kisflow as kf

@kf.faas("Keep")
def keep(flow: kf.Flow, rows: list[Any]) -> None:
    flow.commit_row_batch({"i": r["i"], "x": r["i"] % 7} for r in rows if r["i"] % 3)

flow = kf.FlowBuilder("big").calculate("Keep").build()
flow.run([{"i": 1}])
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
stream = flow.stream(({"i": i} for i in range(2_000_000)), batch_size=20_000)
kept = sum(len(result.output) for result in stream)
print(json.dumps({
    "rows_done": stream.rows_done,
    "batches": stream.batches_done,
    "kept": kept,
    "baseline_kb": baseline,
    "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
"""


class TestStreamStop:
    """Stops happen between batches: a Save stage never keeps half a batch."""

    def test_stop_ends_after_the_current_batch(self, tmp_path: Path) -> None:
        db = tmp_path / "rows.db"
        flow = _sqlite_save_flow(db)
        stream = flow.stream(range(100), batch_size=10)
        for result in stream:
            if stream.batches_done == 2:
                stream.stop()
            assert len(result.output) == 10
        assert stream.interrupted is True
        assert stream.rows_done == 20
        assert _count(db) == 20

    @pytest.mark.parametrize("source", [range, lambda n: list(range(n))], ids=["range", "list"])
    def test_ctrl_c_finishes_the_batch_in_flight(self, tmp_path: Path, source: Any) -> None:
        db = tmp_path / "rows.db"

        def interrupt_on_third(n: int) -> None:
            if n == 3:
                signal.raise_signal(signal.SIGINT)

        flow = _sqlite_save_flow(db, on_batch=interrupt_on_third)
        before = signal.getsignal(signal.SIGINT)
        stream = flow.stream(source(1000), batch_size=10)
        results = []
        for result in stream:
            # The stream's handler stays for its whole life (installed once, not per
            # batch); in the loop body it hands Ctrl-C to the caller (next test).
            assert signal.getsignal(signal.SIGINT) is not before
            results.append(result)
        assert len(results) == 3
        assert stream.interrupted is True
        assert stream.rows_done == 30
        assert _count(db) == 30
        assert signal.getsignal(signal.SIGINT) is before

    @pytest.mark.parametrize("max_in_flight", [1, 3])
    def test_ctrl_c_in_the_loop_body_is_the_callers(
        self, tmp_path: Path, max_in_flight: int
    ) -> None:
        db = tmp_path / "rows.db"
        before = signal.getsignal(signal.SIGINT)
        stream = _sqlite_save_flow(db).stream(
            range(1000), batch_size=10, max_in_flight=max_in_flight
        )
        went_on = []

        def consume() -> None:
            for _ in stream:
                if stream.batches_done == 2:
                    signal.raise_signal(signal.SIGINT)
                    went_on.append(True)  # not reached: the body is cut, as without us

        with pytest.raises(KeyboardInterrupt):
            consume()
        stream.close()
        assert went_on == []
        assert signal.getsignal(signal.SIGINT) is before
        assert stream.batches_done == 2
        assert _count(db) % 10 == 0  # whole batches only, those in flight finished

    def test_second_ctrl_c_interrupts_at_once(self, tmp_path: Path) -> None:
        def interrupt_twice(n: int) -> None:
            if n == 2:
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)

        flow = _sqlite_save_flow(tmp_path / "rows.db", on_batch=interrupt_twice)
        stream = flow.stream(range(1000), batch_size=10)
        with pytest.raises(KeyboardInterrupt):
            list(stream)
        assert stream.rows_done == 10

    def test_close_with_threads_waits_for_started_batches(self, tmp_path: Path) -> None:
        db = tmp_path / "rows.db"
        flow = _sqlite_save_flow(db)
        with flow.stream(range(1000), batch_size=10, max_in_flight=4) as stream:
            first = next(stream)
        assert first.output == list(range(10))
        assert stream.interrupted is True
        # Batches already started were finished whole; none was cut.
        assert _count(db) % 10 == 0
        assert 10 <= _count(db) <= 50


class TestStreamErrors:
    """A failing batch raises the stage's error, noting which batch and rows."""

    def test_error_names_batch_and_rows(self) -> None:
        @kf.faas("FailOn42")
        def fail_on_42(flow: kf.Flow, rows: list[int]) -> None:
            if 42 in rows:
                raise ValueError("bad 42")
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("fails").calculate("FailOn42").build()
        stream = flow.stream(range(100), batch_size=10)
        with pytest.raises(kf.StageExecutionError) as info:
            list(stream)
        assert info.value.stage == "FailOn42"
        assert "in stream batch 4 (source rows 40..49)" in info.value.__notes__
        assert isinstance(info.value.__cause__, ValueError)
        assert stream.rows_done == 40


class TestAsyncStream:
    """``flow.astream`` runs batches on the loop and finishes them when cancelled."""

    def test_async_source_and_async_stage(self) -> None:
        @kf.faas("AsyncInc")
        async def async_inc(flow: kf.Flow, rows: list[int]) -> None:
            await asyncio.sleep(0)
            flow.commit_row_batch(r + 1 for r in rows)

        async def source() -> AsyncIterator[int]:
            for i in range(10):
                yield i

        flow = kf.FlowBuilder("ainc").calculate("AsyncInc").build()

        async def main() -> tuple[list[list[int]], AsyncStream]:
            stream = flow.astream(source(), batch_size=4, max_in_flight=2)
            return [r.output async for r in stream], stream

        outputs, stream = asyncio.run(main())
        assert outputs == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
        assert (stream.rows_done, stream.batches_done) == (10, 3)

    def test_cancel_lets_the_batch_in_flight_finish(self, tmp_path: Path) -> None:
        db = tmp_path / "rows.db"
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE rows (v INTEGER)")
        con.close()
        started = asyncio.Event

        @kf.faas("SlowSave")
        async def slow_save(flow: kf.Flow, rows: list[int]) -> None:
            gate: asyncio.Event = flow.get_context()
            gate.set()
            await asyncio.sleep(0.1)
            c = sqlite3.connect(db)
            with c:
                c.executemany("INSERT INTO rows VALUES (?)", [(r,) for r in rows])
            c.close()
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("slow").save("SlowSave").build()

        async def main() -> AsyncStream:
            gate = started()
            stream = flow.astream(range(1000), batch_size=10, ctx=gate)

            async def consume() -> None:
                async for _ in stream:
                    gate.clear()

            task = asyncio.create_task(consume())
            for _ in range(3):
                await gate.wait()
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return stream

        stream = asyncio.run(main())
        assert stream.interrupted is True
        # The batch running at the cancel was finished whole and written.
        assert _count(db) == stream.rows_done + 10
        assert _count(db) % 10 == 0


@attrs.frozen
class Point:
    x: int
    label: str


class TestJsonlStream:
    """``run_jsonl_stream`` (for the CLI's ``run``) writes each output row as a JSON line."""

    def test_lines_in_lines_out(self) -> None:
        @kf.faas("Avg")
        def avg(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
            flow.commit_row_batch({"id": r["id"], "avg": sum(r["s"]) / len(r["s"])} for r in rows)

        flow = kf.FlowBuilder("avg").calculate("Avg").build()
        lines = [json.dumps({"id": i, "s": [i, i + 2]}) + "\n" for i in range(5)] + ["\n"]
        out = io.StringIO()
        summary = run_jsonl_stream(flow, lines, out, batch_size=2)
        assert [json.loads(x) for x in out.getvalue().splitlines()] == [
            {"id": i, "avg": i + 1.0} for i in range(5)
        ]
        assert summary == kf.executors.StreamSummary(
            rows_in=5, rows_out=5, batches=3, interrupted=False
        )

    def test_attrs_rows_and_per_batch_results(self) -> None:
        @kf.faas("ToPoint", output=Point)
        def to_point(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(Point(x=r, label=f"p{r}") for r in rows)

        flow = kf.FlowBuilder("points").calculate("ToPoint").build()
        out = io.StringIO()
        seen: list[int] = []
        summary = run_jsonl_stream(
            flow,
            (f"{i}\n" for i in range(5)),
            out,
            batch_size=3,
            on_result=lambda r: seen.append(r.stage("ToPoint").rows_out),
        )
        assert out.getvalue().splitlines() == [f'{{"x": {i}, "label": "p{i}"}}' for i in range(5)]
        assert seen == [3, 2]
        assert (summary.rows_in, summary.rows_out, summary.batches) == (5, 5, 2)

    def test_bad_line_names_source_and_line(self) -> None:
        flow = _double_flow()
        with pytest.raises(kf.RunError, match=r"rows\.jsonl line 3 is not JSON"):
            run_jsonl_stream(flow, ["1", "2", "{oops", "4"], io.StringIO(), source="rows.jsonl")


class TestStreamThreadSafety:
    """A stream can be stopped from another thread."""

    def test_stop_from_another_thread(self) -> None:
        gate = threading.Event()

        @kf.faas("Wait")
        def wait(flow: kf.Flow, rows: list[int]) -> None:
            gate.wait(timeout=10)
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("wait").calculate("Wait").build()
        stream: Stream = flow.stream(range(100), batch_size=10)

        def stopper() -> None:
            stream.stop()
            gate.set()

        threading.Timer(0.05, stopper).start()
        results = list(stream)
        assert len(results) == 1
        assert stream.rows_done == 10
        assert stream.interrupted is True


class TestStreamExtras:
    """Progress bar, async stops, and async sources inside a running loop."""

    def test_progress_bar_counts_rows(self, capsys: pytest.CaptureFixture[str]) -> None:
        stream = _double_flow("shown").stream(range(30), batch_size=10, progress=True)
        assert len(list(stream)) == 3
        err = capsys.readouterr().err
        assert "shown" in err
        assert "shown: 30.0rows" in err

    def test_async_stop_ends_between_batches(self) -> None:
        flow = _double_flow()

        async def main() -> tuple[int, AsyncStream]:
            stream = flow.astream(range(100), batch_size=10, max_in_flight=1)
            seen = 0
            async for _ in stream:
                seen += 1
                if seen == 2:
                    stream.stop()
            return seen, stream

        seen, stream = asyncio.run(main())
        assert seen == 2
        assert (stream.rows_done, stream.interrupted) == (20, True)

    def test_aclose_before_start(self) -> None:
        stream = _double_flow().astream(range(10))
        asyncio.run(stream.aclose())
        assert stream.interrupted is True

    def test_async_source_in_sync_stream_inside_a_loop_is_an_error(self) -> None:
        async def source() -> AsyncIterator[int]:
            yield 1

        async def main() -> None:
            list(_double_flow("inloop").stream(source()))

        with pytest.raises(kf.RunError, match=r"flow 'inloop'.*use 'async for"):
            asyncio.run(main())


_SIGINT_SCRIPT = """
import itertools, json, sqlite3, sys, time
from typing import Any
import kisflow as kf

db = sys.argv[1]
con = sqlite3.connect(db)
con.execute("CREATE TABLE rows (v INTEGER)")
con.commit()

@kf.faas("SlowSave")
def slow_save(flow: kf.Flow, rows: list[Any]) -> None:
    print("batch", flush=True)
    for r in rows:
        time.sleep(0.002)  # a slow store: the Ctrl-C sent after "batch" lands in here
    with con:
        con.executemany("INSERT INTO rows VALUES (?)", [(r,) for r in rows])
    flow.commit_row_batch(rows)

flow = kf.FlowBuilder("endless").save("SlowSave").build()
stream = flow.stream(itertools.count(), batch_size=50)
for _ in stream:
    pass
saved = con.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
print(json.dumps({"rows_done": stream.rows_done, "interrupted": stream.interrupted,
                  "saved": saved}), flush=True)
"""


class TestCtrlCFromOutside:
    """A real SIGINT sent to a process streaming an endless source stops it cleanly."""

    def test_endless_stream_stops_with_whole_batches(self, tmp_path: Path) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SIGINT_SCRIPT, str(tmp_path / "rows.db")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for _ in range(3):
            assert proc.stdout.readline().strip() == "batch"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        figures = json.loads(out.splitlines()[-1])
        assert figures["interrupted"] is True
        assert figures["rows_done"] >= 150  # the batch in flight was finished, not cut
        assert figures["rows_done"] % 50 == 0
        assert figures["saved"] == figures["rows_done"]


class TestCtrlCWhileReading:
    """Ctrl-C while the source blocks ends the stream now; rows already read still run."""

    def test_blocked_source_is_cut_short(self) -> None:
        def tail() -> Iterator[int]:
            yield from range(25)
            time.sleep(30)  # no new lines: a read that blocks
            yield from range(25, 50)

        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        started = time.perf_counter()
        try:
            stream = _double_flow().stream(tail(), batch_size=10)
            outputs = [r.output for r in stream]
        finally:
            timer.cancel()
        assert time.perf_counter() - started < 10
        assert outputs == [
            [i * 2 for i in range(10)],
            [i * 2 for i in range(10, 20)],
            [i * 2 for i in range(20, 25)],
        ]
        assert (stream.rows_done, stream.interrupted) == (25, True)

    def test_stop_with_an_async_source_reads_no_further(self) -> None:
        read = {"n": 0}

        async def source() -> AsyncIterator[int]:
            for i in range(100):
                read["n"] += 1
                yield i

        stream = _double_flow().stream(source(), batch_size=10)
        for _ in stream:
            stream.stop()
        assert (stream.rows_done, stream.interrupted) == (10, True)
        assert read["n"] <= 11


class TestInFlight:
    """``max_in_flight`` batches really run at the same time."""

    def test_sync_batches_run_on_threads_together(self) -> None:
        barrier = threading.Barrier(3, timeout=10)

        @kf.faas("MeetTheOthers")
        def meet(flow: kf.Flow, rows: list[int]) -> None:
            barrier.wait()  # passes only when three batches are running at once
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("together").calculate("MeetTheOthers").build()
        stream = flow.stream(range(60), batch_size=10, max_in_flight=3)
        assert [x for r in stream for x in r.output] == list(range(60))
        assert stream.batches_done == 6

    def test_async_batches_overlap_up_to_the_limit(self) -> None:
        active = {"now": 0, "most": 0}

        @kf.faas("Overlap")
        async def overlap(flow: kf.Flow, rows: list[int]) -> None:
            active["now"] += 1
            active["most"] = max(active["most"], active["now"])
            await asyncio.sleep(0.02)
            active["now"] -= 1
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("overlap").calculate("Overlap").build()

        async def main() -> list[int]:
            stream = flow.astream(range(80), batch_size=10, max_in_flight=4)
            return [x async for r in stream for x in r.output]

        assert asyncio.run(main()) == list(range(80))
        assert active["most"] == 4


class BatchLog(Observer):
    """Records every ``batch_done`` it sees."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, list[Any]]] = []

    def batch_done(self, flow: str, batch: int, result: kf.RunResult) -> None:
        self.seen.append((flow, batch, list(result.output)))


def _tag_flow() -> kf.Flow:
    @kf.faas("TagOdd")
    def tag_odd(ctx: Any, flow: kf.Flow, rows: list[int]) -> None:
        for row in rows:
            if row % 2:
                flow.dead_letter(row, "odd")
            else:
                flow.commit_row(f"{ctx}:{row}")

    return kf.FlowBuilder("tag").calculate("TagOdd").build()


class TestStreamOptions:
    """``options=`` reaches every batch's run, sync and async; ``ctx=`` overrides it."""

    def test_sync_stream_runs_every_batch_with_the_options(self) -> None:
        letters: list[Any] = []
        options = RunOptions(ctx="opt", dead_letters=letters, max_steps=5)
        stream = Stream(_tag_flow(), range(6), batch_size=4, options=options)
        assert [r.output for r in stream] == [["opt:0", "opt:2"], ["opt:4"]]
        assert [letter.row for letter in letters] == [1, 3, 5]
        assert stream.ctx == "opt"

    def test_ctx_keyword_overrides_the_options(self) -> None:
        stream = Stream(_tag_flow(), [0], options=RunOptions(ctx="opt", dead_letters=[]), ctx="kw")
        assert [r.output for r in stream] == [["kw:0"]]
        assert stream.options.ctx == "kw"

    def test_async_stream_runs_every_batch_with_the_options(self) -> None:
        letters: list[Any] = []
        options = RunOptions(ctx="a", dead_letters=letters)

        async def main() -> list[list[Any]]:
            stream = AsyncStream(_tag_flow(), range(5), batch_size=2, options=options)
            return [r.output async for r in stream]

        assert asyncio.run(main()) == [["a:0"], ["a:2"], ["a:4"]]
        assert [letter.row for letter in letters] == [1, 3]

    def test_max_steps_apply_to_each_batch(self) -> None:
        @kf.faas("Again")
        def again(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)
            flow.next(kf.actions.jump_func("Again"))

        flow = kf.FlowBuilder("loop").calculate("Again").build()
        stream = Stream(flow, range(3), options=RunOptions(max_steps=2))
        with pytest.raises(kf.FlowLoopError, match="step limit of 2"):
            list(stream)

    def test_options_must_be_run_options(self) -> None:
        with pytest.raises(kf.ConfigError, match=r"options must be a kisflow\.RunOptions"):
            Stream(_double_flow(), [1], options={"ctx": 1})


class TestBatchDoneObservers:
    """Observers hear ``batch_done(flow, batch, result)`` for each batch handed out."""

    def test_process_wide_and_per_stream_observers(self) -> None:
        everywhere, mine = BatchLog(), BatchLog()
        with observers.observing(everywhere):
            stream = Stream(
                _double_flow(), range(5), batch_size=2, options=RunOptions(observers=mine)
            )
            results = [r.output for r in stream]
        expected = [("double", 1, [0, 2]), ("double", 2, [4, 6]), ("double", 3, [8])]
        assert everywhere.seen == mine.seen == expected
        assert results == [out for _, _, out in expected]

    def test_flow_stream_passes_its_options_on(self) -> None:
        log = BatchLog()
        letters: list[Any] = []
        stream = _tag_flow().stream(
            range(4), kf.RunOptions(ctx="o", observers=log), batch_size=2, dead_letters=letters
        )
        assert [r.output for r in stream] == [["o:0"], ["o:2"]]
        assert [n for _, n, _ in log.seen] == [1, 2]
        assert [letter.row for letter in letters] == [1, 3]

    def test_threaded_and_async_streams_tell_in_order(self) -> None:
        log = BatchLog()
        options = RunOptions(observers=(log,))
        assert (
            len(
                list(
                    Stream(
                        _double_flow(), range(30), batch_size=7, max_in_flight=3, options=options
                    )
                )
            )
            == 5
        )

        async def main() -> int:
            stream = AsyncStream(
                _double_flow(), range(9), batch_size=4, max_in_flight=2, options=options
            )
            return len([r async for r in stream])

        assert asyncio.run(main()) == 3
        assert [n for _, n, _ in log.seen] == [1, 2, 3, 4, 5, 1, 2, 3]

    def test_a_failing_observer_does_not_stop_the_stream(self) -> None:
        class Broken(Observer):
            def batch_done(self, flow: str, batch: int, result: kf.RunResult) -> None:
                raise RuntimeError("observer bug")

        log = BatchLog()
        stream = Stream(
            _double_flow(), range(4), batch_size=2, options=RunOptions(observers=(Broken(), log))
        )
        assert len(list(stream)) == 2
        assert [n for _, n, _ in log.seen] == [1, 2]

    def test_a_failed_batch_is_not_told(self) -> None:
        @kf.faas("FailSecond")
        def fail_second(flow: kf.Flow, rows: list[int]) -> None:
            if 2 in rows:
                raise ValueError("no")
            flow.commit_row_batch(rows)

        log = BatchLog()
        flow = kf.FlowBuilder("f2").calculate("FailSecond").build()
        stream = Stream(flow, range(6), batch_size=2, options=RunOptions(observers=log))
        with pytest.raises(kf.StageExecutionError):
            list(stream)
        assert [n for _, n, _ in log.seen] == [1]
