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
