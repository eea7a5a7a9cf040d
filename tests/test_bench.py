"""The benchmark's workload: every variant computes the grade counts the loop does."""

from __future__ import annotations

import pytest

import kisflow as kf
from bench import workload


def _expected(n: int) -> dict[str, int]:
    """Grade counts computed straight from WORKLOAD.md's definition."""
    counts: dict[str, int] = {}
    for i in range(n):
        if i % 10 == 0:
            continue
        avg = (i % 100 + (i * 7) % 100 + (i * 13) % 100) / 3
        grade = "A" if avg >= 80 else "B" if avg >= 60 else "C"
        counts[grade] = counts.get(grade, 0) + 1
    return counts


class TestWorkload:
    """The loop and the kisflow variants agree with the workload's definition."""

    def test_loops(self) -> None:
        assert workload.loop(workload.make_rows(2000)) == _expected(2000)
        assert workload.loop_typed(workload.make_rows(2000)) == _expected(2000)
        assert sum(_expected(2000).values()) == 1800

    @pytest.mark.parametrize("variant", ["row", "batch", "typed"])
    def test_flow_variants(self, variant: str) -> None:
        flow = workload.build(variant, kf.Pool())
        assert workload.run_flow(flow, workload.make_rows(2000)) == _expected(2000)
        # The flow is reusable: a second run gives the same counts.
        assert workload.run_flow(flow, workload.make_rows(500)) == _expected(500)


class TestHarness:
    """``python -m bench`` times both sides of a figure interleaved and prints the tools line."""

    def test_paired_interleaves_and_alternates_the_first_side(self) -> None:
        from bench.__main__ import paired

        calls: list[str] = []
        t_loop, t_flow = paired(lambda: calls.append("loop"), lambda: calls.append("flow"), 4)
        # One warm-up each, then one call of each side per rep, the first side alternating.
        assert calls == ["loop", "flow"] + ["loop", "flow", "flow", "loop"] * 2
        assert t_loop >= 0.0
        assert t_flow >= 0.0

    def test_small_figures_run_and_agree_with_the_loop(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from bench import __main__ as harness

        monkeypatch.setattr(harness, "SMALL_RUNS", 20)
        monkeypatch.setattr(harness, "ARUN_RUNS", 5)
        monkeypatch.setattr(harness, "FIXED_RUNS", 50)
        entries = harness.stream_arun_figures(1)
        assert sorted(entries) == [
            "fixed_cost_us",
            "ratio_arun",
            "ratio_stream_small",
            "stream_cost_us",
        ]
        assert entries["ratio_arun"] > 0
        assert entries["ratio_stream_small"] > 0
        out = capsys.readouterr().out
        assert [line.split()[0] for line in out.splitlines()] == [
            "stream/small",
            "stream",
            "arun/small",
            "fixed",
        ]

    def test_tools_line_and_figure_list(self) -> None:
        from bench import columnar
        from bench.__main__ import FIGURES, memory_figures, rows_figures, tools_line

        assert tools_line({"ratio_big": 0.912, "fixed_cost_us": 2.5}) == (
            "ratio_big=0.91 fixed_cost_us=2.50"
        )
        assert FIGURES[0] is rows_figures
        assert memory_figures in FIGURES
        assert columnar.figures in FIGURES
