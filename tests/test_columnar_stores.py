"""The parquet and csv connectors, and partitions that are slices of such files."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import distributed
import polars as pl
import pytest

import kisflow as kf
from kisflow.columnar import FileSlice, file_slices, is_frame, load_slice
from kisflow.executors import Partition
from kisflow.executors._partition import FlowPayload, dumps, run_partition, unwrap

ROOT = Path(__file__).resolve().parent.parent
KINDS = ["parquet", "csv"]


def _average(flow: kf.Flow, rows: pl.DataFrame) -> None:
    """A columnar Calculate; ``from_frame`` says whether its input came as a DataFrame."""
    flow.commit_row_batch(
        rows.select(
            "stu_id",
            ((pl.col("score_1") + pl.col("score_2")) / 2).alias("avg_score"),
            pl.lit(is_frame(flow.input())).alias("from_frame"),
        )
    )


def _scores(n: int, start: int = 0) -> pl.DataFrame:
    ids = list(range(start, start + n))
    return pl.DataFrame(
        {"stu_id": ids, "score_1": [i % 100 for i in ids], "score_2": [i % 7 for i in ids]}
    )


def _write(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)


def _read(folder: Path, kind: str) -> pl.DataFrame:
    files = sorted(str(p) for p in folder.glob(f"*.{kind}"))
    return pl.read_csv(files) if kind == "csv" else pl.read_parquet(files)


def _conf(root: Path, kind: str) -> Path:
    """A KisFlow folder: Load (kind) -> Average (columnar FaaS) -> Save (kind)."""
    conf = root / "conf"
    conf.mkdir()
    (conf / "flow.yml").write_text(
        "kistype: flow\nstatus: 1\nflow_name: Averages\n"
        "flows:\n  - fname: ReadScores\n  - fname: Average\n  - fname: WriteAverages\n"
    )
    (conf / "func-read.yml").write_text(
        "kistype: func\nfname: ReadScores\nfmode: Load\noption:\n  cname: scores\n"
    )
    (conf / "func-avg.yml").write_text("kistype: func\nfname: Average\nfmode: Calculate\n")
    (conf / "func-write.yml").write_text(
        "kistype: func\nfname: WriteAverages\nfmode: Save\noption:\n  cname: averages\n"
    )
    (conf / "conn-scores.yml").write_text(
        f"kistype: conn\ncname: scores\naddrs: data/in\ntype: {kind}\n"
    )
    (conf / "conn-averages.yml").write_text(
        f"kistype: conn\ncname: averages\naddrs: data/out\ntype: {kind}\n"
    )
    return conf


@pytest.mark.parametrize("kind", KINDS)
class TestRoundTripThroughYAML:
    """A YAML flow loads files as a DataFrame, runs a columnar stage, saves files."""

    def test_load_average_save(self, tmp_path: Path, kind: str) -> None:
        conf = _conf(tmp_path, kind)
        _write(_scores(30), conf / "data" / "in" / f"a.{kind}")
        _write(_scores(20, start=30), conf / "data" / "in" / f"b.{kind}")
        kf.faas("Average", _average)
        flow = kf.load_config_dir(conf).flows["Averages"]
        result = flow.run()
        assert isinstance(result.output, pl.DataFrame)
        assert [(s.name, s.rows_in, s.rows_out) for s in result.stages] == [
            ("ReadScores", 0, 50),
            ("Average", 50, 50),
            ("WriteAverages", 50, 50),
        ]
        saved = _read(conf / "data" / "out", kind)
        assert saved["stu_id"].to_list() == list(range(50))
        assert saved["avg_score"].to_list() == [(i % 100 + i % 7) / 2 for i in range(50)]
        # The columnar stage got the Load's DataFrame itself, never rows.
        assert saved["from_frame"].to_list() == [True] * 50
        assert len(list((conf / "data" / "out").glob(f"*.{kind}"))) == 1

    def test_every_run_outside_an_executor_adds_a_file(self, tmp_path: Path, kind: str) -> None:
        conf = _conf(tmp_path, kind)
        _write(_scores(5), conf / "data" / "in" / f"a.{kind}")
        kf.faas("Average", _average)
        flow = kf.load_config_dir(conf).flows["Averages"]
        flow.run()
        flow.run()
        assert _read(conf / "data" / "out", kind).height == 10
        assert len(list((conf / "data" / "out").glob(f"*.{kind}"))) == 2


def _save(kind: str, folder: Path) -> kf.Flow:
    conn = kf.ConnConfig(cname="out", type=kind, addrs=str(folder))
    return kf.FlowBuilder(f"save-{kind}").save("Store", conn=conn).build()


def _load(kind: str, addrs: Path, params: dict[str, Any] | None = None) -> kf.Flow:
    conn = kf.ConnConfig(cname="in", type=kind, addrs=str(addrs))
    return kf.FlowBuilder(f"load-{kind}").load("Fetch", params, conn=conn).build()


def _as_partition(flow: kf.Flow, rows: Any, key: str) -> Any:
    """Run ``flow`` on ``rows`` as partition ``key`` through the workers' entry point."""
    return unwrap(
        run_partition(
            FlowPayload.of(flow),
            dumps(_same, [_same]),
            Partition(index=0, key=key, spec=rows),
            keep_output=True,
        )
    )


