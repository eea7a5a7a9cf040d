"""Tests for partitions on a local process pool: same results, registry, errors, idempotency."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import sqlite3
import sys
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import pytest

import kisflow as kf
from kisflow.connectors import Store
from kisflow.executors import current_partition, process_pool, run_partitions
from kisflow.options import RunOptions
from tests.partitiontag import partition_tag_flow


@pytest.fixture(scope="module")
def procs() -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """Two spawned worker processes shared by this module's tests."""
    pool = process_pool(2)
    yield pool
    pool.shutdown(wait=True)


@attrs.frozen
class Score:
    stu_id: int
    score_1: int
    score_2: int


@attrs.frozen
class Avg:
    stu_id: int
    avg: float


def load_scores(span: tuple[int, int]) -> list[dict[str, int]]:
    """Rows of one partition, made on the worker from its description."""
    return [{"stu_id": i, "score_1": i % 100, "score_2": (i * 7) % 100} for i in range(*span)]


def _score_flow() -> kf.Flow:
    @kf.faas("DropTens")
    def drop_tens(flow: kf.Flow, rows: list[Score]) -> None:
        flow.commit_row_batch(r for r in rows if r.stu_id % 10)

    @kf.faas("Average", output=Avg)
    def average(flow: kf.Flow, rows: list[Score]) -> None:
        flow.commit_row_batch(Avg(r.stu_id, (r.score_1 + r.score_2) / 2) for r in rows)

    return kf.FlowBuilder("scores").verify("DropTens").calculate("Average").build()


SPANS = [(0, 250), (250, 500), (500, 750), (750, 1000)]


class TestSameResults:
    """Partitions on processes give the rows one run in this process gives."""

    def test_outputs_match_a_single_run(self, procs: Any) -> None:
        flow = _score_flow()
        results = run_partitions(flow, SPANS, load=load_scores, keep_output=True, executor=procs)
        parallel = [row for r in results for row in (r.output or [])]
        single = flow.run(load_scores((0, 1000))).output
        assert parallel == single
        assert len(parallel) == 900
        assert isinstance(parallel[0], Avg)
        assert [r.partition.index for r in results] == [0, 1, 2, 3]
        assert [(r.rows_in, r.rows_out) for r in results] == [(250, 225)] * 4

    def test_runs_on_the_worker_processes(self, procs: Any) -> None:
        results = run_partitions(_score_flow(), SPANS, load=load_scores, executor=procs)
        pids = {int(r.worker.rsplit(":", 1)[1]) for r in results}
        assert os.getpid() not in pids
        assert all(r.output is None for r in results)

    def test_own_pool_is_started_and_shut_down(self) -> None:
        results = run_partitions(_score_flow(), SPANS[:2], load=load_scores, workers=1)
        assert [r.rows_out for r in results] == [225, 225]

    def test_partition_keys_reach_the_stages(self, procs: Any) -> None:
        flow = partition_tag_flow("tags", "TagPartition")
        results = run_partitions(
            flow,
            ["a.csv", "b.csv"],
            load=lambda path: [len(path)] * 2,
            key=lambda path: path.removesuffix(".csv"),
            keep_output=True,
            executor=procs,
        )
        assert [r.output for r in results] == [["0/a/5", "0/a/5"], ["1/b/5", "1/b/5"]]
        assert current_partition() is None


class TestErrors:
    """A failing partition reaches the caller as a PartitionError chained to the cause."""

    def test_stage_error_names_flow_stage_and_partition(self, procs: Any) -> None:
        @kf.faas("Picky")
        def picky(flow: kf.Flow, rows: list[int]) -> None:
            if 13 in rows:
                raise ValueError("unlucky row 13")
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("picky").calculate("Picky").build()
        with pytest.raises(kf.PartitionError) as info:
            run_partitions(
                flow, [(0, 10), (10, 20), (20, 30)], load=lambda s: range(*s), executor=procs
            )
        err = info.value
        assert (err.flow, err.stage, err.partition) == ("picky", "Picky", "1")
        assert "flow 'picky' stage 'Picky' failed on partition '1'" in str(err)
        assert isinstance(err.__cause__, ValueError)
        assert str(err.__cause__) == "unlucky row 13"
        assert any("remote traceback" in note for note in err.__cause__.__notes__)

    def test_load_error_names_the_partition(self, procs: Any) -> None:
        def load(path: str) -> list[int]:
            raise FileNotFoundError(path)

        flow = _score_flow()
        with pytest.raises(kf.PartitionError, match=r"partition '0'.*load raised") as info:
            run_partitions(flow, ["missing.csv"], load=load, executor=procs)
        assert info.value.stage is None
        assert isinstance(info.value.__cause__, FileNotFoundError)

    def test_missing_faas_fails_before_anything_runs(self) -> None:
        flow = kf.Flow("nofaas").link(kf.FuncConfig(fname="Nowhere", fmode="Calculate"))
        with pytest.raises(kf.FunctionNotFoundError, match="'Nowhere'"):
            run_partitions(flow, [1], load=lambda x: [x], workers=1)


