"""Every example runs and produces what its README says."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class TestQuickstart:
    """The quickstart example computes the averages and prints the graph."""

    def test_runs_in_a_fresh_interpreter(self) -> None:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart" / "main.py")],
            capture_output=True,
            text=True,
            check=True,
        )
        lines = proc.stdout.splitlines()
        assert lines[:3] == [
            "stu_id=101 avg_score=90.00",
            "stu_id=102 avg_score=76.67",
            "stu_id=103 avg_score=2.00",
        ]
        assert "run ended: completed, 3 rows out" in lines
        assert '"AvgStuScore" -> "PrintStuAvgScore";' in proc.stdout

    def test_main_returns_the_result(self, capsys: pytest.CaptureFixture[str]) -> None:
        module = runpy.run_path(str(ROOT / "examples" / "quickstart" / "main.py"))
        result = module["main"]()
        assert [r.avg_score for r in result.output] == pytest.approx([90.0, 76.6666667, 2.0])
        assert result.stage("AvgStuScore").rows_in == 3
        assert "stu_id=101" in capsys.readouterr().out


class TestStreamExample:
    """The stream example saves every non-health-check row and counts slow ones."""

    def test_runs_in_a_fresh_interpreter(self) -> None:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "stream" / "main.py")],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        lines = proc.stdout.splitlines()
        assert lines[:4] == [f"batch {n}: {n * 1000} rows read" for n in (25, 50, 75, 100)]
        assert lines[4:] == [
            "stream finished: 100000 rows in 100 batches",
            "saved 90000 hits, 14985 slow",
            "async stream: 2500 slow ticks",
        ]


class TestDaskExample:
    """The Dask example saves each file partition once on a local cluster."""

    def test_runs_in_a_fresh_interpreter(self) -> None:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "dask" / "main.py")],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        lines = proc.stdout.splitlines()
        assert lines[:6] == [f"scores-{i}: 1000 rows in, 900 saved" for i in range(6)]
        assert lines[6].startswith("saved 5400 rows from 6 partitions on ")
