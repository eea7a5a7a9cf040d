"""``kisflow run`` says where things went wrong: input lines, the user's code, how it ended.

Every test runs the real command line (``kisflow.cli.main`` through click's CliRunner, or
the installed script in a subprocess) and checks the exit code and stderr's lines.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
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


class TestInputLines:
    """A row that does not convert is named by its input file and line, with its batch."""

    def test_unconvertible_input_row_names_file_and_line(
        self, folder: tuple[Path, Path], tmp_path: Path
    ) -> None:
        rows = tmp_path / "rows.jsonl"
        rows.write_text('1\n2\n\n3\n"x"\n')
        result = _run(*folder, "--flow", "Typed", "--batch-size", "2", "--input", str(rows))
        assert result.exit_code == 3, result.output
        assert result.stdout == "10\n20\n"
        assert _errors(result) == [
            f"kisflow: error: RowConversionError: flow 'Typed' stage 'Ints': {rows} line 5 "
            f"cannot be converted to int: not valid JSON (Expecting value: line 1 column 1 "
            f"(char 0)); row was 'x'",
            f"  in stream batch 2 ({rows} lines 4..5)",
        ]
        assert result.stderr.splitlines()[0] == "flow Typed: failed, 2 rows out in 1 batch"

    def test_a_row_a_stage_made_keeps_its_index_and_gets_the_batch_lines(
        self, folder: tuple[Path, Path]
    ) -> None:
        result = _run(*folder, "--flow", "Later", "--batch-size", "3", stdin="1\n2\n3\n4\n")
        assert result.exit_code == 3, result.output
        # Row 0 of stage Ints' input is "n1", made by Names: no input line is that row.
        assert _errors(result) == [
            "kisflow: error: RowConversionError: flow 'Later' stage 'Ints': row 0 cannot be "
            "converted to int: not valid JSON (Expecting value: line 1 column 1 (char 0)); "
            "row was 'n1'",
            "  in stream batch 1 (stdin lines 1..3)",
        ]
        assert result.stderr.splitlines()[0] == "flow Later: failed, 0 rows out in 0 batches"


class TestUserCode:
    """A failing FaaS, or a --faas file that raises, is shown at its file and line."""

    def test_a_failing_faas_shows_its_line_and_batch(self, folder: tuple[Path, Path]) -> None:
        conf, faas = folder
        result = _run(conf, faas, "--flow", "Boom", "--batch-size", "2", stdin="1\n2\n3\n4\n")
        assert result.exit_code == 3, result.output
        assert result.stdout == "10\n20\n"
        assert _errors(result) == [
            "kisflow: error: StageExecutionError: flow 'Boom' stage 'Boom' raised "
            "ValueError: bad row 30",
            "  in stream batch 2 (stdin lines 3..4)",
            f"  at {faas}:{_line('# BOOM')} in boom",
        ]

    @pytest.mark.parametrize(
        ("flow", "marker", "func", "first", "context"),
        [
            (
                "Parse",
                "# PARSE",
                "parse",
                "kisflow: error: StageExecutionError: flow 'Parse' stage 'Parse' raised "
                "JSONDecodeError: ",
                [],
            ),
            (
                "Letters",
                "# LETTERS",
                "letters",
                "kisflow: error: CommitError: ",
                ["  in flow 'Letters', stage 'Letters'"],
            ),
        ],
        ids=["a-library-it-called-raises", "kisflow-raises-for-it"],
    )
    def test_the_line_shown_is_the_faas_line(
        self,
        folder: tuple[Path, Path],
        flow: str,
        marker: str,
        func: str,
        first: str,
        context: list[str],
    ) -> None:
        """Not the line of the library the FaaS called, nor kisflow's own that raised."""
        conf, faas = folder
        result = _run(conf, faas, "--flow", flow, stdin="1\n")
        assert result.exit_code == 3, result.output
        errors = _errors(result)
        assert errors[0].startswith(first)
        assert errors[1:] == [
            *context,
            "  in stream batch 1 (stdin lines 1..1)",
            f"  at {faas}:{_line(marker)} in {func}",
        ]

    @pytest.mark.parametrize(
        ("name", "source", "expected"),
        [
            (
                "bad.py",
                "import kisflow\n\nraise RuntimeError('boom')\n",
                [
                    "kisflow: error: --faas {path} raised RuntimeError: boom",
                    "  at {path}:3 in <module>",
                ],
            ),
            (
                "syntax.py",
                "x = 1\ndef f(:\n",
                [
                    "kisflow: error: --faas {path} raised SyntaxError: invalid syntax "
                    "(syntax.py, line 2)",
                    "  at {path}:2",
                ],
            ),
            (
                "twice.py",
                "import kisflow as kf\n\n\n@kf.faas('X')\ndef a(flow): ...\n\n\n"
                "@kf.faas('X')\ndef b(flow): ...\n",
                [
                    "kisflow: error: --faas {path}: faas 'X' is already registered; pass "
                    "replace=True to replace it on purpose",
                    "  at {path}:8 in <module>",
                ],
            ),
        ],
        ids=["raises", "syntax-error", "registered-twice"],
    )
    def test_a_faas_file_that_fails_to_load_shows_its_line(
        self,
        folder: tuple[Path, Path],
        tmp_path: Path,
        name: str,
        source: str,
        expected: list[str],
    ) -> None:
        conf, _ = folder
        bad = tmp_path / name
        bad.write_text(source)
        result = CliRunner().invoke(main, ["validate", str(conf), "--faas", str(bad)])
        assert result.exit_code == 1, result.output
        assert result.stderr.splitlines() == [line.format(path=bad) for line in expected]