def idempotent_save_flow(db: Path, name: str) -> kf.Flow:
    """A Save stage that writes each partition once: ledger and rows in one transaction."""
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE IF NOT EXISTS scores (part TEXT, stu_id INTEGER)")
        con.execute("CREATE TABLE IF NOT EXISTS done (part TEXT PRIMARY KEY)")
        con.execute("CREATE TABLE IF NOT EXISTS attempts (part TEXT)")
    con.close()
    path = str(db)

    @kf.faas("SaveOnce")
    def save_once(flow: kf.Flow, rows: list[Score]) -> None:
        part = current_partition()
        key = part.key if part is not None else "-"
        c = sqlite3.connect(path, timeout=60, isolation_level=None)
        try:
            c.execute("INSERT INTO attempts VALUES (?)", (key,))
            c.execute("BEGIN IMMEDIATE")
            if c.execute("SELECT 1 FROM done WHERE part = ?", (key,)).fetchone() is None:
                c.executemany("INSERT INTO scores VALUES (?, ?)", [(key, r.stu_id) for r in rows])
                c.execute("INSERT INTO done VALUES (?)", (key,))
            c.execute("COMMIT")
        finally:
            c.close()
        flow.commit_row_batch(rows)

    return kf.FlowBuilder(name).save("SaveOnce").build()


def table_counts(db: Path) -> dict[str, Any]:
    """Rows per partition, ledger entries and save attempts, read back from SQLite."""
    con = sqlite3.connect(db)
    try:
        return {
            "rows": dict(con.execute("SELECT part, COUNT(*) FROM scores GROUP BY part")),
            "done": sorted(r[0] for r in con.execute("SELECT part FROM done")),
            "attempts": dict(con.execute("SELECT part, COUNT(*) FROM attempts GROUP BY part")),
            "total": con.execute("SELECT COUNT(*) FROM scores").fetchone()[0],
        }
    finally:
        con.close()


class TestIdempotentSave:
    """A rerun partition is not saved twice when Save keys its writes by partition."""

    def test_rerunning_every_partition_saves_each_once(self, procs: Any, tmp_path: Path) -> None:
        db = tmp_path / "scores.db"
        flow = idempotent_save_flow(db, "save-once")
        for _ in range(2):
            run_partitions(flow, SPANS, load=load_scores, executor=procs)
        counts = table_counts(db)
        assert counts["total"] == 1000
        assert counts["rows"] == {"0": 250, "1": 250, "2": 250, "3": 250}
        assert counts["done"] == ["0", "1", "2", "3"]
        assert counts["attempts"] == {"0": 2, "1": 2, "2": 2, "3": 2}


class TestDeadWorker:
    """A worker process that dies gives a PartitionError naming its partition."""

    def test_broken_pool_is_a_partition_error(self) -> None:
        @kf.faas("Die")
        def die(flow: kf.Flow, rows: list[int]) -> None:
            os._exit(3)

        flow = kf.FlowBuilder("dies").calculate("Die").build()
        with pytest.raises(kf.PartitionError, match="partition '0'") as info:
            run_partitions(flow, [1], load=lambda x: [x], workers=1)
        assert info.value.partition == "0"
        assert isinstance(info.value.__cause__, concurrent.futures.process.BrokenProcessPool)


def _die_on_3(how: str) -> kf.Flow:
    """A flow whose worker process dies on partition 3 while the other worker is busy."""

    @kf.faas("DieOn3")
    def die_on_3(flow: kf.Flow, rows: list[int]) -> None:
        if rows[0] == 3:
            time.sleep(0.1)  # the other worker is inside partition 2 or 4 by now
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(7)
        time.sleep(0.3)
        flow.commit_row_batch(rows)

    return kf.FlowBuilder("dies-on-3").calculate("DieOn3").build()


