"""Tests for the executors' shared parts: the worker entry point's failures, run here."""

from __future__ import annotations

from typing import Any

import pytest

import kisflow as kf
from kisflow.executors import Partition, PartitionResult
from kisflow.executors._partition import FlowPayload, dumps, run_partition, unwrap


def rows_of(spec: Any) -> Any:
    """A partition's rows are its description."""
    return spec


def as_partition(flow: kf.Flow, rows: Any, key: str = "p", load: Any = rows_of) -> PartitionResult:
    """Run ``flow`` on ``rows`` through the workers' entry point, in this process."""
    raw = run_partition(
        FlowPayload.of(flow), dumps(load, [load]), Partition(index=3, key=key, spec=rows)
    )
    return unwrap(raw)


class TestWorkerFailures:
    """A worker's error comes back as flow, stage and a message that says it once."""

    def test_stage_error_message_from_its_cause(self) -> None:
        @kf.faas("Boom")
        def boom(flow: kf.Flow, rows: list[int]) -> None:
            raise KeyError("k")

        flow = kf.FlowBuilder("f").calculate("Boom").build()
        with pytest.raises(kf.PartitionError) as info:
            as_partition(flow, [1])
        err = info.value
        assert str(err) == (
            "flow 'f' stage 'Boom' failed on partition 'p' (index 3): raised KeyError: 'k'"
        )
        assert (err.flow, err.stage, err.partition) == ("f", "Boom", "p")
        assert isinstance(err.__cause__, KeyError)
        assert any(
            "remote traceback (StageExecutionError on " in n for n in err.__cause__.__notes__
        )

    def test_retried_stage_error_says_how_often(self) -> None:
        @kf.faas("Flaky")
        def flaky(flow: kf.Flow, rows: list[int]) -> None:
            raise ValueError("no")

        flow = kf.FlowBuilder("f").calculate("Flaky", option=kf.FuncOption(retry_times=1)).build()
        with pytest.raises(kf.PartitionError, match=r"raised ValueError: no \(after 2 attempts\)$"):
            as_partition(flow, [1])

    def test_other_kisflow_errors_keep_their_whole_message(self) -> None:
        @kf.faas("Reject")
        def reject(flow: kf.Flow, rows: list[int]) -> None:
            for row in rows:
                flow.dead_letter(row, "odd")

        flow = kf.FlowBuilder("f").calculate("Reject").build()
        with pytest.raises(kf.PartitionError) as info:
            as_partition(flow, [7])
        message = str(info.value)
        assert message.startswith(
            "flow 'f' stage 'Reject' failed on partition 'p' (index 3): RowRejectedError: "
        )
        assert "rejected row 7: odd" in message
        assert info.value.stage == "Reject"

    def test_an_error_that_does_not_unpickle_is_a_private_traceback(self) -> None:
        @kf.faas("Reject")
        def reject(flow: kf.Flow, rows: list[int]) -> None:
            flow.dead_letter(rows[0], "odd")

        flow = kf.FlowBuilder("f").calculate("Reject").build()
        with pytest.raises(kf.PartitionError) as info:
            as_partition(flow, [7])
        cause = info.value.__cause__
        assert type(cause).__name__ == "_RemoteTraceback"
        assert "RowRejectedError" in str(cause)
        assert not hasattr(kf.executors, "RemoteTraceback")

    def test_load_error(self) -> None:
        def load(spec: Any) -> list[int]:
            raise OSError("gone")

        @kf.faas("Id")
        def ident(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("f").calculate("Id").build()

        with pytest.raises(kf.PartitionError) as info:
            as_partition(flow, [1], load=load)
        assert str(info.value).endswith("(index 3): load raised OSError: gone")
        assert info.value.stage is None
        assert isinstance(info.value.__cause__, OSError)
