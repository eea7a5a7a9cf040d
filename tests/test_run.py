"""Retries in the run loop: attempts, backoff, no duplicated output, and the final error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import kisflow as kf

# Rows nested past the recursion limit can make the interpreter's own handling of an object
# finalised at that depth fail ("Failed to process unraisable exception"): Python at its
# limit, not kisflow, whose outcomes these tests assert.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _flaky(name: str, failures: int, calls: list[int]) -> None:
    """Register a FaaS that commits its rows, then raises on its first ``failures`` calls."""

    @kf.faas(name)
    def flaky(flow: kf.Flow, rows: list[int]) -> None:
        calls.append(len(calls) + 1)
        flow.commit_row_batch(r * 10 for r in rows)
        if len(calls) <= failures:
            raise OSError(f"store unavailable (call {len(calls)})")


def _flow(name: str, retry_times: int, return_duration: int = 0) -> kf.Flow:
    option = kf.FuncOption(retry_times=retry_times, return_duration=return_duration)
    return kf.FlowBuilder("retrying").save(name, option=option).build()


class TestRetries:
    """A stage that fails a set number of times is retried until it succeeds."""

    @pytest.mark.parametrize("failures", [1, 2, 3])
    def test_succeeds_within_retry_times_without_duplicates(self, failures: int) -> None:
        calls: list[int] = []
        _flaky("Store", failures, calls)
        result = _flow("Store", retry_times=3, return_duration=1).run([1, 2, 3])
        assert calls == list(range(1, failures + 2))
        assert result.output == [10, 20, 30]
        stats = result.stage("Store")
        assert (stats.calls, stats.retries, stats.rows_in, stats.rows_out) == (1, failures, 3, 3)
        assert result.retries == failures

    def test_last_attempt_fails_with_attempts(self) -> None:
        calls: list[int] = []
        _flaky("Store", 10, calls)
        with pytest.raises(kf.StageExecutionError, match=r"after 3 attempts") as info:
            _flow("Store", retry_times=2).run([1])
        err = info.value
        assert (err.flow, err.stage, err.attempts) == ("retrying", "Store", 3)
        assert isinstance(err.__cause__, OSError)
        assert "call 3" in str(err.__cause__)
        assert "raised OSError: store unavailable (call 3)" in str(err)
        assert len(calls) == 3

    def test_no_retry_times_means_one_attempt(self) -> None:
        calls: list[int] = []
        _flaky("Store", 1, calls)
        with pytest.raises(kf.StageExecutionError) as info:
            _flow("Store", retry_times=0).run([1])
        assert info.value.attempts == 1
        assert "attempts" not in str(info.value)
        assert calls == [1]

    def test_kisflow_run_errors_are_not_retried(self) -> None:
        calls: list[int] = []

        @kf.faas("Reject")
        def reject(flow: kf.Flow, rows: list[int]) -> None:
            calls.append(1)
            flow.dead_letter(rows[0], "no")

        flow = kf.FlowBuilder("f").verify("Reject", option=kf.FuncOption(retry_times=5)).build()
        with pytest.raises(kf.RowRejectedError) as info:
            flow.run([1])
        assert calls == [1]
        assert "in flow 'f', stage 'Reject'" in info.value.__notes__[0]

    def test_connector_errors_are_retried(self) -> None:
        calls: list[int] = []

        @kf.faas("Conn")
        def conn(flow: kf.Flow, rows: list[int]) -> None:
            calls.append(1)
            if len(calls) < 2:
                raise kf.ConnectorError("redis went away", connector="r")
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("f").save("Conn", option=kf.FuncOption(retry_times=1)).build()
        assert flow.run([7]).output == [7]
        assert calls == [1, 1]

    def test_connector_error_after_retries_stays_a_connector_error(self) -> None:
        @kf.faas("Conn")
        def conn(flow: kf.Flow, rows: list[int]) -> None:
            raise kf.ConnectorError("redis went away", connector="r", type="redis")

        flow = kf.FlowBuilder("f").save("Conn", option=kf.FuncOption(retry_times=1)).build()
        with pytest.raises(
            kf.ConnectorError, match=r"redis went away \(after 2 attempts\)"
        ) as info:
            flow.run([7])
        assert (info.value.connector, info.value.type) == ("r", "redis")
        assert (info.value.flow, info.value.stage) == ("f", "Conn")
        assert isinstance(info.value.__cause__, kf.ConnectorError)
        assert "in flow 'f', stage 'Conn'" in info.value.__notes__

    def test_a_connector_error_that_cannot_heal_is_not_retried(self) -> None:
        calls: list[int] = []

        @kf.faas("Conn")
        def conn(flow: kf.Flow, rows: list[int]) -> None:
            calls.append(1)
            raise kf.ConnectorError("bad row", connector="r", retryable=False)

        flow = kf.FlowBuilder("f").save("Conn", option=kf.FuncOption(retry_times=3)).build()
        with pytest.raises(kf.ConnectorError) as info:
            flow.run([7])
        assert str(info.value) == "bad row"
        assert calls == [1]

    def test_generator_and_async_stages_do_not_duplicate(self) -> None:
        calls: list[int] = []

        @kf.faas("Gen")
        def gen(flow: kf.Flow, rows: list[int]) -> Iterator[int]:
            calls.append(1)
            yield from rows
            if len(calls) < 2:
                raise OSError("half way")

        @kf.faas("Async")
        async def run_async(flow: kf.Flow, rows: list[int]) -> None:
            calls.append(2)
            flow.commit_row_batch(rows)
            flow.next(kf.actions.abort)
            if calls.count(2) < 2:
                raise OSError("later")

        option = kf.FuncOption(retry_times=1)
        flow = (
            kf.FlowBuilder("f")
            .calculate("Gen", option=option)
            .calculate("Async", option=option)
            .build()
        )
        result = flow.run([1, 2])
        assert result.output == [1, 2]
        assert result.ended is kf.RunEnd.ABORTED
        assert calls == [1, 1, 2, 2]

    def test_actions_of_a_failed_attempt_are_discarded(self) -> None:
        calls: list[int] = []

        @kf.faas("A")
        def a(flow: kf.Flow, rows: list[int]) -> None:
            calls.append(1)
            if len(calls) == 1:
                flow.next(kf.actions.abort)
                raise OSError("first")
            flow.commit_row_batch(rows)

        @kf.faas("B")
        def b(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(r + 1 for r in rows)

        flow = (
            kf.FlowBuilder("f").calculate("A", option=kf.FuncOption(retry_times=1)).calculate("B")
        ).build()
        result = flow.run([1])
        assert result.ended is kf.RunEnd.COMPLETED
        assert result.output == [2]


class TestBackoff:
    """Run.retry returns return_duration, doubling, capped; then None."""

    def _run(self, retry_times: int, return_duration: int) -> Any:
        @kf.faas("S", replace=True)
        def s(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        flow = _flow("S", retry_times, return_duration)
        run = flow._start([1], kf.RunOptions())
        assert run is not None
        self.calls = run.calls()  # kept suspended at the first stage's call
        spec, args, _ = next(self.calls)
        assert (spec.name, args[1]) == ("S", [1])
        return run

    def test_doubling_delays(self) -> None:
        run = self._run(4, 100)
        delays = [run.retry(OSError("x")) for _ in range(5)]
        assert delays == [0.1, 0.2, 0.4, 0.8, None]
        assert run.attempt == 5

    def test_cap(self) -> None:
        run = self._run(3, 20_000)
        assert [run.retry(OSError()) for _ in range(4)] == [20.0, 30.0, 30.0, None]
        run = self._run(2, 45_000)
        assert [run.retry(OSError()) for _ in range(3)] == [45.0, 45.0, None]

    def test_retry_resets_the_buffer(self) -> None:
        run = self._run(1, 0)
        run.commit_row(99)
        assert list(run.buffer) == [99]  # the run is its stage's buffer (a list)
        assert run.retry(OSError()) == 0.0
        assert list(run.buffer) == []
        run.commit_row(1)
        assert list(run.buffer) == [1]


class _Unprintable(Exception):
    """An exception whose text cannot be made."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


