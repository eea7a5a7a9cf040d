"""The observer event ``call_failed``: each FaaS call that raises, retried or not, sync or async."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import kisflow as kf
from kisflow.observers import StageCall


class Calls(kf.Observer):
    """Records failed calls, retries and finished stage calls, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def call_failed(self, run: Any, stage: kf.Stage, attempt: int, error: BaseException) -> None:
        self.events.append(("failed", stage.name, attempt, str(error)))

    def retried(self, run: Any, stage: kf.Stage, attempt: int, error: BaseException) -> None:
        self.events.append(("retried", stage.name, attempt))

    def stage_done(self, run: Any, call: StageCall) -> None:
        self.events.append(("done", call.stage.name, call.attempts))


def _flaky(fails: int, retry_times: int) -> kf.Flow:
    """A flow whose Save fails its first ``fails`` calls."""
    calls: list[int] = []

    @kf.faas("Flaky", replace=True)
    def flaky(flow: kf.Flow, rows: list[int]) -> None:
        calls.append(1)
        if len(calls) <= fails:
            raise OSError(f"call {len(calls)} fails")
        flow.commit_row_batch(rows)

    option = kf.FuncOption(retry_times=retry_times)
    return kf.FlowBuilder("flaky").save("Flaky", option=option).build()


class TestCallFailed:
    def test_each_failed_try_then_the_success(self) -> None:
        obs = Calls()
        assert _flaky(2, 2).run([1], kf.RunOptions(observers=(obs,))).output == [1]
        assert obs.events == [
            ("failed", "Flaky", 1, "call 1 fails"),
            ("retried", "Flaky", 2),
            ("failed", "Flaky", 2, "call 2 fails"),
            ("retried", "Flaky", 3),
            ("done", "Flaky", 3),
        ]

    def test_the_final_failure_too(self) -> None:
        obs = Calls()
        with pytest.raises(kf.StageExecutionError):
            _flaky(5, 1).run([1], kf.RunOptions(observers=(obs,)))
        assert obs.events == [
            ("failed", "Flaky", 1, "call 1 fails"),
            ("retried", "Flaky", 2),
            ("failed", "Flaky", 2, "call 2 fails"),
        ]

    def test_a_call_that_is_not_retried(self) -> None:
        @kf.faas("Rejects")
        def rejects(flow: kf.Flow, rows: list[int]) -> None:
            flow.dead_letter(rows[0], "no")  # no sink: a RowRejectedError, not retried

        obs = Calls()
        flow = kf.FlowBuilder("rej").calculate("Rejects", option=kf.FuncOption(retry_times=3))
        with pytest.raises(kf.KisFlowError):
            flow.build().run([7], kf.RunOptions(observers=(obs,)))
        assert [e[:3] for e in obs.events] == [("failed", "Rejects", 1)]

    def test_async_runs_tell_it_as_well(self) -> None:
        obs = Calls()
        flow = _flaky(1, 1)
        result = asyncio.run(flow.arun([3], kf.RunOptions(observers=(obs,))))
        assert result.output == [3]
        assert obs.events == [
            ("failed", "Flaky", 1, "call 1 fails"),
            ("retried", "Flaky", 2),
            ("done", "Flaky", 2),
        ]

    def test_the_interface_has_it_as_a_no_op(self, monkeypatch: pytest.MonkeyPatch) -> None:
        stage = _flaky(0, 0).stages[0]
        assert kf.Observer().call_failed(None, stage, 1, OSError("x")) is None  # type: ignore[arg-type]
        # An observer that does not override it is called without error or warning.
        warned: list[str] = []
        monkeypatch.setattr("kisflow.observers.logger.warning", warned.append)
        monkeypatch.setattr(
            "kisflow.observers.logger.opt", lambda **kw: type("L", (), {"warning": warned.append})
        )
        with kf.observers.observing(kf.Observer()):
            assert _flaky(1, 1).run([4]).output == [4]
        assert warned == []
