"""Tests for ``kisflow.dask`` on a real LocalCluster: registry, errors, a killed worker."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import dask
import distributed
import pytest
from loguru import logger

import kisflow as kf
from kisflow.executors import current_partition
from tests.partitiontag import partition_tag_flow


@pytest.fixture(scope="session")
def client() -> Iterator[Any]:
    """A real two-process LocalCluster (no dashboard), started once and closed at the end."""
    with dask.config.set(
        {**kf.dask.SATURATION_CONFIG, "distributed.scheduler.allowed-failures": 2}
    ):
        cluster = distributed.LocalCluster(
            processes=True,
            n_workers=2,
            threads_per_worker=1,
            dashboard_address=None,
            host="127.0.0.1",
            # The scheduler serves HTTP even without a dashboard, on port 8787 by default:
            # a free port instead, so clusters of parallel test runs never collide.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )
        c = distributed.Client(cluster)
        try:
            yield c
        finally:
            c.close()
            cluster.close()


@attrs.frozen
class Reading:
    sensor: int
    value: float


@attrs.frozen
class Scaled:
    sensor: int
    value: float


def load_readings(part: int) -> list[dict[str, Any]]:
    """One partition's rows, made on the worker (rows never travel through Dask)."""
    return [{"sensor": part * 100 + i, "value": i / 10} for i in range(100)]


def _typed_flow() -> kf.Flow:
    @kf.faas("Scale", output=Scaled)
    def scale(flow: kf.Flow, rows: list[Reading]) -> None:
        factor = flow.get_func_param("factor")
        flow.commit_row_batch(Scaled(r.sensor, r.value * factor) for r in rows)

    return kf.FlowBuilder("sensors").calculate("Scale", params={"factor": 3}).build()


class TestRegistryOnWorkers:
    """Flows registered only in this process run on the workers with their own FaaS."""

    def test_typed_flow_gives_the_local_result(self, client: Any) -> None:
        flow = _typed_flow()
        results = kf.dask.run_partitions(
            client, flow, range(4), load=load_readings, keep_output=True
        )
        remote = [row for r in results for row in (r.output or [])]
        local = [row for p in range(4) for row in flow.run(load_readings(p)).output]
        assert remote == local
        assert len(remote) == 400
        assert remote[101] == Scaled(sensor=101, value=pytest.approx(0.3))
        workers = {r.worker for r in results}
        assert f"{os.uname().nodename}:{os.getpid()}" not in workers

    def test_workers_see_the_partition(self, client: Any) -> None:
        flow = partition_tag_flow("where", "Where")
        results = kf.dask.run_partitions(
            client,
            flow,
            ["jan", "feb"],
            load=lambda month: [month.upper()],
            key=lambda month: f"2026-{month}",
            keep_output=True,
        )
        assert [r.output for r in results] == [["0/2026-jan/JAN"], ["1/2026-feb/FEB"]]


class TestErrors:
    """A stage's exception reaches the caller as a PartitionError naming the partition."""

    def test_stage_error(self, client: Any) -> None:
        @kf.faas("RejectNegative")
        def reject(flow: kf.Flow, rows: list[int]) -> None:
            for r in rows:
                if r < 0:
                    raise ValueError(f"negative reading {r}")
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("readings").verify("RejectNegative").build()
        with pytest.raises(kf.PartitionError) as info:
            kf.dask.run_partitions(
                client, flow, [[1, 2], [3, -4], [5]], load=lambda rows: rows, key=str
            )
        err = info.value
        assert (err.flow, err.stage, err.partition) == ("readings", "RejectNegative", "[3, -4]")
        assert isinstance(err.__cause__, ValueError)
        assert str(err.__cause__) == "negative reading -4"

    def test_missing_extra_names_the_pip_command(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "distributed", None)
        flow = _typed_flow()
        with pytest.raises(kf.MissingExtraError, match=r"pip install 'kisflow\[dask\]'"):
            kf.dask.run_partitions(None, flow, [0], load=load_readings)  # type: ignore[arg-type]