class TestDeadWorkerNamesItsPartition:
    """The PartitionError names the partition the dead worker ran, not a bystander."""

    @pytest.mark.parametrize("how", ["exit", "kill"])
    def test_first_error_names_the_dead_workers_partition(self, how: str) -> None:
        flow = _die_on_3(how)
        with pytest.raises(kf.PartitionError) as info:
            run_partitions(flow, range(8), load=lambda i: [i], workers=2)
        assert info.value.partition == "3"
        died = "killed by SIGKILL" if how == "kill" else "exit code 7"
        assert "partition '3' (index 3)" in str(info.value)
        assert "worker process (pid " in str(info.value)
        assert f"died while running it ({died})" in str(info.value)
        assert isinstance(info.value.__cause__, concurrent.futures.process.BrokenProcessPool)

    def test_every_lost_partition_says_which_one_died(self) -> None:
        errors: list[kf.PartitionError] = []
        results = run_partitions(
            _die_on_3("exit"), range(8), load=lambda i: [i], workers=2, on_error=errors.append
        )
        done = {r.partition.key for r in results}
        assert done >= {"0", "1"}
        assert "3" not in done
        assert sorted(e.partition or "" for e in errors) == sorted(
            str(i) for i in range(8) if str(i) not in done
        )
        dead = [e for e in errors if "died while running it" in str(e)]
        assert [e.partition for e in dead] == ["3"]
        assert errors[0] is dead[0]  # the dead worker's partition is reported first
        in_flight = [e for e in errors if "lost when the process pool broke" in str(e)]
        assert in_flight  # the other worker's partition, at least
        assert all("running partition '3' (pid " in str(e) for e in in_flight)


class TestConnectorsOnWorkers:
    """Connector init and CaaS callables travel with the flow and run on the workers."""

    def test_save_through_a_connector(self, procs: Any, tmp_path: Path) -> None:
        db = tmp_path / "out.db"
        con = sqlite3.connect(db)
        with con:
            con.execute("CREATE TABLE out (part TEXT, value INTEGER, init_pid INTEGER)")
        con.close()

        @kf.caas_init("SqliteOut")
        def open_db(connector: kf.Connector) -> None:
            connector.set_metadata("path", connector.config.addrs)
            connector.set_metadata("pid", os.getpid())

        @kf.caas("SqliteOut", "WriteRows", "Save")
        def write(connector: kf.Connector, stage: Any, flow: kf.Flow, rows: Any) -> int:
            part = current_partition()
            key = part.key if part is not None else "-"
            c = sqlite3.connect(connector.get_metadata("path"), timeout=60)
            with c:
                c.execute("DELETE FROM out WHERE part = ?", (key,))  # replace: idempotent
                c.executemany(
                    "INSERT INTO out VALUES (?, ?, ?)",
                    [(key, r, connector.get_metadata("pid")) for r in rows],
                )
            c.close()
            return len(rows)

        @kf.faas("WriteRows")
        def write_rows(flow: kf.Flow, rows: list[int]) -> None:
            written = flow.get_connector().call(flow, rows)
            flow.commit_row(written)

        conn = kf.ConnConfig(cname="SqliteOut", addrs=str(db), type="sqlite")
        flow = kf.FlowBuilder("via-conn").save("WriteRows", conn=conn).build()
        results = run_partitions(
            flow, [(0, 3), (3, 7)], load=lambda s: range(*s), keep_output=True, executor=procs
        )
        run_partitions(flow, [(0, 3), (3, 7)], load=lambda s: range(*s), executor=procs)
        assert [r.output for r in results] == [[3], [4]]
        c = sqlite3.connect(db)
        rows = c.execute("SELECT part, value, init_pid FROM out ORDER BY value").fetchall()
        c.close()
        assert [(p, v) for p, v, _ in rows] == [("0", 0), ("0", 1), ("0", 2)] + [
            ("1", v) for v in range(3, 7)
        ]
        assert os.getpid() not in {pid for _, _, pid in rows}


class TestDynamicModules:
    """FaaS defined in a module made at run time (exec, a notebook) travel by value."""

    def test_faas_from_a_module_without_a_file(self, procs: Any) -> None:
        module = types.ModuleType("kisflow_dynamic_faas")
        sys.modules[module.__name__] = module
        try:
            exec(
                "import kisflow as kf\n"
                "OFFSET = 1000\n"
                "def shift(flow: kf.Flow, rows: list[int]) -> None:\n"
                "    flow.commit_row_batch(r + OFFSET for r in rows)\n"
                "def load(n: int) -> list[int]:\n"
                "    return list(range(n))\n",
                module.__dict__,
            )
            kf.faas("Shift", module.shift)
            flow = kf.FlowBuilder("dynamic").calculate("Shift").build()
            results = run_partitions(
                flow, [2, 3], load=module.load, keep_output=True, executor=procs
            )
        finally:
            del sys.modules[module.__name__]
        assert [r.output for r in results] == [[1000, 1001], [1000, 1001, 1002]]