class TestBadInputLines:
    """Lines that are no rows are usage errors (exit 2) naming the line, never a traceback."""

    def test_a_line_nested_10000_deep(self, folder: tuple[Path, Path]) -> None:
        deep = "[" * 10_000 + "]" * 10_000
        result = _run(*folder, "--flow", "Typed", stdin=f"1\n{deep}\n")
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines() == [
            "flow Typed: failed, 0 rows out in 0 batches",
            f"kisflow: error: flow 'Typed': stdin line 2 is nested too deeply to read as "
            f"JSON; line was {'[' * 200!r}",
        ]

    def test_a_line_nested_10000_deep_in_the_real_script(self, folder: tuple[Path, Path]) -> None:
        conf, faas = folder
        deep = "{" + '"a": {' * 10_000 + "}" * 10_001
        proc = subprocess.run(
            [SCRIPT, "run", conf, "--faas", faas, "--flow", "Typed"],
            input=f"{deep}\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stderr.splitlines()[-1].startswith(
            "kisflow: error: flow 'Typed': stdin line 1 is nested too deeply to read as JSON; "
        )

    def test_an_integer_of_5000_digits_is_a_bad_input_line(self, folder: tuple[Path, Path]) -> None:
        result = _run(*folder, "--flow", "Typed", stdin="1\n" + "7" * 5000 + "\n")
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines() == [
            "flow Typed: failed, 0 rows out in 0 batches",
            "kisflow: error: flow 'Typed': stdin line 2 cannot be read as JSON: Exceeds the "
            "limit (4300 digits) for integer string conversion: value has 5000 digits; use "
            f"sys.set_int_max_str_digits() to increase the limit; line was {'7' * 200!r}",
        ]

    def test_a_line_that_is_not_utf8_is_a_bad_input_line(self, folder: tuple[Path, Path]) -> None:
        result = _run(*folder, "--flow", "Typed", "--batch-size", "1", stdin=b'1\n"\xff"\n')
        assert result.exit_code == 2, result.output
        assert result.stdout == "10\n"
        assert result.stderr.splitlines()[-1] == (
            "kisflow: error: flow 'Typed': stdin line 2 is not UTF-8 (byte 2: invalid start "
            "byte); line was '\"\\\\xff\"'"
        )

    def test_an_output_row_that_is_not_json_names_its_batch(
        self, folder: tuple[Path, Path]
    ) -> None:
        result = _run(*folder, "--flow", "Sets", "--batch-size", "2", stdin="1\n2\n3\n")
        assert result.exit_code == 3, result.output
        # The batch with the bad row writes nothing: only whole batches are written.
        assert result.stdout == ""
        assert _errors(result) == [
            "kisflow: error: RunError: flow 'Sets': an output row of stream batch 1 (stdin "
            "lines 1..2) is not JSON: TypeError: set is not JSON serializable; "
            "row was {1}",
        ]


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


class TestFlowChoice:
    """``--flow`` may be left out when the folder has one enabled flow."""

    def test_the_one_enabled_flow_runs(self, tmp_path: Path) -> None:
        conf, faas = _folder(tmp_path, {"Typed": ["Ints"], "Idle": ["Names"]}, disabled=["Idle"])
        result = _run(conf, faas, stdin="1\n2\n")
        assert result.exit_code == 0, result.output
        assert result.stdout == "10\n20\n"
        assert result.stderr.splitlines()[0] == "flow Typed: completed, 2 rows out"

    def test_several_enabled_flows_need_flow(self, folder: tuple[Path, Path]) -> None:
        conf, faas = folder
        result = _run(conf, faas, stdin="1\n")
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines() == [
            f"kisflow: error: {conf} has 6 enabled flows (Boom, Later, Letters, Parse, Sets, "
            f"Typed); pick one with --flow",
        ]

    def test_no_enabled_flow(self, tmp_path: Path) -> None:
        conf, faas = _folder(tmp_path, {"Idle": ["Ints"]}, disabled=["Idle"])
        result = _run(conf, faas, stdin="1\n")
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines() == [
            f"kisflow: error: {conf} has no enabled flow to run (disabled: Idle)",
        ]


HINT = (
    "reading JSON lines from the terminal, one row per line; end with Ctrl-D, or give --input FILE"
)


class TestTerminalInput:
    """Reading rows from a terminal says so, instead of waiting silently."""

    def test_a_terminal_on_stdin_gets_a_hint(self, tmp_path: Path) -> None:
        import pty

        conf, faas = _folder(tmp_path, {"Typed": ["Ints"]})
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [SCRIPT, "run", conf, "--faas", faas],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.close(slave)
        try:
            assert proc.stderr is not None
            # The hint comes before any row is typed (without it, nothing comes at all).
            ready, _, _ = select.select([proc.stderr], [], [], 30)
            assert ready, "no hint on stderr while waiting for the terminal"
            first = proc.stderr.readline().decode()
            os.write(master, b"1\n2\n\x04")  # two rows, then Ctrl-D
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            os.close(master)
        assert first == HINT + "\n"
        assert proc.returncode == 0, err
        assert out == b"10\n20\n"

    def test_no_hint_on_a_pipe(self, tmp_path: Path) -> None:
        conf, faas = _folder(tmp_path, {"Typed": ["Ints"]})
        proc = subprocess.run(
            [SCRIPT, "run", conf, "--faas", faas],
            input="1\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.splitlines()[0] == "flow Typed: completed, 1 rows out"
        assert HINT not in proc.stderr