def _save_flow(db: Path, slow: dict[int, float]) -> kf.Flow:
    """Slow stage, then a Save that writes each partition once (ledger in the same commit)."""
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE scores (part TEXT, sensor INTEGER)")
        con.execute("CREATE TABLE done (part TEXT PRIMARY KEY)")
        con.execute("CREATE TABLE starts (part TEXT)")
        con.execute("CREATE TABLE attempts (part TEXT)")
    con.close()
    path = str(db)

    def log(table: str, key: str) -> None:
        c = sqlite3.connect(path, timeout=60, isolation_level=None)
        try:
            c.execute(f"INSERT INTO {table} VALUES (?)", (key,))
        finally:
            c.close()

    @kf.faas("Slow")
    def slow_stage(flow: kf.Flow, rows: list[Reading]) -> None:
        part = current_partition()
        assert part is not None
        log("starts", part.key)
        time.sleep(slow.get(part.index, slow[-1]))
        flow.commit_row_batch(rows)

    @kf.faas("SaveOnce")
    def save_once(flow: kf.Flow, rows: list[Reading]) -> None:
        part = current_partition()
        assert part is not None
        log("attempts", part.key)
        c = sqlite3.connect(path, timeout=60, isolation_level=None)
        try:
            c.execute("BEGIN IMMEDIATE")
            if c.execute("SELECT 1 FROM done WHERE part = ?", (part.key,)).fetchone() is None:
                c.executemany(
                    "INSERT INTO scores VALUES (?, ?)", [(part.key, r.sensor) for r in rows]
                )
                c.execute("INSERT INTO done VALUES (?)", (part.key,))
            c.execute("COMMIT")
        finally:
            c.close()
        flow.commit_row_batch(rows)

    return kf.FlowBuilder("killed").calculate("Slow").save("SaveOnce").build()


def _counts(db: Path) -> dict[str, Any]:
    con = sqlite3.connect(db)
    try:
        return {
            table: dict(con.execute(f"SELECT part, COUNT(*) FROM {table} GROUP BY part"))
            for table in ("scores", "done", "starts", "attempts")
        }
    finally:
        con.close()


class _KillOtherWorker:
    """An ``on_result`` hook: at the first result, once ``started()`` holds (30 s at most),
    SIGKILLs the worker that did not give it, so the partition running there is lost."""

    def __init__(self, client: Any, started: Callable[[], bool]) -> None:
        self.client = client
        self.started = started
        self.killed: list[int] = []
        self.finished_before: list[str] = []  # the partitions done before the kill

    def __call__(self, result: kf.executors.PartitionResult) -> None:
        if self.killed:
            return
        self.finished_before.append(result.partition.key)
        deadline = time.monotonic() + 30
        while not self.started() and time.monotonic() < deadline:
            time.sleep(0.02)
        mine = int(result.worker.rsplit(":", 1)[1])
        victim = next(pid for pid in self.client.run(os.getpid).values() if pid != mine)
        os.kill(victim, signal.SIGKILL)
        self.killed.append(victim)


class TestKilledWorker:
    """A worker SIGKILLed mid-run loses no partition and saves none twice."""

    def test_exact_row_counts_after_sigkill(self, client: Any, tmp_path: Path) -> None:
        db = tmp_path / "scores.db"
        # Partition 0 finishes first; partition 1 is still sleeping when its worker dies.
        flow = _save_flow(db, {0: 0.2, -1: 2.0})
        # Kill only once partition 1 is surely running (it logs its start first).
        kill = _KillOtherWorker(client, lambda: "1" in _counts(db)["starts"])
        results = kf.dask.run_partitions(client, flow, range(4), load=load_readings, on_result=kill)
        assert kill.killed, "no worker was killed"
        assert [r.partition.key for r in results] == ["0", "1", "2", "3"]
        assert [r.rows_out for r in results] == [100] * 4
        assert kill.killed[0] not in {int(r.worker.rsplit(":", 1)[1]) for r in results}
        counts = _counts(db)
        assert counts["scores"] == {"0": 100, "1": 100, "2": 100, "3": 100}
        assert counts["done"] == {"0": 1, "1": 1, "2": 1, "3": 1}
        # The partition on the killed worker started twice; finished ones never reran.
        assert counts["starts"]["1"] == 2
        for key in kill.finished_before:
            assert counts["starts"][key] == 1
            assert counts["attempts"][key] == 1


class TestPoisonedPartition:
    """A partition that kills every worker it runs on fails alone; neighbours finish."""

    def test_killed_worker_error_names_the_partition(self, client: Any, tmp_path: Path) -> None:
        @kf.faas("Poison")
        def poison(flow: kf.Flow, rows: list[int]) -> None:
            part = current_partition()
            if part is not None and part.key == "poison":
                time.sleep(0.5)  # the neighbours finish first, on the other worker
                os.kill(os.getpid(), signal.SIGKILL)
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("poisoned").calculate("Poison").build()
        finished: list[str] = []
        with pytest.raises(kf.PartitionError) as info:
            kf.dask.run_partitions(
                client,
                flow,
                ["poison", "a", "b", "c", "d"],
                load=lambda name: [len(name)],
                key=str,
                on_result=lambda r: finished.append(r.partition.key),
            )
        err = info.value
        assert (err.flow, err.stage, err.partition) == ("poisoned", None, "poison")
        assert type(err.__cause__).__name__ == "KilledWorker"
        assert sorted(finished) == ["a", "b", "c", "d"]
        # The cluster recovers: the nannies restart the killed workers.
        client.wait_for_workers(2, timeout=30)
        ok = kf.dask.run_partitions(client, flow, ["e"], load=lambda n: [1], key=str)
        assert [r.rows_out for r in ok] == [1]


