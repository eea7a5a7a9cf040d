"""KisFlow's debug mode (``kisflow.runlog``): runs and stream batches in the logs.

A loguru sink collects the records; each test checks the exact lines and their bound
figures, and that nothing is done when loguru would not emit kisflow's DEBUG records.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger

import kisflow as kf
from kisflow import _state, runlog
from kisflow.observers import StreamStatus
from tests.demoflow import demo_builder


class Sink:
    """The records kisflow's debug mode logged, at or above ``level``."""

    def __init__(self, level: str) -> None:
        self.records: list[Any] = []
        self.id = logger.add(self._put, level=level, filter="kisflow.runlog", format="{message}")

    def _put(self, message: Any) -> None:
        self.records.append(message.record)

    def at(self, level: str) -> list[Any]:
        return [r for r in self.records if r["level"].name == level]

    def stage_lines(self) -> list[Any]:
        return [r for r in self.at("DEBUG") if "stage" in r["extra"] and "rows_in" in r["extra"]]


@pytest.fixture
def sinks() -> Iterator[list[Sink]]:
    """kisflow's logger enabled, with only the sinks a test adds (loguru's default too)."""
    logger.remove()
    made: list[Sink] = []
    logger.enable("kisflow")
    try:
        yield made
    finally:
        logger.disable("kisflow")
        logger.remove()
        logger.add(sys.stderr)


def _sink(sinks: list[Sink], level: str) -> Sink:
    sink = Sink(level)
    sinks.append(sink)
    return sink


