"""The stream line of the benchmark runs: its three sides store the same rows and agree."""

from __future__ import annotations

import pytest

from bench import stream


class TestStreamBench:
    """bench/stream.py on a small stream: figures for the tools line, every side checked."""

    def test_small_run(self, capsys: pytest.CaptureFixture[str]) -> None:
        figures = stream.run(repeat=1, n=3000)
        assert sorted(figures) == ["exactly_once_cost", "ratio_stream", "stream_msgs_per_s"]
        assert figures["stream_msgs_per_s"] > 0
        assert figures["ratio_stream"] > 0
        out = capsys.readouterr().out
        for side in ("loop", "exactly-once", "at-least-once"):
            assert f"stream/{side}" in out
        assert "3,000" in out

    def test_the_loop_stages(self) -> None:
        scores = [(0, 99, 99, 99), (1, 90, 80, 70), (2, 60, 60, 60), (3, 10, 20, 30)]
        rows = [{"stu_id": i, "score_1": a, "score_2": b, "score_3": c} for i, a, b, c in scores]
        assert stream._stages(rows) == [  # stu_id 0 is dropped (every tenth)
            {"stu_id": 1, "avg_score": 80.0, "grade": "A"},
            {"stu_id": 2, "avg_score": 60.0, "grade": "B"},
            {"stu_id": 3, "avg_score": 20.0, "grade": "C"},
        ]
