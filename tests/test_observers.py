"""Observers and RunOptions: what an observer is told, in which order, and what it costs."""

from __future__ import annotations

from typing import Any

import pytest
from loguru import logger

import kisflow as kf
from kisflow import _state
from kisflow.observers import StageCall


class Recorder(kf.Observer):
    """Records every event as a tuple of plain values."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def run_started(self, run: Any, rows: int) -> None:
        self.events.append(("started", run.flow_name, rows))

    def stage_done(self, run: Any, call: StageCall) -> None:
        self.events.append(
            ("stage", call.stage.name, call.position, call.rows_in, call.rows_out, call.dead)
        )

    def retried(self, run: Any, stage: kf.Stage, attempt: int, error: BaseException) -> None:
        self.events.append(("retried", stage.name, attempt, str(error)))

    def run_done(self, run: Any, result: kf.RunResult | None, error: BaseException | None) -> None:
        self.events.append(
            ("done", None if result is None else result.output, type(error).__name__)
        )


def _flow() -> kf.Flow:
    @kf.faas("Double", replace=True)
    def double(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(r * 2 for r in rows)

    @kf.faas("Positive", replace=True)
    def positive(flow: kf.Flow, rows: list[int]) -> None:
        for r in rows:
            if r > 0:
                flow.commit_row(r)
            else:
                flow.dead_letter(r, "not positive")

    return kf.FlowBuilder("obs").calculate("Double").verify("Positive").build()


class StartRecorder(Recorder):
    """Also records ``stage_started``."""

    def stage_started(self, run: Any, stage: kf.Stage, position: int) -> None:
        self.events.append(("starting", stage.name, position))


class TestEvents:
    def test_stage_started_comes_before_each_stage_call(self) -> None:
        flow = _flow()
        rec = StartRecorder()
        flow.run([1, -2, 3], kf.RunOptions(observers=(rec,), dead_letters=[]))
        assert rec.events == [
            ("started", "obs", 3),
            ("starting", "Double", 0),
            ("stage", "Double", 0, 3, 3, 0),
            ("starting", "Positive", 1),
            ("stage", "Positive", 1, 3, 2, 1),
            ("done", [2, 6], "NoneType"),
        ]

    def test_one_run_in_order(self) -> None:
        flow = _flow()
        rec = Recorder()
        with kf.observers.observing(rec):
            flow.run([1, -2, 3], dead_letters=[])
        assert rec.events == [
            ("started", "obs", 3),
            ("stage", "Double", 0, 3, 3, 0),
            ("stage", "Positive", 1, 3, 2, 1),
            ("done", [2, 6], "NoneType"),
        ]

    def test_a_failed_run_and_its_retries(self) -> None:
        calls: list[int] = []

        @kf.faas("Flaky")
        def flaky(flow: kf.Flow, rows: list[int]) -> None:
            calls.append(1)
            raise OSError(f"try {len(calls)}")

        func = kf.FuncConfig(fname="Flaky", fmode="Calculate", option=kf.FuncOption(retry_times=2))
        flow = kf.Flow("f").link(func)
        rec = Recorder()
        with pytest.raises(kf.StageExecutionError):
            flow.run([1], kf.RunOptions(observers=(rec,)))
        assert rec.events == [
            ("started", "f", 1),
            ("retried", "Flaky", 2, "try 1"),
            ("retried", "Flaky", 3, "try 2"),
            ("done", None, "StageExecutionError"),
        ]

    def test_run_options_observe_only_their_run(self) -> None:
        flow = _flow()
        rec = Recorder()
        flow.run([1], kf.RunOptions(observers=rec))
        flow.run([2])
        assert [e for e in rec.events if e[0] == "started"] == [("started", "obs", 1)]

    def test_removed_observer_sees_nothing_more(self) -> None:
        flow = _flow()
        rec = Recorder()
        kf.observers.add(rec)
        kf.observers.add(rec)  # once, however often given
        assert kf.observers.active().count(rec) == 1
        flow.run([1])
        kf.observers.remove(rec)
        flow.run([2])
        assert len([e for e in rec.events if e[0] == "started"]) == 1
        assert _state.observers == ()

    def test_a_failing_observer_is_logged_and_the_run_goes_on(self) -> None:
        class Broken(kf.Observer):
            def stage_done(self, run: Any, call: StageCall) -> None:
                raise RuntimeError("observer bug")

        messages: list[str] = []
        logger.enable("kisflow")
        sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
        try:
            result = _flow().run([1, 2], kf.RunOptions(observers=(Broken(),)))
        finally:
            logger.remove(sink)
            logger.disable("kisflow")
        assert result.output == [2, 4]
        assert len([m for m in messages if "observer bug" in m]) == 2  # one per stage call

    def test_stream_batches_are_observed(self) -> None:
        class Batches(kf.Observer):
            def __init__(self) -> None:
                self.seen: list[tuple[str, int, int]] = []

            def batch_done(self, flow: str, batch: int, result: kf.RunResult) -> None:
                self.seen.append((flow, batch, len(result.output)))

            def run_started(self, run: Any, rows: int) -> None:
                self.seen.append(("run", 0, rows))

        obs = Batches()
        flow = _flow()
        with flow.stream(range(1, 6), kf.RunOptions(observers=(obs,)), batch_size=2) as stream:
            outputs = [r.output for r in stream]
        assert outputs == [[2, 4], [6, 8], [10]]
        assert obs.seen == [
            ("run", 0, 2),
            ("obs", 1, 2),
            ("run", 0, 2),
            ("obs", 2, 2),
            ("run", 0, 1),
            ("obs", 3, 1),
        ]

    def test_metrics_observe_while_enabled(self) -> None:
        pytest.importorskip("prometheus_client")
        kf.metrics.enable()
        try:
            assert any(type(o).__name__ == "_Metrics" for o in _state.observers)
        finally:
            kf.metrics.disable()
        assert _state.observers == ()


class TestRunOptions:
    def test_keywords_override_fields(self) -> None:
        seen: list[Any] = []

        @kf.faas("Ctx")
        def ctx_faas(ctx: Any, flow: kf.Flow, rows: list[int]) -> None:
            seen.append(ctx)
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("c").calculate("Ctx").build()
        options = kf.RunOptions(ctx="from-options")
        flow.run([1], options)
        flow.run([1], options, ctx="from-keyword")
        assert seen == ["from-options", "from-keyword"]
        assert options.ctx == "from-options"  # a value: the override made a copy

    def test_dead_letters_and_max_steps_in_options(self) -> None:
        letters: list[kf.DeadLetter] = []
        result = _flow().run([1, -1], kf.RunOptions(dead_letters=letters))
        assert result.output == [2]
        assert [(d.row, d.error) for d in letters] == [(-2, "not positive")]
        with pytest.raises(kf.FlowDefinitionError, match="max_steps must be at least 1, got 0"):
            _flow().run([1], kf.RunOptions(max_steps=0))

    def test_bad_options_are_config_errors(self) -> None:
        with pytest.raises(kf.ConfigError, match=r"options must be a kisflow\.RunOptions"):
            _flow().run([1], {"ctx": 1}, ctx=2)  # type: ignore[arg-type]
        with pytest.raises(kf.ConfigError, match="max_steps must be an int"):
            kf.RunOptions(max_steps="3")  # type: ignore[arg-type]
        with pytest.raises(kf.ConfigError, match="dead-letter sink"):
            kf.RunOptions(dead_letters=42)
        with pytest.raises(kf.ConfigError, match="observers must be"):
            kf.RunOptions(observers=3)  # type: ignore[arg-type]

    def test_replace_makes_a_copy(self) -> None:
        a = kf.RunOptions(ctx=1)
        b = a.replace(ctx=2)
        assert (a.ctx, b.ctx) == (1, 2)
