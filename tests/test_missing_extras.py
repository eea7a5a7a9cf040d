"""A missing extra is one error everywhere: ``MissingExtraError`` naming the extra.

Each check runs in a fresh interpreter where the extra's module cannot be imported
(``sys.modules[name] = None``), so what kisflow imports, and when, is what is tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, *blocked: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where the modules ``blocked`` do not import."""
    prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def _folder(root: Path) -> Path:
    """A KisFlow folder with a redis Save and a sql Save, no FaaS needed (built-in types)."""
    conf = root / "conf"
    conf.mkdir()
    (conf / "flow.yml").write_text(
        "kistype: flow\nstatus: 1\nflow_name: Both\nflows:\n  - fname: ToRedis\n  - fname: ToSql\n"
    )
    for fname, cname in (("ToRedis", "rds"), ("ToSql", "db")):
        (conf / f"func-{fname}.yml").write_text(
            f"kistype: func\nfname: {fname}\nfmode: Save\noption:\n  cname: {cname}\n"
        )
    (conf / "conn-rds.yml").write_text(
        "kistype: conn\ncname: rds\naddrs: 127.0.0.1:1\ntype: redis\nkey: scores\n"
    )
    (conf / "conn-db.yml").write_text(
        f"kistype: conn\ncname: db\naddrs: sqlite:///{root / 'x.db'}\ntype: sql\nkey: scores\n"
    )
    return conf


class TestValidateWithoutClients:
    """``kisflow validate`` checks a redis/sql folder without redis or SQLAlchemy installed."""

    def test_validate_imports_no_client(self, tmp_path: Path) -> None:
        conf = _folder(tmp_path)
        code = f"""
            from click.testing import CliRunner
            from kisflow.cli import main
            result = CliRunner().invoke(main, ["validate", {str(conf)!r}])
            print(result.exit_code)
            print(result.output)
            print(sorted(m for m in ("redis", "sqlalchemy") if sys.modules.get(m) is not None))
        """
        done = _python(code, "redis", "sqlalchemy")
        assert done.returncode == 0, done.stderr
        code_line, *rest = done.stdout.splitlines()
        assert code_line == "0", done.stdout
        assert "flow Both: ToRedis[S] -> ToSql[S]" in done.stdout
        assert rest[-1] == "[]"

    def test_a_run_then_names_the_extra(self, tmp_path: Path) -> None:
        conf = _folder(tmp_path)
        code = f"""
            import json
            import kisflow as kf
            flow = kf.load_config_dir({str(conf)!r}).flows["Both"]
            try:
                flow.run([{{"id": 1}}])
            except kf.MissingExtraError as exc:
                print(json.dumps([exc.extra, exc.name, exc.needed_by, str(exc)]))
        """
        done = _python(code, "redis")
        assert done.returncode == 0, done.stderr
        extra, name, needed_by, message = json.loads(done.stdout)
        assert (extra, name) == ("redis", "redis")
        assert needed_by == "connector 'rds' (redis at '127.0.0.1:1')"
        assert message == (
            "connector 'rds' (redis at '127.0.0.1:1') needs 'redis', which is not installed; "
            "install it with pip install 'kisflow[redis]'"
        )


class TestOneErrorForEachExtra:
    """metrics, redis, sql, dask, kafka: each a MissingExtraError (an ImportError) naming it."""

    @pytest.mark.parametrize(
        ("blocked", "extra", "call"),
        [
            ("prometheus_client", "metrics", "import kisflow.metrics as m; m.enable()"),
            (
                "redis",
                "redis",
                "kf.FlowBuilder('r').save('S', conn=kf.ConnConfig(cname='c', type='redis', "
                "addrs='127.0.0.1:1', key='k')).build().run([1])",
            ),
            (
                "sqlalchemy",
                "sql",
                "kf.FlowBuilder('q').save('S', conn=kf.ConnConfig(cname='c', type='sql', "
                "addrs='sqlite://', key='k')).build().run([1])",
            ),
            ("distributed", "dask", "kf.dask.run_partitions(None, kf.Flow('f'), [0], load=list)"),
            (
                "confluent_kafka",
                "kafka",
                "from kisflow import sources; sources.kafka('127.0.0.1:1', topic='t', group='g')",
            ),
        ],
    )
    def test_missing_extra(self, blocked: str, extra: str, call: str) -> None:
        code = f"""
            import json
            import kisflow as kf
            try:
                {call}
            except kf.MissingExtraError as exc:
                print(json.dumps([type(exc).__name__, exc.extra, isinstance(exc, ImportError),
                                  str(exc)]))
        """
        done = _python(code, blocked)
        assert done.returncode == 0, done.stderr
        assert done.stdout, done.stderr
        kind, got, is_import_error, message = json.loads(done.stdout)
        assert (kind, got, is_import_error) == ("MissingExtraError", extra, True)
        assert f"{blocked!r}" in message
        assert message.endswith(f"install it with pip install 'kisflow[{extra}]'")


class TestProcessPoolWithoutDask:
    """The local process pool runs with neither dask nor distributed installed."""

    def test_runs_partitions(self) -> None:
        code = """
            import kisflow as kf
            from kisflow.executors import run_partitions

            @kf.faas("Double")
            def double(flow: kf.Flow, rows: list[int]) -> None:
                flow.commit_row_batch(r * 2 for r in rows)

            if __name__ == "__main__":
                flow = kf.FlowBuilder("d").calculate("Double").build()
                results = run_partitions(flow, [1, 2], load=lambda n: [n], workers=1,
                                         keep_output=True)
                print([r.output for r in results])
                print(sorted(m for m in ("dask", "distributed") if sys.modules.get(m)))
        """
        done = _python(code, "dask", "distributed")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["[[2], [4]]", "[]"]

    def test_cloudpickle_is_a_core_dependency(self) -> None:
        import tomllib

        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

        def names(specs: list[str]) -> set[str]:
            return {s.split(">")[0].split("[")[0].split("=")[0].strip() for s in specs}

        assert "cloudpickle" in names(project["dependencies"])
        assert names(project["optional-dependencies"]["dask"]) == {"dask"}
