"""``run_jsonl_stream`` names input lines: bad lines, unconvertible rows, failed batches."""

from __future__ import annotations

import io
import sys

import pytest

import kisflow as kf
from kisflow.errors import InputLineError
from kisflow.executors.stream import run_jsonl_stream


def _typed_flow() -> kf.Flow:
    @kf.faas("Tens")
    def tens(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch([r * 10 for r in rows])

    return kf.FlowBuilder("tens").calculate("Tens").build()


class TestBadLines:
    """A line that is no row is an ``InputLineError`` with its source and line number."""

    @pytest.mark.parametrize(
        ("line", "problem"),
        [
            (
                b"{oops",
                "is not JSON: Expecting property name enclosed in double quotes at column 2",
            ),
            (b'"\xff"', "is not UTF-8 (byte 2: invalid start byte)"),
            (b"[" * 10_000, "is nested too deeply to read as JSON"),
            (b"9" * 5_000, "cannot be read as JSON: Exceeds the limit (4300 digits)"),
        ],
    )
    def test_bytes_lines(self, line: bytes, problem: str) -> None:
        out = io.StringIO()
        with pytest.raises(InputLineError) as info:
            run_jsonl_stream(
                _typed_flow(), [b"1\n", b"\n", line + b"\n"], out, batch_size=1, source="r.jsonl"
            )
        err = info.value
        assert isinstance(err, kf.RunError)
        assert isinstance(err, ValueError)
        assert (err.flow, err.stage, err.source, err.line) == ("tens", None, "r.jsonl", 3)
        assert str(err).startswith(f"flow 'tens': r.jsonl line 3 {problem}")
        assert out.getvalue() == "10\n"

    def test_a_bom_on_the_first_line_is_skipped(self) -> None:
        flow = _typed_flow()
        out = io.StringIO()
        run_jsonl_stream(flow, ["\ufeff1\n", "2\n"], out)
        assert out.getvalue() == "10\n20\n"
        out = io.StringIO()
        run_jsonl_stream(flow, [b"\xef\xbb\xbf1\n", b"2\n"], out)
        assert out.getvalue() == "10\n20\n"


class TestRowsByLine:
    """A failed batch's note and an unconvertible row name input lines, in every mode."""

    @pytest.mark.parametrize("in_flight", [1, 3])
    def test_unconvertible_row_named_by_line(self, in_flight: int) -> None:
        lines = ["1", "2", "", "3", "4", "", "", "5", '"x"', "6", "7", "8"]
        out = io.StringIO()
        with pytest.raises(kf.RowConversionError) as info:
            run_jsonl_stream(
                _typed_flow(),
                [f"{line}\n" for line in lines],
                out,
                batch_size=2,
                max_in_flight=in_flight,
                source="rows.jsonl",
            )
        err = info.value
        assert str(err).startswith(
            "flow 'tens' stage 'Tens': rows.jsonl line 9 cannot be converted to int: "
        )
        assert err.__notes__ == ["in stream batch 3 (rows.jsonl lines 8..9)"]
        assert (err.stage, err.row_index, err.row) == ("Tens", 1, "x")
        assert isinstance(err.__cause__, ValueError)
        assert out.getvalue() == "10\n20\n30\n40\n"

    def test_a_failing_stage_gets_the_batch_lines(self) -> None:
        @kf.faas("Fails")
        def fails(flow: kf.Flow, rows: list[int]) -> None:
            if 5 in rows:
                raise OSError("no")
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("fails").calculate("Fails").build()
        with pytest.raises(kf.StageExecutionError) as info:
            run_jsonl_stream(flow, ["1", "2", "3", "", "4", "5"], io.StringIO(), batch_size=2)
        assert info.value.__notes__ == ["in stream batch 3 (<input> lines 6..6)"]

    def test_memory_of_lines_is_dropped_with_each_batch(self) -> None:
        """Only the rows of batches in flight are remembered with their lines."""
        seen: list[int] = []

        @kf.faas("Count")
        def count(flow: kf.Flow, rows: list[int]) -> None:
            frame = sys._getframe()
            while frame.f_code.co_name != "run_jsonl_stream":
                assert frame.f_back is not None
                frame = frame.f_back
            seen.append(len(frame.f_locals["reader"].pending))
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("count").calculate("Count").build()
        run_jsonl_stream(flow, (f"{i}\n" for i in range(10)), io.StringIO(), batch_size=3)
        assert seen == [3, 3, 3, 1]