class TestOnError:
    """With ``on_error`` a failing partition is reported and the others still run."""

    def test_failures_go_to_on_error(self, procs: Any) -> None:
        @kf.faas("OddFails")
        def odd_fails(flow: kf.Flow, rows: list[int]) -> None:
            if rows[0] % 2:
                raise ValueError(f"odd start {rows[0]}")
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("odd").calculate("OddFails").build()
        errors: list[kf.PartitionError] = []
        results = run_partitions(
            flow, range(6), load=lambda i: [i], on_error=errors.append, executor=procs
        )
        assert [r.partition.index for r in results] == [0, 2, 4]
        assert sorted(e.partition for e in errors if e.partition) == ["1", "3", "5"]
        assert all(isinstance(e.__cause__, ValueError) for e in errors)
        assert all(e.stage == "OddFails" for e in errors)


def load_tagged(span: tuple[int, int]) -> list[dict[str, int]]:
    """Rows of one partition tagged with their span start, made on the worker."""
    return [{"start": span[0], "stu_id": i} for i in range(*span)]


class TestBuiltinSqliteSave:
    """A built-in sqlite Save run on the process pool stores every partition exactly once."""

    def test_exact_counts_across_reruns(self, procs: Any, tmp_path: Path) -> None:
        db = tmp_path / "builtin.db"
        conn = kf.ConnConfig(cname="out", type="sqlite", addrs=str(db), key="scores")
        flow = kf.FlowBuilder("builtin-save").save("Store", conn=conn).build()
        first = run_partitions(flow, SPANS[:3], load=load_tagged, executor=procs)
        # A rerun of all four: the three saved ones write nothing, the fourth writes.
        again = run_partitions(flow, SPANS, load=load_tagged, executor=procs)
        assert [r.rows_out for r in first] == [250, 250, 250]
        assert [r.rows_out for r in again] == [250] * 4
        with closing(sqlite3.connect(db)) as c:
            counts = dict(c.execute("SELECT start, COUNT(*) FROM scores GROUP BY start"))
            ids = [i for (i,) in c.execute("SELECT stu_id FROM scores ORDER BY stu_id")]
            ledger = c.execute(
                'SELECT flow, stage, "partition" FROM kisflow_partitions ORDER BY 3'
            ).fetchall()
        assert counts == {0: 250, 250: 250, 500: 250, 750: 250}
        assert ids == list(range(1000))
        assert ledger == [("builtin-save", "Store", str(k)) for k in range(4)]


class TestRunOptionsOnWorkers:
    """``options=`` travels to the worker processes: ctx, step limit and dead letters."""

    def test_options_reach_every_worker(self, procs: Any, tmp_path: Path) -> None:
        @kf.faas("OddsAway")
        def odds_away(ctx: str, flow: kf.Flow, rows: list[int]) -> None:
            for row in rows:
                if row % 2:
                    flow.dead_letter(row, "odd")
                else:
                    flow.commit_row(f"{ctx}:{row}")

        flow = kf.FlowBuilder("odds").calculate("OddsAway").build()
        path = tmp_path / "dead.jsonl"
        options = RunOptions(ctx="opt", dead_letters=path, max_steps=5)
        results = run_partitions(
            flow,
            SPANS[:2],
            load=lambda s: range(s[0], s[0] + 4),
            options=options,
            keep_output=True,
            executor=procs,
        )
        assert [r.output for r in results] == [["opt:0", "opt:2"], ["opt:250", "opt:252"]]
        rows = sorted(letter["row"] for letter in kf.deadletter.JsonlSink(path).read())
        assert rows == [1, 3, 251, 253]


class FileStore(Store):
    """A connector type known only to one pool: each Save appends its rows to ``addrs``."""

    def save(self, rows: Sequence[Any], params: Mapping[str, Any], mark: Any = None) -> int:
        with open(self.config.addrs, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        return len(rows)

    def load(self, params: Mapping[str, Any]) -> list[Any]:
        return []


class TestPoolConnectorTypesTravel:
    """A type registered with kf.pool.connector_type reaches the workers with the flow."""

    def test_a_save_on_a_pool_type_runs_on_the_workers(self, procs: Any, tmp_path: Path) -> None:
        out = tmp_path / "rows.jsonl"
        kf.pool.connector_type("filestore", FileStore)
        conn = kf.ConnConfig(cname="fs", type="filestore", addrs=str(out), key="k")
        flow = kf.FlowBuilder("ship").save("Keep", conn=conn).build()
        results = run_partitions(flow, [[1, 2], [3]], load=list, executor=procs)
        assert sorted(r.rows_out for r in results) == [1, 2]
        assert sorted(json.loads(line) for line in out.read_text().splitlines()) == [1, 2, 3]