class TestSaturationCheck:
    """run_partitions warns (through loguru) when the scheduler's saturation is not 1.0."""

    def test_fixture_cluster_runs_at_saturation_one(self, client: Any) -> None:
        saturation = client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.WORKER_SATURATION
        )
        assert saturation == 1.0

    def test_warning_names_the_setting(self, client: Any) -> None:
        messages: list[str] = []
        logger.enable("kisflow")
        sink = logger.add(messages.append, level="WARNING", format="{message}")
        client.run_on_scheduler(_set_saturation, value=1.1)
        try:
            kf.dask.run_partitions(client, _typed_flow(), [0], load=load_readings)
        finally:
            client.run_on_scheduler(_set_saturation, value=1.0)
            logger.remove(sink)
            logger.disable("kisflow")
        assert any("WORKER_SATURATION=1.0" in m and "1.1" in m for m in messages)


def _set_saturation(dask_scheduler: Any, value: float) -> None:
    dask_scheduler.WORKER_SATURATION = value


class TestPoisonedWithOnError:
    """With ``on_error`` every neighbour of a poisoned partition is run and saved."""

    def test_all_neighbours_finish(self, client: Any) -> None:
        @kf.faas("Poison2")
        def poison(flow: kf.Flow, rows: list[int]) -> None:
            part = current_partition()
            if part is not None and part.key == "poison":
                os.kill(os.getpid(), signal.SIGKILL)
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("poisoned2").calculate("Poison2").build()
        errors: list[kf.PartitionError] = []
        results = kf.dask.run_partitions(
            client,
            flow,
            ["a", "poison", "b", "c", "d", "e"],
            load=lambda name: [len(name)],
            key=str,
            on_error=errors.append,
        )
        assert [r.partition.key for r in results] == ["a", "b", "c", "d", "e"]
        assert [e.partition for e in errors] == ["poison"]
        assert type(errors[0].__cause__).__name__ == "KilledWorker"
        client.wait_for_workers(2, timeout=30)


def _builtin_save_flow(db: Path, log_db: Path, slow: dict[int, float]) -> kf.Flow:
    """A built-in sqlite Save (no FaaS), then a slow stage that logs each partition's pass."""
    with closing(sqlite3.connect(log_db)) as con, con:
        con.execute("CREATE TABLE after_save (part TEXT)")
    log_path = str(log_db)

    @kf.faas("AfterSave")
    def after_save(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        part = current_partition()
        assert part is not None
        with closing(sqlite3.connect(log_path, timeout=60, isolation_level=None)) as c:
            c.execute("INSERT INTO after_save VALUES (?)", (part.key,))
        time.sleep(slow.get(part.index, slow[-1]))
        flow.commit_row_batch(rows)

    conn = kf.ConnConfig(cname="scores", type="sqlite", addrs=str(db), key="scores")
    return kf.FlowBuilder("builtin-killed").save("Store", conn=conn).calculate("AfterSave").build()


def _passes(log_db: Path) -> dict[str, int]:
    with closing(sqlite3.connect(log_db)) as con:
        return dict(con.execute("SELECT part, COUNT(*) FROM after_save GROUP BY part"))


class TestKilledWorkerBuiltinSave:
    """A worker SIGKILLed after its built-in sqlite Save committed: the rerun writes nothing."""

    def test_exact_row_counts_after_sigkill(self, client: Any, tmp_path: Path) -> None:
        client.wait_for_workers(2, timeout=30)
        db, log_db = tmp_path / "scores.db", tmp_path / "log.db"
        # Partition 1 has saved and is sleeping in the next stage when its worker dies.
        flow = _builtin_save_flow(db, log_db, {0: 0.2, 1: 3.0, -1: 0.3})
        kill = _KillOtherWorker(client, lambda: "1" in _passes(log_db))
        results = kf.dask.run_partitions(client, flow, range(4), load=load_readings, on_result=kill)
        assert kill.killed, "no worker was killed"
        assert [r.partition.key for r in results] == ["0", "1", "2", "3"]
        assert [r.rows_out for r in results] == [100] * 4
        with closing(sqlite3.connect(db)) as con:
            counts = dict(
                con.execute("SELECT sensor / 100, COUNT(*) FROM scores GROUP BY sensor / 100")
            )
            distinct = con.execute("SELECT COUNT(DISTINCT sensor) FROM scores").fetchone()[0]
            ledger = [k for (k,) in con.execute('SELECT "partition" FROM kisflow_partitions')]
        assert counts == {0: 100, 1: 100, 2: 100, 3: 100}
        assert distinct == 400
        assert sorted(ledger) == ["0", "1", "2", "3"]
        # Partition 1 passed its Save twice (it was rerun); the second Save wrote nothing.
        assert _passes(log_db)["1"] == 2