def _same(spec: Any) -> Any:
    return spec


@pytest.mark.parametrize("kind", KINDS)
class TestStores:
    """Save writes one file per call (one per partition under an executor); Load reads."""

    def test_rows_and_frames_round_trip(self, tmp_path: Path, kind: str) -> None:
        _save(kind, tmp_path / "d").run([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
        _save(kind, tmp_path / "d").run(pl.DataFrame({"a": [3], "b": ["z"]}))
        loaded = _load(kind, tmp_path / "d").run([]).output
        assert isinstance(loaded, pl.DataFrame)
        assert loaded.rows() == [(1, "x"), (2, "y"), (3, "z")]

    def test_load_params_where_limit_columns(self, tmp_path: Path, kind: str) -> None:
        _save(kind, tmp_path / "d").run(pl.DataFrame({"a": [1, 2, 2, 2], "b": [5, 6, 7, 8]}))
        out = _load(kind, tmp_path / "d", {"where": {"a": 2}, "limit": 2, "columns": ["b"]})
        assert out.run([]).output.rows() == [(6,), (7,)]

    def test_a_partition_is_saved_once(self, tmp_path: Path, kind: str) -> None:
        flow = _save(kind, tmp_path / "d")
        first = _as_partition(flow, pl.DataFrame({"p": ["a"] * 3}), "a")
        again = _as_partition(flow, pl.DataFrame({"p": ["a"] * 3}), "a")
        _as_partition(flow, pl.DataFrame({"p": ["b"] * 2}), "b")
        files = sorted(p.name for p in (tmp_path / "d").glob(f"*.{kind}"))
        assert len(files) == 2
        assert [f[:7] for f in files] == ["part-a-", "part-b-"]
        assert sorted(_read(tmp_path / "d", kind)["p"].to_list()) == ["a", "a", "a", "b", "b"]
        # A replay still passes its DataFrame on, and says how many rows it took.
        assert first.rows_out == again.rows_out == 3
        assert isinstance(again.output, pl.DataFrame)
        assert not list((tmp_path / "d").glob(".*"))  # no temporary file left

    def test_a_missing_folder_to_load_is_a_connector_error(self, tmp_path: Path, kind: str) -> None:
        with pytest.raises(kf.ConnectorError, match=r"connector 'in' .* has no file or folder"):
            _load(kind, tmp_path / "nowhere").run([])

    def test_bad_params_are_a_connector_error(self, tmp_path: Path, kind: str) -> None:
        _save(kind, tmp_path / "d").run([{"a": 1}])
        with pytest.raises(kf.ConnectorError, match=r"params\.columns must be a list"):
            _load(kind, tmp_path / "d", {"columns": "a"}).run([])

    def test_a_row_store_after_a_columnar_stage_gets_rows(self, tmp_path: Path, kind: str) -> None:
        def tag(flow: kf.Flow, rows: pl.DataFrame) -> None:
            flow.commit_row_batch(rows.with_columns(pl.lit(kind).alias("kind")))

        kf.faas("Tag", tag)
        conn = kf.ConnConfig(cname="j", type="jsonl", addrs=str(tmp_path / "rows.jsonl"))
        flow = kf.FlowBuilder("to-jsonl").calculate("Tag").save("Store", conn=conn).build()
        result = flow.run([{"a": 1}, {"a": 2}])
        assert isinstance(result.output, pl.DataFrame)  # the Save passes its DataFrame on
        lines = (tmp_path / "rows.jsonl").read_text().splitlines()
        assert lines == [f'{{"a": 1, "kind": "{kind}"}}', f'{{"a": 2, "kind": "{kind}"}}']


class TestFileSlices:
    """A file is cut into slices of rows; each slice loads as a DataFrame."""

    def test_slices_cover_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "s.parquet"
        _write(_scores(25), path)
        slices = file_slices(str(path), 10)
        assert slices == [
            FileSlice(str(path), 0, 10),
            FileSlice(str(path), 10, 10),
            FileSlice(str(path), 20, 5),
        ]
        frames = [load_slice(s) for s in slices]
        assert all(isinstance(f, pl.DataFrame) for f in frames)
        assert pl.concat(frames)["stu_id"].to_list() == list(range(25))

    def test_a_bad_size_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="rows_per_partition must be at least 1"):
            file_slices(str(tmp_path / "s.parquet"), 0)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A real two-process LocalCluster (no dashboard), started once for this module."""
    with dask.config.set(kf.dask.SATURATION_CONFIG):
        cluster = distributed.LocalCluster(
            processes=True,
            n_workers=2,
            threads_per_worker=1,
            dashboard_address=None,
            host="127.0.0.1",
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )
        c = distributed.Client(cluster)
        try:
            yield c
        finally:
            c.close()
            cluster.close()


def _partitioned_flow(out: Path) -> kf.Flow:
    kf.faas("Average", _average)
    conn = kf.ConnConfig(cname="out", type="parquet", addrs=str(out))
    return kf.FlowBuilder("slices").calculate("Average").save("Store", conn=conn).build()


class TestPartitionedRuns:
    """Partitions are slices of a Parquet file, loaded on the worker as DataFrames."""

    def test_on_dask(self, tmp_path: Path, client: Any) -> None:
        path = tmp_path / "scores.parquet"
        _write(_scores(1000), path)
        out = tmp_path / "out"
        flow = _partitioned_flow(out)
        slices = file_slices(str(path), 250)
        results = kf.dask.run_partitions(client, flow, slices, load=load_slice, keep_output=True)
        assert [(r.partition.key, r.rows_in, r.rows_out) for r in results] == [
            (str(i), 250, 250) for i in range(4)
        ]
        assert all(isinstance(r.output, pl.DataFrame) for r in results)
        saved = _read(out, "parquet").sort("stu_id")
        assert saved["stu_id"].to_list() == list(range(1000))
        assert saved["from_frame"].all()  # each worker's stage got the slice as a DataFrame
        assert len(list(out.glob("*.parquet"))) == 4
        # Run again (a replay after a crash): every partition is saved already.
        kf.dask.run_partitions(client, flow, slices, load=load_slice)
        assert len(list(out.glob("*.parquet"))) == 4
        assert _read(out, "parquet").height == 1000

    def test_on_the_process_pool(self, tmp_path: Path) -> None:
        from kisflow.executors.parallel import run_partitions

        path = tmp_path / "scores.csv"
        _write(_scores(300), path)
        out = tmp_path / "out"
        flow = _partitioned_flow(out)
        results = run_partitions(flow, file_slices(str(path), 100), load=load_slice, workers=2)
        assert [r.rows_out for r in results] == [100, 100, 100]
        saved = _read(out, "parquet").sort("stu_id")
        assert saved["stu_id"].to_list() == list(range(300))
        assert saved["from_frame"].all()


class TestWithoutPolars:
    """Without Polars, kisflow imports and runs; what needs it names ``kisflow[polars]``."""

    def test_missing_polars_is_named(self, tmp_path: Path) -> None:
        code = f"""
            import sys
            sys.modules["polars"] = None
            import kisflow as kf
            kf.faas("Double", lambda flow: flow.commit_row_batch([r * 2 for r in flow.input()]))
            flow = kf.FlowBuilder("plain").calculate("Double").build()
            print(flow.run([1, 2]).output)
            conn = kf.ConnConfig(cname="pq", type="parquet", addrs={str(tmp_path)!r})
            save = kf.FlowBuilder("save").save("Store", conn=conn).build()
            try:
                save.run([{{"a": 1}}])
            except kf.MissingExtraError as exc:
                print(exc.extra, exc)
            try:
                kf.columnar.file_slices("x.parquet", 10)
            except kf.MissingExtraError as exc:
                print(exc.extra, exc)
        """
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "[2, 4]",
            f"polars connector 'pq' (parquet at {str(tmp_path)!r}) needs 'polars', which is "
            f"not installed; install it with pip install 'kisflow[polars]'",
            "polars kisflow.columnar.file_slices needs 'polars', which is not installed; "
            "install it with pip install 'kisflow[polars]'",
        ]


class TestCommandLine:
    """``kisflow run`` writes a columnar flow's DataFrame output as JSON lines."""

    def test_run_prints_the_rows(self, tmp_path: Path) -> None:
        from click.testing import CliRunner

        from kisflow.cli import main

        conf = _conf(tmp_path, "parquet")
        _write(_scores(3), conf / "data" / "in" / "a.parquet")
        faas = tmp_path / "faas.py"
        faas.write_text(
            textwrap.dedent(
                """
                import polars as pl
                import kisflow as kf

                @kf.faas("Average")
                def average(flow: kf.Flow, rows: pl.DataFrame) -> None:
                    avg = ((pl.col("score_1") + pl.col("score_2")) / 2).alias("avg_score")
                    flow.commit_row_batch(rows.select("stu_id", avg))
                """
            )
        )
        result = CliRunner().invoke(
            main, ["run", str(conf), "--flow", "Averages", "--faas", str(faas)]
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == [
            '{"stu_id": 0, "avg_score": 0.0}',
            '{"stu_id": 1, "avg_score": 1.0}',
            '{"stu_id": 2, "avg_score": 2.0}',
        ]

    def test_a_stream_writes_each_batchs_rows(self) -> None:
        import io

        from kisflow.executors import run_jsonl_stream

        def double(flow: kf.Flow, rows: pl.DataFrame) -> None:
            flow.commit_row_batch(rows.with_columns(pl.col("a") * 2))

        kf.faas("Double", double)
        flow = kf.FlowBuilder("lines").calculate("Double").build()
        out = io.StringIO()
        lines = [f'{{"a": {i}}}' for i in range(5)]
        run_jsonl_stream(flow, lines, out, batch_size=2)
        assert out.getvalue().splitlines() == [f'{{"a": {2 * i}}}' for i in range(5)]
