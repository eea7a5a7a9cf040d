"""The kisflow command line, called through its real entry points and click's CliRunner."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import kisflow as kf
from kisflow.cli import main

ROOT = Path(__file__).resolve().parent.parent
FAAS = ROOT / "tests" / "resources" / "kisflow_go_faas.py"
EXAMPLE = ROOT / "examples" / "yaml_sqlite"
SCRIPT = Path(sys.executable).parent / "kisflow"


def kisflow(
    *args: str | Path, stdin: str = "", env: dict[str, str] | None = None, module: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script (or ``python -m kisflow``) in a subprocess."""
    command = [sys.executable, "-m", "kisflow"] if module else [str(SCRIPT)]
    return subprocess.run(
        [*command, *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the YAML + SQLite example, so runs write their database under tmp_path."""
    target = tmp_path / "yaml_sqlite"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("data"))
    return target


class TestEntryPoints:
    """The console script and ``python -m kisflow`` answer --version and --help."""

    def test_console_script_is_installed(self) -> None:
        assert SCRIPT.is_file(), "make install installs the kisflow console script"

    @pytest.mark.parametrize("module", [False, True])
    def test_version(self, module: bool) -> None:
        proc = kisflow("--version", module=module)
        assert proc.returncode == 0
        assert proc.stdout.strip() == f"kisflow, version {kf.__version__}"

    def test_help_lists_commands_and_exit_codes(self) -> None:
        proc = kisflow("--help")
        assert proc.returncode == 0
        for command in ("validate", "run", "graph", "export"):
            assert command in proc.stdout
        assert "3 run failed" in proc.stdout

    def test_python_m_imports_from_the_current_folder_and_P_or_the_script_do_not(
        self, tmp_path: Path
    ) -> None:
        """What docs/cli.md says: ``-m`` puts the current folder first on the import path."""
        (tmp_path / "flow.yml").write_text("kistype: flow\nstatus: 0\nflow_name: F\nflows: []\n")
        (tmp_path / "yaml.py").write_text("raise SystemExit('the folder yaml.py ran')\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        commands = {
            "-m": [sys.executable, "-m", "kisflow"],
            "-P -m": [sys.executable, "-P", "-m", "kisflow"],
            "script": [str(SCRIPT)],
        }
        procs = {
            how: subprocess.run(
                [*command, "validate", "."],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            for how, command in commands.items()
        }
        assert (procs["-m"].returncode, procs["-m"].stderr) == (1, "the folder yaml.py ran\n")
        for how in ("-P -m", "script"):
            assert procs[how].returncode == 0, procs[how].stderr
            assert procs[how].stdout == "flow F: disabled\n"

    def test_unknown_command_is_a_usage_error(self) -> None:
        proc = kisflow("frobnicate")
        assert proc.returncode == 2
        assert "No such command" in proc.stderr


class TestValidate:
    """``validate`` lists every problem and exits 1 when there is any."""

    def test_kisflow_configs_with_their_faas(self, kisflow_go_conf: Path) -> None:
        proc = kisflow("validate", kisflow_go_conf, "--faas", FAAS)
        assert proc.returncode == 0, proc.stderr
        assert "flow flowName1: funcName1[V] -> funcName2[S] -> funcName3[C]" in proc.stdout
        assert "ok: 7 flows" in proc.stderr

    def test_kisflow_configs_without_faas_list_every_unregistered_one(
        self, kisflow_go_conf: Path
    ) -> None:
        proc = kisflow("validate", kisflow_go_conf)
        assert proc.returncode == 1
        problems = [line for line in proc.stderr.splitlines() if "has no FaaS registered" in line]
        assert len(problems) == 17
        assert proc.stderr.rstrip().endswith(f"17 problems in {kisflow_go_conf}")

    def test_bad_files_are_named_with_their_keys(self, tmp_path: Path) -> None:
        (tmp_path / "a.yml").write_text("kistype: func\nfname: a\nfmode: Nope\n")
        (tmp_path / "b.yml").write_text("kistype: flow\nflow_name: F\nflows:\n  - fname: zz\n")
        result = CliRunner().invoke(main, ["validate", str(tmp_path)])
        assert result.exit_code == 1
        assert f"{tmp_path / 'a.yml'}: fmode: must be one of Verify" in result.stderr
        assert f"{tmp_path / 'b.yml'}: flows[0].fname: flow 'F' names function 'zz'" in (
            result.stderr
        )

    def test_example_validates_in_process(self, example: Path) -> None:
        result = CliRunner().invoke(
            main, ["validate", str(example / "conf"), "--faas", str(example / "faas.py")]
        )
        assert result.exit_code == 0, result.output
        assert "flow CalcAndSave: VerifyScores[V] -> AvgScore[C] -> SaveAverages[S]" in (
            result.stdout
        )


class TestRun:
    """``run`` reads JSON lines, prints output rows as JSON lines and a summary on stderr."""

    def test_stu_avg_from_stdin(self, kisflow_go_conf: Path) -> None:
        rows = [
            {"stu_id": 1, "score_1": 90, "score_2": 80, "score_3": 70},
            {"stu_id": 2, "score_1": 1, "score_2": 2, "score_3": 3},
        ]
        stdin = "".join(json.dumps(r) + "\n" for r in rows)
        proc = kisflow("run", kisflow_go_conf, "--flow", "StuAvg", "--faas", FAAS, stdin=stdin)
        assert proc.returncode == 0, proc.stderr
        assert [json.loads(line) for line in proc.stdout.splitlines()] == [
            {"stu_id": 1, "avg_score": 80.0},
            {"stu_id": 2, "avg_score": 2.0},
        ]
        assert "flow StuAvg: completed, 2 rows out" in proc.stderr
        assert "PrintStuAvgScore" in proc.stderr

    def test_the_example_saves_then_loads(self, example: Path) -> None:
        conf, faas = example / "conf", example / "faas.py"
        proc = kisflow(
            "run", conf, "--flow", "CalcAndSave", "--faas", faas, "--input", example / "input.jsonl"
        )
        assert proc.returncode == 0, proc.stderr
        assert [json.loads(line)["stu_id"] for line in proc.stdout.splitlines()] == [
            101,
            102,
            103,
            105,
        ]
        proc = kisflow("run", conf, "--flow", "LoadAndSummarise", "--faas", faas, module=True)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"students": 4, "passed": 3, "class_average": 75.92}
        assert "summary: 4 students, 3 passed" in proc.stderr

    def test_batch_size_runs_the_flow_per_batch(self, example: Path) -> None:
        result = CliRunner().invoke(
            main,
            [
                "run",
                str(example / "conf"),
                "--flow",
                "CalcAndSave",
                "--faas",
                str(example / "faas.py"),
                "--batch-size",
                "2",
                "--input",
                str(example / "input.jsonl"),
            ],
        )
        assert result.exit_code == 0, result.output
        # One summary, summed over the 3 batches (5 input rows, 1 fails VerifyScores).
        assert result.stderr.count("flow CalcAndSave:") == 1
        assert "flow CalcAndSave: completed, 4 rows out in 3 batches" in result.stderr
        assert re.search(r"VerifyScores +Verify +calls=3 +in=5 +out=4 ", result.stderr)
        assert re.search(r"SaveAverages +Save +calls=3 +in=4 +out=4 ", result.stderr)
        assert len(result.stdout.splitlines()) == 4

    def test_a_loop_fails_the_run_with_exit_3(self, kisflow_go_conf: Path) -> None:
        proc = kisflow(
            "run", kisflow_go_conf, "--flow", "flowName5", "--faas", FAAS, stdin='"row"\n'
        )
        assert proc.returncode == 3
        assert "FlowLoopError" in proc.stderr
        assert "stages repeat in a cycle" in proc.stderr
        cycle = proc.stderr.split("cycle: ")[1].split(";")[0].split(" -> ")
        assert sorted(set(cycle)) == ["funcName1", "funcName2", "jumpFunc"]

    def test_unknown_flow_and_bad_input_are_usage_errors(self, kisflow_go_conf: Path) -> None:
        proc = kisflow("run", kisflow_go_conf, "--flow", "nope", "--faas", FAAS)
        assert proc.returncode == 2
        assert "no flow 'nope'" in proc.stderr
        assert "StuAvg" in proc.stderr
        proc = kisflow(
            "run", kisflow_go_conf, "--flow", "StuAvg", "--faas", FAAS, stdin='{"a": 1}\n{bad\n'
        )
        assert proc.returncode == 2
        assert proc.stderr.splitlines()[-2:] == [
            "flow StuAvg: failed, 0 rows out in 0 batches",
            "kisflow: error: flow 'StuAvg': stdin line 2 is not JSON: Expecting property name "
            "enclosed in double quotes at column 2; line was '{bad'",
        ]

    def test_a_faas_file_that_raises(self, tmp_path: Path, kisflow_go_conf: Path) -> None:
        bad = tmp_path / "bad.py"
        bad.write_text("raise RuntimeError('boom')\n")
        proc = kisflow("validate", kisflow_go_conf, "--faas", bad)
        assert proc.returncode == 1
        assert proc.stderr.splitlines() == [
            f"kisflow: error: --faas {bad} raised RuntimeError: boom",
            f"  at {bad}:1 in <module>",
        ]


class TestGraph:
    """``graph`` prints DOT, or renders SVG/PNG with Graphviz, or says dot is missing."""

    def test_dot_text(self, kisflow_go_conf: Path) -> None:
        proc = kisflow("graph", kisflow_go_conf, "--flow", "StuAvg", "--faas", FAAS)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[0] in ("digraph {", "strict digraph {")
        assert '"AvgStuScore" -> "PrintStuAvgScore";' in proc.stdout

    @pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
    @pytest.mark.parametrize(("fmt", "magic"), [("svg", b"<svg"), ("png", b"\x89PNG")])
    def test_rendered(self, kisflow_go_conf: Path, tmp_path: Path, fmt: str, magic: bytes) -> None:
        out = tmp_path / f"g.{fmt}"
        proc = kisflow("graph", kisflow_go_conf, "--flow", "flowName1", "--format", fmt, "-o", out)
        assert proc.returncode == 0, proc.stderr
        assert magic in out.read_bytes()[:400]

    def test_missing_dot_is_a_clear_message(self, kisflow_go_conf: Path, tmp_path: Path) -> None:
        env = {**os.environ, "PATH": str(tmp_path)}
        proc = kisflow("graph", kisflow_go_conf, "--flow", "flowName1", "--format", "svg", env=env)
        assert proc.returncode == 4
        assert "needs Graphviz's 'dot' program" in proc.stderr


class TestExport:
    """``export`` writes the flow's YAML files; they load back into an equal flow."""

    def test_export_writes_the_files(self, kisflow_go_conf: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        proc = kisflow("export", kisflow_go_conf, "--flow", "flowName1", "-o", out)
        assert proc.returncode == 0, proc.stderr
        names = [Path(line).name for line in proc.stdout.splitlines()]
        assert names == [
            "flow-flowName1.yaml",
            "func-funcName1.yaml",
            "func-funcName2.yaml",
            "func-funcName3.yaml",
            "conn-ConnName1.yaml",
        ]
        assert "myKey1: flowValue1-1" in (out / "flow-flowName1.yaml").read_text()
        loaded = kf.load_config_dir(out, check_faas=False)
        original = kf.load_config_dir(kisflow_go_conf, check_faas=False, pool=kf.Pool())
        assert loaded.flows["flowName1"].config == original.flows["flowName1"].config


class TestAllowImports:
    """Config references to Python code run only with --allow-imports."""

    def test_reference_needs_the_flag(self, tmp_path: Path) -> None:
        (tmp_path / "mod_cli_kf.py").write_text(
            "def up(flow):\n    flow.commit_row_batch([r.upper() for r in flow.input()])\n"
        )
        conf = tmp_path / "conf"
        conf.mkdir()
        (conf / "func.yml").write_text(
            "kistype: func\nfname: Up\nfmode: Calculate\nfaas: mod_cli_kf:up\n"
        )
        (conf / "flow.yml").write_text("kistype: flow\nflow_name: U\nflows:\n  - fname: Up\n")
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        refused = kisflow("run", conf, "--flow", "U", stdin='"a"\n', env=env)
        assert refused.returncode == 1
        assert "--allow-imports" in refused.stderr
        allowed = kisflow("run", conf, "--flow", "U", "--allow-imports", stdin='"a"\n', env=env)
        assert allowed.returncode == 0, allowed.stderr
        assert allowed.stdout == '"A"\n'


FLAKY_FAAS = """
import kisflow as kf
import kisflow.metrics

CALLS = []


@kf.faas("Double")
def double(flow, rows):
    for r in rows:
        flow.commit_row({"n": r["n"] * 2})


@kf.faas("FlakySave")
def flaky_save(flow, rows):
    CALLS.append(len(rows))
    flow.commit_row_batch(rows)
    print(f"metrics on: {kisflow.metrics.enabled()}")
    if kisflow.metrics.enabled():
        for line in kisflow.metrics.scrape().splitlines():
            if line.startswith("flow_schedule_cnts{"):
                print(f"scraped: {line}")
    if len(CALLS) == 1:
        raise OSError("the store is down once")
"""


def _flaky_conf(folder: Path, global_yaml: str | None = None) -> tuple[Path, Path]:
    """A Calculate -> Save flow whose Save fails once (retried), and its FaaS file."""
    conf = folder / "conf"
    conf.mkdir()
    (conf / "flow.yml").write_text(
        "kistype: flow\nstatus: 1\nflow_name: Flaky\n"
        "flows:\n  - fname: Double\n  - fname: FlakySave\n"
    )
    (conf / "func-double.yml").write_text("kistype: func\nfname: Double\nfmode: Calculate\n")
    (conf / "func-save.yml").write_text(
        "kistype: func\nfname: FlakySave\nfmode: Save\noption:\n  retry_times: 1\n"
    )
    if global_yaml is not None:
        (conf / "kis-flow.yml").write_text(global_yaml)
    faas = folder / "flaky_faas.py"
    faas.write_text(FLAKY_FAAS)
    return conf, faas


def _rows(n: int) -> str:
    return "".join(json.dumps({"n": i}) + "\n" for i in range(n))


def _run_under_pty(args: list[str], stdin: str) -> tuple[int, str, str]:
    """Run the real console script with stderr on a pseudo-terminal; (code, stdout, tty)."""
    import pty

    master, slave = pty.openpty()
    # A fresh pty is 0x0; give it a real terminal's size so the bar has room to draw.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.Popen(
            [str(SCRIPT), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    import threading

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        out, _ = proc.communicate(stdin, timeout=120)
    finally:
        reader.join(timeout=30)
        os.close(master)
    return proc.returncode, out, b"".join(chunks).decode("utf-8", "replace")


class TestRunStreaming:
    """``run`` streams batches: totals summed, bar on a terminal only, errors keep their codes."""

    def test_totals_sum_the_batches_and_show_retries(self, tmp_path: Path) -> None:
        conf, faas = _flaky_conf(tmp_path)
        proc = kisflow(
            "run", conf, "--flow", "Flaky", "--faas", faas, "--batch-size", "3", stdin=_rows(7)
        )
        assert proc.returncode == 0, proc.stderr
        assert [json.loads(line)["n"] for line in proc.stdout.splitlines()] == [
            0,
            2,
            4,
            6,
            8,
            10,
            12,
        ]
        assert "flow Flaky: completed, 7 rows out in 3 batches" in proc.stderr
        assert re.search(r"Double +Calculate +calls=3 +in=7 +out=7 ", proc.stderr)
        assert re.search(r"FlakySave +Save +calls=3 +in=7 +out=7 .* dead=0 retries=1", proc.stderr)

    def test_bad_json_after_good_batches_names_the_line(self, kisflow_go_conf: Path) -> None:
        row = json.dumps({"stu_id": 1, "score_1": 1, "score_2": 2, "score_3": 3})
        stdin = f"{row}\n{row}\n\n{row}\nnot json\n"
        proc = kisflow(
            "run",
            kisflow_go_conf,
            "--flow",
            "StuAvg",
            "--faas",
            FAAS,
            "--batch-size",
            "2",
            stdin=stdin,
        )
        assert proc.returncode == 2
        assert proc.stderr.splitlines()[-1] == (
            "kisflow: error: flow 'StuAvg': stdin line 5 is not JSON: Expecting value at "
            "column 1; line was 'not json'"
        )
        assert "flow StuAvg: failed, 2 rows out in 1 batch" in proc.stderr.splitlines()
        # The batches before the bad line ran and their rows were written.
        assert len(proc.stdout.splitlines()) == 2

    def test_quiet_on_a_pipe(self, tmp_path: Path) -> None:
        conf, faas = _flaky_conf(tmp_path)
        proc = kisflow(
            "run", conf, "--flow", "Flaky", "--faas", faas, "--batch-size", "2", stdin=_rows(5)
        )
        assert proc.returncode == 0, proc.stderr
        assert "rows/s" not in proc.stderr
        assert "\r" not in proc.stderr
        assert "Flaky:" not in proc.stderr.replace("flow Flaky:", "")

    def test_the_bar_is_an_observer_in_the_runs_options(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The CLI hands the stream one RunOptions; the bar counts from batch_done."""
        import kisflow.cli
        from kisflow.progress import RunProgress

        seen: list[Any] = []
        real = kisflow.cli.run_jsonl_stream

        def spy(*args: Any, **kwargs: Any) -> Any:
            seen.append(kwargs.get("options"))
            summary = real(*args, **kwargs)
            seen.append((seen[0].observers[0].rows, seen[0].observers[0].runs))
            return summary

        monkeypatch.setattr(kisflow.cli, "run_jsonl_stream", spy)
        conf, faas = _flaky_conf(tmp_path)
        args = ["run", str(conf), "--flow", "Flaky", "--faas", str(faas), "--batch-size", "2"]
        result = CliRunner().invoke(main, args, input=_rows(5))
        assert result.exit_code == 0, result.output
        options, counted = seen
        assert isinstance(options, kf.RunOptions)
        assert [type(o) for o in options.observers] == [RunProgress]
        assert counted == (5, 3)

    def test_bar_on_a_terminal(self, tmp_path: Path) -> None:
        conf, faas = _flaky_conf(tmp_path)
        args = ["run", str(conf), "--flow", "Flaky", "--faas", str(faas), "--batch-size", "2"]
        code, out, tty = _run_under_pty(args, _rows(5))
        assert code == 0, tty
        assert len(out.splitlines()) == 5
        assert "rows/s" in tty
        assert re.search(r"Flaky: 5(\.00)?rows \[", tty), tty
        assert "dead=0, retries=1" in tty
        assert "flow Flaky: completed, 5 rows out in 3 batches" in tty


def _global(serve: str, *, enable: bool = True, listen: bool = True) -> str:
    return (
        f"kistype: global\nprometheus_enable: {str(enable).lower()}\n"
        f"prometheus_listen: {str(listen).lower()}\nprometheus_serve: '{serve}'\n"
    )


def _port_closed(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=2)
    except (urllib.error.URLError, ConnectionError):
        return True
    return False


class TestRunMetrics:
    """``run`` counts and serves metrics only when asked, at the global file's address."""

    @pytest.fixture(autouse=True)
    def _metrics_off(self) -> Iterator[None]:
        """Each test starts and ends with metrics off and no server."""
        kf.metrics.disable()
        yield
        kf.metrics.disable()

    def _invoke(self, conf: Path, faas: Path, *extra: str) -> Any:
        args = ["run", str(conf), "--flow", "Flaky", "--faas", str(faas), "--batch-size", "1"]
        return CliRunner().invoke(main, [*args, *extra], input=_rows(2))

    def test_metrics_flag_serves_at_the_global_address(self, tmp_path: Path) -> None:
        conf, faas = _flaky_conf(tmp_path, _global("127.0.0.1:0"))
        result = self._invoke(conf, faas, "--metrics")
        assert result.exit_code == 0, result.output
        match = re.search(r"metrics served at (http://127\.0\.0\.1:\d+/metrics)", result.stderr)
        assert match, result.stderr
        # The FaaS scraped during each batch: one run counted, then two.
        assert 'scraped: flow_schedule_cnts{flow_name="Flaky"} 1.0' in result.stderr
        assert 'scraped: flow_schedule_cnts{flow_name="Flaky"} 2.0' in result.stderr
        # The run is over: metrics are off and the port is closed again.
        assert not kf.metrics.enabled()
        assert _port_closed(match.group(1))

    def test_off_by_default_with_a_note_when_the_global_file_enables_them(
        self, tmp_path: Path
    ) -> None:
        conf, faas = _flaky_conf(tmp_path, _global("127.0.0.1:0"))
        result = self._invoke(conf, faas)
        assert result.exit_code == 0, result.output
        assert result.stderr.count("metrics on: False") == 3  # 2 batches + 1 retry
        assert "pass --metrics to serve them" in result.stderr
        assert "metrics served" not in result.stderr

    def test_no_global_file_means_no_metrics_and_no_note(self, tmp_path: Path) -> None:
        conf, faas = _flaky_conf(tmp_path)
        result = self._invoke(conf, faas)
        assert result.exit_code == 0, result.output
        assert result.stderr.count("metrics on: False") == 3
        assert "--metrics" not in result.stderr

    def test_metrics_address_overrides_kisflows_all_interfaces_address(
        self, tmp_path: Path
    ) -> None:
        # KisFlow's own file listens on 0.0.0.0; the override keeps the test on loopback.
        conf, faas = _flaky_conf(tmp_path, _global("0.0.0.0:20004"))
        result = self._invoke(conf, faas, "--metrics-address", "127.0.0.1:0")
        assert result.exit_code == 0, result.output
        assert re.search(r"metrics served at http://127\.0\.0\.1:\d+/metrics", result.stderr)
        assert result.stderr.count("metrics on: True") == 3
        assert not kf.metrics.enabled()

    def test_bad_address_is_a_config_error_naming_the_file(self, tmp_path: Path) -> None:
        conf, faas = _flaky_conf(tmp_path, _global("nowhere"))
        result = self._invoke(conf, faas, "--metrics")
        assert result.exit_code == 1
        assert "kis-flow.yml" in result.stderr
        assert "prometheus_serve 'nowhere' is not host:port" in result.stderr
        assert not kf.metrics.enabled()


class TestRunInterrupt:
    """Ctrl-C stops ``run`` between batches: rows so far written, summary, exit 130."""

    def test_sigint_while_waiting_for_input(self, tmp_path: Path) -> None:
        import signal

        conf, faas = _flaky_conf(tmp_path)
        proc = subprocess.Popen(
            [SCRIPT, "run", conf, "--flow", "Flaky", "--faas", faas, "--batch-size", "1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            proc.stdin.write(_rows(2))
            proc.stdin.flush()
            # Both rows are out once their batches ran; the stream then waits on stdin.
            first = [proc.stdout.readline(), proc.stdout.readline()]
            proc.send_signal(signal.SIGINT)
            rest, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert [json.loads(line) for line in first] == [{"n": 0}, {"n": 2}]
        assert rest == ""
        assert proc.returncode == 130, err
        assert "flow Flaky: interrupted, 2 rows out in 2 batches" in err.splitlines()
        assert err.splitlines()[-1] == (
            "kisflow: error: interrupted: stopped after 2 rows in 2 batches "
            "(the batch under way finished)"
        )
