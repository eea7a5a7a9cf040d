"""The command line's --allow-path and --strict, and the folder's warnings on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from kisflow.cli import main
from kisflow.testing import isolated_pool


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


class TestCommandLine:
    """--allow-path and --strict on the commands that load a folder; warnings on stderr."""

    def folder(self, tmp_path: Path, addrs: str = "rows.jsonl", extra: str = "") -> Path:
        conf = tmp_path / "conf"
        write(conf, "func.yml", "kistype: func\nfname: s\nfmode: Save\noption:\n  cname: store\n")
        write(
            conf,
            "flow.yml",
            f"kistype: flow\nflow_name: F\nstatus: 1\n{extra}flows:\n  - fname: s\n",
        )
        write(conf, "conn.yml", f"kistype: conn\ncname: store\naddrs: {addrs}\ntype: jsonl\n")
        return conf

    def test_validate_prints_warnings_and_strict_fails_on_them(self, tmp_path: Path) -> None:
        conf = self.folder(tmp_path, extra="descripton: x\n")
        result = CliRunner().invoke(main, ["validate", str(conf)])
        assert result.exit_code == 0, result.output
        assert (
            f"warning: {conf / 'flow.yml'}: descripton: is not a key of a flow file"
            in result.stderr
        )
        assert result.stdout == "flow F: s[S]\n"
        result = CliRunner().invoke(main, ["validate", str(conf), "--strict"])
        assert result.exit_code == 1
        assert (
            f"{conf / 'flow.yml'}: descripton: is not a key of a flow file. Known" in result.stderr
        )
        assert "kisflow: error: 1 problem in" in result.stderr

    def test_allow_path_on_validate_run_graph_and_export(self, tmp_path: Path) -> None:
        data = tmp_path / "data"
        data.mkdir()
        conf = self.folder(tmp_path, addrs="../data/rows.jsonl")

        def invoke(*args: str, stdin: str = "") -> Any:
            with isolated_pool():  # each command loads the folder into a pool of its own
                return CliRunner().invoke(main, list(args), input=stdin)

        refused = invoke("validate", str(conf))
        assert refused.exit_code == 1
        assert f"{conf / 'conn.yml'}: addrs: connector 'store' (jsonl)" in refused.stderr
        allow = ["--allow-path", str(data), "--allow-path", str(tmp_path / "other")]
        assert invoke("validate", str(conf), *allow).exit_code == 0
        run = invoke("run", str(conf), "--flow", "F", *allow, stdin='{"x": 1}\n')
        assert run.exit_code == 0, run.output
        assert (data / "rows.jsonl").read_text() == '{"x": 1}\n'
        assert invoke("run", str(conf), "--flow", "F", stdin='{"x": 2}\n').exit_code == 1
        graph = invoke("graph", str(conf), "--flow", "F", *allow)
        assert graph.exit_code == 0
        assert graph.stdout.startswith("strict digraph {")
        out = tmp_path / "out"
        export = invoke("export", str(conf), "--flow", "F", "-o", str(out), *allow)
        assert export.exit_code == 0, export.output
        assert (
            f"addrs: {(data / 'rows.jsonl').resolve()}\n" in (out / "conn-store.yaml").read_text()
        )
        assert (data / "rows.jsonl").read_text() == '{"x": 1}\n'

    def test_run_prints_warnings_to_stderr_only(self, tmp_path: Path) -> None:
        conf = self.folder(tmp_path, extra="owner: me\n")
        result = CliRunner().invoke(main, ["run", str(conf), "--flow", "F"], input='{"x": 1}\n')
        assert result.exit_code == 0, result.output
        assert f"warning: {conf / 'flow.yml'}: owner: is not a key" in result.stderr
        assert result.stdout == '{"x": 1}\n'  # a Save stage passes its rows on
        assert (conf / "rows.jsonl").read_text() == '{"x": 1}\n'

    def test_a_failed_load_prints_its_warnings(self, tmp_path: Path) -> None:
        conf = self.folder(tmp_path)
        write(conf, "func2.yml", "kistype: func\nfnam: t\nfmode: Verify\n")
        result = CliRunner().invoke(main, ["validate", str(conf)])
        assert result.exit_code == 1
        assert (
            f"{conf / 'func2.yml'}: fname: is missing (the file gives fnam: a typo" in result.stderr
        )
        assert f"warning: {conf / 'func2.yml'}: fnam: is not a key" in result.stderr
