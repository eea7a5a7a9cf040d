"""``kisflow run`` says where things went wrong: input lines, the user's code, how it ended.

Every test runs the real command line (``kisflow.cli.main`` through click's CliRunner, or
the installed script in a subprocess) and checks the exit code and stderr's lines.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kisflow.cli import main

SCRIPT = Path(sys.executable).parent / "kisflow"

FAAS = """\
import json

import kisflow as kf


@kf.faas("Ints")
def ints(flow: kf.Flow, rows: list[int]) -> None:
    flow.commit_row_batch([r * 10 for r in rows])


@kf.faas("Names")
def names(flow, rows):
    flow.commit_row_batch([f"n{r}" for r in rows])


@kf.faas("Boom")
def boom(flow, rows):
    for r in rows:
        if r == 30:
            raise ValueError(f"bad row {r}")  # BOOM
        flow.commit_row(r)


@kf.faas("Parse")
def parse(flow, rows):
    for r in rows:
        flow.commit_row(json.loads(str(r) + "{"))  # PARSE


@kf.faas("Letters")
def letters(flow, rows):
    flow.commit_row_batch("abc")  # LETTERS


@kf.faas("Sets")
def sets(flow, rows):
    flow.commit_row_batch([{r} for r in rows])
"""

FLOWS = {
    "Typed": ["Ints"],
    "Later": ["Names", "Ints"],
    "Boom": ["Ints", "Boom"],
    "Parse": ["Ints", "Parse"],
    "Letters": ["Letters"],
    "Sets": ["Sets"],
}


def _folder(
    root: Path, flows: dict[str, list[str]], *, disabled: Sequence[str] = ()
) -> tuple[Path, Path]:
    """A config folder with ``flows`` (each a chain of Calculate stages) and the FaaS file."""
    conf = root / "conf"
    conf.mkdir()
    funcs: set[str] = set()
    for name, chain in flows.items():
        status = 0 if name in disabled else 1
        stages = "".join(f"  - fname: {f}\n" for f in chain)
        (conf / f"flow-{name}.yml").write_text(
            f"kistype: flow\nstatus: {status}\nflow_name: {name}\nflows:\n{stages}"
        )
        funcs.update(chain)
    for f in sorted(funcs):
        (conf / f"func-{f}.yml").write_text(f"kistype: func\nfname: {f}\nfmode: Calculate\n")
    faas = root / "faas.py"
    faas.write_text(FAAS)
    return conf, faas


def _line(marker: str) -> int:
    """The line (from 1) of FAAS that carries ``marker``."""
    return next(i for i, text in enumerate(FAAS.splitlines(), 1) if marker in text)


def _run(conf: Path, faas: Path, *args: str, stdin: str | bytes = "") -> Result:
    return CliRunner().invoke(main, ["run", str(conf), "--faas", str(faas), *args], input=stdin)


def _errors(result: Result) -> list[str]:
    """stderr from the ``kisflow: error:`` line on."""
    lines = result.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("kisflow: error:")]
    assert starts, result.stderr
    return lines[starts[0] :]


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, Path]:
    return _folder(tmp_path, FLOWS)


class TestSummary:
    """The summary's first word says how the command ended."""

    def test_completed(self, folder: tuple[Path, Path]) -> None:
        result = _run(*folder, "--flow", "Typed", "--batch-size", "2", stdin="1\n2\n3\n")
        assert result.exit_code == 0, result.output
        assert result.stderr.splitlines()[0] == "flow Typed: completed, 3 rows out in 2 batches"

    def test_failed_after_a_batch_that_completed(self, folder: tuple[Path, Path]) -> None:
        result = _run(*folder, "--flow", "Boom", "--batch-size", "2", stdin="1\n2\n3\n")
        assert result.exit_code == 3, result.output
        assert result.stderr.splitlines()[0] == "flow Boom: failed, 2 rows out in 1 batch"
