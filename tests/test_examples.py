"""Every example runs and produces what its README says."""

from __future__ import annotations

import runpy
import shutil
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


class TestYamlSqlite:
    """The YAML + SQLite demo saves averages to SQLite and loads them back for a summary."""

    EXPECTED = (
        "CalcAndSave: 5 rows in, 4 verified, 4 averages saved to conf/data/scores.db",
        "stu_id=101 avg_score=90.00 pass",
        "stu_id=102 avg_score=76.67 pass",
        "stu_id=103 avg_score=52.00 fail",
        "stu_id=105 avg_score=85.00 pass",
        "summary: 4 students, 3 passed, class average 75.92",
        "LoadAndSummarise: 4 rows loaded, ended completed",
    )

    def copy(self, tmp_path: Path) -> Path:
        target = tmp_path / "yaml_sqlite"
        shutil.copytree(
            ROOT / "examples" / "yaml_sqlite", target, ignore=shutil.ignore_patterns("data")
        )
        return target

    def test_runs_twice_in_a_fresh_interpreter(self, tmp_path: Path) -> None:
        example = self.copy(tmp_path)
        for _ in range(2):  # the database is made fresh: the second run prints the same
            proc = subprocess.run(
                [sys.executable, str(example / "main.py")],
                capture_output=True,
                text=True,
                check=True,
            )
            assert proc.stdout.splitlines() == list(self.EXPECTED)
        assert (example / "conf" / "data" / "scores.db").is_file()

    def test_main_returns_the_summary(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        example = self.copy(tmp_path)
        result = runpy.run_path(str(example / "main.py"))["main"]()
        assert result.output == [{"students": 4, "passed": 3, "class_average": 75.92}]
        assert capsys.readouterr().out.splitlines() == list(self.EXPECTED)


class TestObservability:
    """The observability example dead-letters three rows, retries twice and scrapes metrics."""

    def test_runs_in_a_fresh_interpreter(self) -> None:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "observability" / "main.py")],
            capture_output=True,
            text=True,
            check=True,
        )
        out = proc.stdout
        assert "run 'Scores': completed after 2 steps, 3 rows out, 3 dead letters, 2 retries" in out
        assert "  row 3: rejected: score 140 is outside 0..100" in out
        assert "stored: [1, 2, 5]" in out
        assert (
            'func_retries_total{flow_name="Scores",func_mode="Save",func_name="SaveScore"} 2.0'
            in out
        )
        assert "3 in, 3 out, 2 retries" in out

    def test_main_writes_the_dead_letter_file(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        module = runpy.run_path(str(ROOT / "examples" / "observability" / "main.py"))
        result = module["main"](tmp_path)
        assert [r.stu_id for r in result.output] == [1, 2, 5]
        assert result.stage("CheckScore").dead_letters == 3
        assert result.stage("SaveScore").retries == 2
        lines = (tmp_path / "dead_letters.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 3
        assert "stored: [1, 2, 5]" in capsys.readouterr().out


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


class TestStreamCheckpointExample:
    """The checkpoint demo (``make run``) stops half-way, resumes, and stores every row once."""

    def test_runs_in_a_fresh_interpreter(self) -> None:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "stream_checkpoint" / "main.py")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[:3] == [
            "first run: stopped after 5 batches, 1000 lines committed",
            "resumed: 6 more batches, 2001 lines committed in all",
            "rerun: 0 batches, nothing new",
        ]
        assert lines[3].startswith("dead letter: ")
        assert lines[3].endswith(
            "orders.jsonl line 1002 is not JSON: Unterminated string starting at at column 11"
        )
        assert lines[4:] == ["table orders: 2000 rows, 2000 orders: every row stored once: True"]


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


class TestWindows:
    """The windows example prints what its README says, late row and totals included."""

    def test_prints_the_readme_output(self) -> None:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "windows" / "main.py")],
            capture_output=True,
            text=True,
            check=True,
        )
        readme = (ROOT / "examples" / "windows" / "README.md").read_text(encoding="utf-8")
        expected = readme.split("```text\n", 1)[1].split("```", 1)[0]
        assert proc.stdout == expected
        assert "dead letter (late): /late at t=50.0" in proc.stdout