def _three_stages() -> kf.Flow:
    @kf.faas("Print")
    def show(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(rows)

    return demo_builder().expand("Print").build()


_FIGURES = ("flow", "stage", "position", "mode", "rows_in", "rows_out", "dead", "attempts")


class TestStageLines:
    """At DEBUG a run logs one line per stage call with its figures, and one as it ends."""

    def test_one_line_per_stage_call_with_exact_figures(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")
        flow = _three_stages()
        result = flow.run(list(range(10)))
        assert result.output == [0, 4, 8, 12, 16]
        lines = sink.stage_lines()
        assert [tuple(r["extra"][k] for k in _FIGURES) for r in lines] == [
            ("demo", "Keep", 0, "Verify", 10, 5, 0, 1),
            ("demo", "Double", 1, "Calculate", 5, 5, 0, 1),
            ("demo", "Print", 2, "Expand", 5, 5, 0, 1),
        ]
        assert [r["extra"]["action"] for r in lines] == ["next", "next", "end"]
        assert all(isinstance(r["extra"]["ms"], float) and r["extra"]["ms"] >= 0 for r in lines)
        assert len({r["extra"]["run"] for r in lines}) == 1
        assert re.fullmatch(
            r"flow 'demo' run \d+ stage 'Keep' \(Verify\): 10 rows in, 5 out, 0 dead, "
            r"\d+\.\d{3} ms, 1 attempt\(s\) -> next",
            lines[0]["message"],
        )
        assert lines[0]["name"] == "kisflow.runlog"

    def test_the_run_ends_with_one_line(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")
        _three_stages().run(list(range(10)))
        debug = sink.at("DEBUG")
        assert len(debug) == 4  # three stage calls, then the run
        assert re.fullmatch(
            r"flow 'demo' run \d+: completed after 3 step\(s\), 5 rows out, \d+\.\d{3} ms",
            debug[-1]["message"],
        )

    def test_counts_follow_stage_calls_not_rows(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")
        flow = _three_stages()
        flow.run(list(range(10)))
        small = len(sink.records)
        flow.run(list(range(10_000)))
        assert len(sink.records) == 2 * small

    def test_actions_are_named(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")
        seen: list[int] = []

        @kf.faas("Loop")
        def loop(flow: kf.Flow, rows: list[int]) -> None:
            seen.append(1)
            flow.commit_row_batch(rows)
            if len(seen) < 2:
                flow.next(kf.actions.jump_func("Loop"))
            else:
                flow.next(kf.actions.data_reuse)

        @kf.faas("Nothing")
        def nothing(flow: kf.Flow, rows: list[int]) -> None:
            flow.next(kf.actions.force_entry_next)

        @kf.faas("Stop")
        def stop(flow: kf.Flow, rows: list[int]) -> None:
            flow.next(kf.actions.abort)

        flow = (
            kf.FlowBuilder("acts")
            .calculate("Loop")
            .verify("Nothing")
            .calculate("Stop")
            .verify("Nothing")
            .build()
        )
        result = flow.run([1, 2])
        assert result.ended is kf.RunEnd.ABORTED
        assert [(r["extra"]["stage"], r["extra"]["action"]) for r in sink.stage_lines()] == [
            ("Loop", "jump to 'Loop'"),
            ("Loop", "next"),
            ("Nothing", "next"),
            ("Stop", "abort"),
        ]
        assert re.fullmatch(
            r"flow 'acts' run \d+: aborted at 'Stop' after 4 step\(s\), 0 rows out, \S+ ms",
            sink.at("DEBUG")[-1]["message"],
        )

    def test_a_stage_that_commits_nothing_stops_the_run(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")

        @kf.faas("Drop")
        def drop(flow: kf.Flow, rows: list[int]) -> None:
            return None

        kf.faas("Pass", lambda flow: flow.commit_row_batch(flow.input()))
        kf.FlowBuilder("drops").verify("Drop").calculate("Pass").build().run([1])
        assert [r["extra"]["action"] for r in sink.stage_lines()] == ["stop (no rows)"]
        assert "no_rows at 'Drop' after 1 step(s)" in sink.at("DEBUG")[-1]["message"]

    def test_failed_calls_retries_and_dead_letters(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")
        calls: list[int] = []
        letters: list[kf.DeadLetter] = []

        @kf.faas("Flaky")
        def flaky(flow: kf.Flow, rows: list[int]) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise ValueError("once")
            for row in rows:
                if row < 0:
                    flow.dead_letter(row, "negative")
                else:
                    flow.commit_row(row)

        option = kf.FuncOption(retry_times=1, return_duration=0)
        flow = kf.FlowBuilder("flaky").calculate("Flaky", option=option).build()
        flow.set_dead_letters(letters)
        flow.run([1, -1, 2])
        failed = [r for r in sink.at("DEBUG") if "attempt" in r["extra"]]
        assert [r["message"] for r in failed] == [
            f"flow 'flaky' run {failed[0]['extra']['run']} stage 'Flaky' (Calculate): "
            f"attempt 1 raised ValueError: once"
        ]
        [line] = sink.stage_lines()
        assert (line["extra"]["rows_in"], line["extra"]["rows_out"]) == (3, 2)
        assert (line["extra"]["dead"], line["extra"]["attempts"]) == (1, 2)
        assert len(letters) == 1

    def test_a_failed_run_says_why(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")

        @kf.faas("Boom")
        def boom(flow: kf.Flow, rows: list[int]) -> None:
            raise KeyError("k")

        with pytest.raises(kf.StageExecutionError):
            kf.FlowBuilder("bad").calculate("Boom").build().run([1])
        messages = [r["message"] for r in sink.at("DEBUG")]
        assert len(messages) == 2
        assert messages[0].endswith("stage 'Boom' (Calculate): attempt 1 raised KeyError: 'k'")
        assert re.fullmatch(
            r"flow 'bad' run \d+: failed after 1 step\(s\): StageExecutionError: "
            r"flow 'bad' stage 'Boom' raised KeyError: 'k'",
            messages[1],
        )

    def test_a_line_comes_before_the_next_stage_runs(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")
        kf.faas("Pass", lambda flow: flow.commit_row_batch(flow.input()))

        @kf.faas("Boom")
        def boom(flow: kf.Flow, rows: list[int]) -> None:
            raise ValueError("late")

        with pytest.raises(kf.StageExecutionError):
            kf.FlowBuilder("two").calculate("Pass").calculate("Boom").build().run([1])
        messages = [r["message"] for r in sink.at("DEBUG")]
        assert len(messages) == 3
        assert " stage 'Pass' (Calculate): 1 rows in, 1 out," in messages[0]
        assert messages[0].endswith("-> next")
        assert messages[1].endswith("stage 'Boom' (Calculate): attempt 1 raised ValueError: late")
        assert ": failed after 2 step(s): StageExecutionError: " in messages[2]

    def test_a_step_limit_fails_after_the_last_line(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")

        @kf.faas("Again")
        def again(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)
            flow.next(kf.actions.jump_func("Again"))

        flow = kf.FlowBuilder("loop").calculate("Again").max_steps(3).build()
        with pytest.raises(kf.FlowLoopError):
            flow.run([1])
        assert [r["extra"]["action"] for r in sink.stage_lines()] == [
            "jump to 'Again'",
            "jump to 'Again'",
            "failed",
        ]
        assert ": failed after 4 step(s): FlowLoopError: " in sink.at("DEBUG")[-1]["message"]


class TestRows:
    """Row contents are logged only at TRACE."""

    def test_trace_logs_source_and_each_stage_output(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "TRACE")
        _three_stages().run([1, 2, 3, 4])
        assert [r["message"].split(": ", 1)[1] for r in sink.at("TRACE")] == [
            "source rows [1, 2, 3, 4]",
            "rows out [2, 4]",
            "rows out [4, 8]",
            "rows out [4, 8]",
        ]
        assert len(sink.stage_lines()) == 3

    def test_trace_shows_a_bounded_number_of_rows(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "TRACE")
        kf.faas("Pass", lambda flow: flow.commit_row_batch(flow.input()))
        kf.FlowBuilder("big").calculate("Pass").build().run(list(range(250)))
        source = sink.at("TRACE")[0]["message"]
        assert source.endswith(", 99, ...] and 150 more")
        assert ", 100," not in source

    def test_debug_never_shows_rows(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")
        kf.faas("Pass", lambda flow: flow.commit_row_batch(flow.input()))
        kf.FlowBuilder("secret").calculate("Pass").build().run(["s3cr3t-row"])
        assert len(sink.records) == 2
        assert not [r for r in sink.records if "s3cr3t" in r["message"]]
        assert not sink.at("TRACE")


class TestOff:
    """Off, the debug mode adds no observer to a run; the check is made once per run."""

    def test_nothing_at_info(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "INFO")
        assert runlog.level() is None
        assert kf.observers.active() == ()
        _three_stages().run(list(range(10)))
        assert sink.records == []

    def test_nothing_while_the_logger_is_disabled(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "TRACE")
        logger.disable("kisflow")
        assert kf.observers.active() == ()
        _three_stages().run(list(range(10)))
        assert sink.records == []

    def test_a_module_can_be_turned_off_alone(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")
        logger.disable("kisflow.runlog")
        assert runlog.level() is None
        _three_stages().run([2])
        assert sink.records == []
        logger.enable("kisflow.runlog")
        assert runlog.level() == 10

    def test_no_stage_event_reaches_the_log_when_off(
        self, sinks: list[Sink], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _sink(sinks, "INFO")
        calls: list[str] = []
        monkeypatch.setattr(runlog.RunLog, "stage_done", lambda *a: calls.append("done"))
        flow = _three_stages()
        flow.run(list(range(10)))
        assert calls == []
        logger.add(lambda m: None, level="DEBUG")
        flow.run(list(range(10)))
        assert calls == ["done"] * 3

    def test_checked_once_per_run(self, sinks: list[Sink], monkeypatch: pytest.MonkeyPatch) -> None:
        sink = _sink(sinks, "DEBUG")
        asked: list[int] = []
        real = _state.debug_observers

        def counting() -> tuple[Any, ...]:
            asked.append(1)
            return real()

        monkeypatch.setattr(_state, "debug_observers", counting)
        _three_stages().run(list(range(10)))
        assert len(asked) == 1
        assert len(sink.stage_lines()) == 3


class TestStreams:
    """A stream logs one line per committed batch: position, rows committed, lag."""

    def test_the_committed_line(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")
        status = StreamStatus(3, {"offset": 42}, 300, 7, 2, 1.5)
        runlog.RunLog().stream_committed("events", status)
        [record] = sink.records
        assert record["message"] == (
            "stream 'events' batch 3 committed: position {'offset': 42}, 300 rows committed, "
            "lag 7, 2 in flight"
        )
        extra = record["extra"]
        assert (extra["flow"], extra["batch"], extra["position"]) == ("events", 3, {"offset": 42})
        assert (extra["committed"], extra["lag"], extra["in_flight"]) == (300, 7, 2)

    def test_an_unknown_lag(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")
        runlog.RunLog().stream_committed("s", StreamStatus(1, None, 4, None, 0, None))
        assert sink.records[0]["message"] == (
            "stream 's' batch 1 committed: position None, 4 rows committed, lag unknown, "
            "0 in flight"
        )

    def test_the_stream_asks_the_debug_mode_per_batch(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")
        kf.faas("Pass", lambda flow: flow.commit_row_batch(flow.input()))
        flow = kf.FlowBuilder("s").calculate("Pass").build()
        results = list(flow.stream(range(10), batch_size=4, progress=False))
        assert [len(r.output) for r in results] == [4, 4, 2]
        assert [r["extra"]["rows_in"] for r in sink.stage_lines()] == [4, 4, 2]

    def test_a_stream_logs_each_committed_batch(self, sinks: list[Sink]) -> None:
        sink = _sink(sinks, "DEBUG")
        kf.faas("Pass", lambda flow: flow.commit_row_batch(flow.input()))
        flow = kf.FlowBuilder("s").calculate("Pass").build()
        assert len(list(flow.stream(range(10), batch_size=4, progress=False))) == 3
        committed = [r for r in sink.at("DEBUG") if "committed" in r["extra"]]
        assert [(r["extra"]["batch"], r["extra"]["committed"]) for r in committed] == [
            (1, 4),
            (2, 8),
            (3, 10),
        ]
        assert [r["extra"]["position"] for r in committed] == [None] * 3  # a plain iterable
        assert committed[0]["message"] == (
            "stream 's' batch 1 committed: position None, 4 rows committed, lag unknown, "
            "0 in flight"
        )