class TestUnprintableErrors:
    """Errors whose text cannot be printed still become kisflow's errors, bounded."""

    @pytest.mark.parametrize(
        ("error", "shown"),
        [
            (ValueError(10**5000), "raised ValueError: <int of about 5001 digits>"),
            (_Unprintable("x", 1), "raised _Unprintable: ('x', 1)"),
            (OSError("x" * 100_000), "raised OSError: xxx"),
        ],
        ids=["int-5000-digits", "str-raises", "long"],
    )
    def test_a_faas_error(self, error: Exception, shown: str) -> None:
        @kf.faas("Fail")
        def fail(flow: kf.Flow, rows: list[int]) -> None:
            raise error

        with pytest.raises(kf.StageExecutionError) as info:
            _flow("Fail", retry_times=1, return_duration=1).run([1])
        text = str(info.value)
        assert text.startswith(f"flow 'retrying' stage 'Fail' {shown}")
        assert text.endswith(" (after 2 attempts)")
        assert len(text) < 2200
        assert info.value.__cause__ is error

    def test_a_sink_that_cannot_be_printed(self) -> None:
        class Sink:
            def put(self, letter: kf.DeadLetter) -> None:
                raise _Unprintable()

            def __repr__(self) -> str:
                raise RuntimeError("no repr")

        @kf.faas("Reject")
        def reject(flow: kf.Flow, rows: list[int]) -> None:
            flow.dead_letter(rows[0], _Unprintable())

        flow = kf.FlowBuilder("f").verify("Reject").build()
        with pytest.raises(kf.DeadLetterError) as info:
            flow.run([1], dead_letters=Sink())
        assert str(info.value) == (
            "flow 'f' stage 'Reject': the dead-letter sink <Sink object: repr raised "
            "RuntimeError> failed to store row 0: _Unprintable: <_Unprintable object: str "
            "raised RuntimeError>"
        )


