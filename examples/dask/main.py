"""Run one flow over file partitions on a Dask cluster, saving each partition once.

Writes six CSV files of student scores, then hands the flow and the file *paths* (not
rows) to ``kisflow.dask.run_partitions``: each worker reads its file, runs Verify ->
Calculate -> Save, and the Save stage writes the partition's rows and a ledger entry in
one SQLite transaction keyed by ``current_partition().key``, so a partition rerun after
a worker crash is not saved twice. Runs a local cluster of two worker processes, or
joins a running one with ``--scheduler tcp://127.0.0.1:8786``.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import attrs

import kisflow as kf
from kisflow.executors import current_partition


@attrs.frozen
class Score:
    stu_id: int
    score_1: int
    score_2: int
    score_3: int


def write_files(folder: Path, files: int = 6, rows: int = 1_000) -> list[str]:
    """Partition descriptions: one CSV path per partition."""
    paths = []
    for f in range(files):
        path = folder / f"scores-{f}.csv"
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["stu_id", "score_1", "score_2", "score_3"])
            for i in range(f * rows, (f + 1) * rows):
                writer.writerow([i, i % 100, (i * 7) % 100, (i * 13) % 100])
        paths.append(str(path))
    return paths


def read_csv(path: str) -> list[dict[str, int]]:
    """Runs on the worker: the rows are loaded where they are used."""
    with open(path, newline="") as f:
        return [{k: int(v) for k, v in row.items()} for row in csv.DictReader(f)]


def build(db: str) -> kf.Flow:
    """The flow; its FaaS are shipped to the workers with it (cloudpickled)."""

    @kf.faas("DropTens")
    def drop_tens(flow: kf.Flow, rows: list[Score]) -> None:
        flow.commit_row_batch(r for r in rows if r.stu_id % 10)

    @kf.faas("Average")
    def average(flow: kf.Flow, rows: list[Score]) -> None:
        flow.commit_row_batch(
            (r.stu_id, round((r.score_1 + r.score_2 + r.score_3) / 3, 2)) for r in rows
        )

    @kf.faas("SaveOnce")
    def save_once(flow: kf.Flow, rows: list[Any]) -> None:
        part = current_partition()
        key = part.key if part is not None else "local"
        con = sqlite3.connect(db, timeout=60, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            done = con.execute("SELECT 1 FROM done WHERE part = ?", (key,)).fetchone()
            if done is None:
                con.executemany("INSERT INTO avg VALUES (?, ?, ?)", [(key, *r) for r in rows])
                con.execute("INSERT INTO done VALUES (?)", (key,))
            con.execute("COMMIT")
        finally:
            con.close()
        flow.commit_row_batch(rows)

    return (
        kf.FlowBuilder("scores-on-dask")
        .verify("DropTens")
        .calculate("Average")
        .save("SaveOnce")
        .build()
    )


def main(scheduler: str | None = None) -> dict[str, Any]:
    """Run the flow on the cluster and return what was saved (the test checks it)."""
    import dask
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "scores.db")
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE avg (part TEXT, stu_id INTEGER, avg REAL)")
            con.execute("CREATE TABLE done (part TEXT PRIMARY KEY)")
        con.close()
        paths = write_files(Path(tmp))
        flow = build(db)
        key = lambda path: Path(path).stem  # noqa: E731 - a one-line key function
        if scheduler is not None:
            with Client(scheduler) as client:
                results = kf.dask.run_partitions(client, flow, paths, load=read_csv, key=key)
        else:
            with (
                dask.config.set(kf.dask.SATURATION_CONFIG),
                LocalCluster(
                    n_workers=2,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    host="127.0.0.1",
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # free port
                ) as cluster,
                Client(cluster) as client,
            ):
                results = kf.dask.run_partitions(client, flow, paths, load=read_csv, key=key)
        for r in results:
            print(f"{r.partition.key}: {r.rows_in} rows in, {r.rows_out} saved")
        con = sqlite3.connect(db)
        saved = con.execute("SELECT COUNT(*) FROM avg").fetchone()[0]
        parts = con.execute("SELECT COUNT(*) FROM done").fetchone()[0]
        con.close()
    print(
        f"saved {saved} rows from {parts} partitions on {len({r.worker for r in results})} workers"
    )
    return {"saved": saved, "partitions": parts, "results": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run a kisflow flow on Dask.")
    parser.add_argument("--scheduler", help="address of a running scheduler (default: local)")
    main(parser.parse_args().scheduler)