class TestPlainRuns:
    """A flow of plain sync FaaS (they take the flow alone) runs without a generator
    (``Run.run_plain``), which makes the retries itself: the same outcomes as a run
    through ``Run.calls``."""

    def _plain(self, name: str, fn: Any, retry_times: int) -> kf.Flow:
        kf.pool.faas(name, fn)
        option = kf.FuncOption(retry_times=retry_times)
        flow = kf.FlowBuilder(f"plain-{name}").calculate(name, option=option).build()
        assert flow.plan().plain_sync  # this test takes run_plain
        return flow

    def test_a_failed_call_is_retried_and_its_commits_dropped(self) -> None:
        calls: list[int] = []

        def flaky(flow: kf.Flow) -> None:
            calls.append(1)
            flow.commit_row(len(calls))
            if len(calls) < 3:
                raise OSError(f"down ({len(calls)})")

        result = self._plain("PFlaky", flaky, 2).run([0])
        assert result.output == [3]
        assert result.stages[0].retries == 2
        assert len(calls) == 3

    def test_the_last_failure_names_the_stage_and_its_attempts(self) -> None:
        def down(flow: kf.Flow) -> None:
            flow.commit_row(1)
            raise OSError("still down")

        with pytest.raises(kf.StageExecutionError, match="'PDown' raised OSError") as err:
            self._plain("PDown", down, 1).run([0])
        assert err.value.attempts == 2
        assert isinstance(err.value.__cause__, OSError)

    def test_a_generator_retried_after_it_failed_half_way(self) -> None:
        calls: list[int] = []

        def gen(flow: kf.Flow) -> Iterator[int]:
            calls.append(1)
            yield 1
            if len(calls) == 1:
                raise OSError("half way")
            yield 2

        assert self._plain("PGen", gen, 1).run([0]).output == [1, 2]
        assert len(calls) == 2
