"""Your own Save joins a durable stream's commit: stored once, even when a batch replays.

A checkpointed stream runs each batch under an idempotency key, ``kf.current_batch().key``
(the same key when a crash makes it run the batch again). The built-in stores record it
with their rows; a Save you write yourself does the same in its own transaction: skip
the batch when its key is there, else store the rows and the key together. Registered
with ``joins_commit=True``, it lets the stream promise ``delivery="exactly-once"``.

Here the first stream dies after batch 2 was saved and before it was committed (a
stage after the Save fails once, as a crash would); the second stream replays batch 2
under the same key, the Save skips it, and every number is stored once.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import kisflow as kf
from kisflow.sources import Chunk, Source


class Numbers(Source):
    """A tiny durable source: the numbers 1..n, positions are how many were read."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.at = 0

    @property
    def key(self) -> str:
        return f"numbers:{self.n}"

    def open(self, position: Any | None) -> None:
        self.at = position or 0

    def read(self, max_rows: int, timeout: float) -> Chunk | None:
        if self.at >= self.n:
            return None
        a, self.at = self.at, min(self.n, self.at + max_rows)
        return self.reread([a, self.at])

    def reread(self, span: Any) -> Chunk:
        return Chunk(list(range(span[0] + 1, span[1] + 1)), span)

    def position(self, span: Any) -> Any:
        return span[1]


def build(db: Path, crash_once: list[bool], replayed: list[str]) -> kf.Flow:
    """Register the FaaS and build the flow: Calculate -> your own Save -> Calculate."""
    con = sqlite3.connect(db, isolation_level=None)  # transactions by hand, below
    con.execute("CREATE TABLE IF NOT EXISTS numbers (n INTEGER)")
    con.execute("CREATE TABLE IF NOT EXISTS stored_batches (key TEXT PRIMARY KEY)")

    @kf.faas("Square")
    def square(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(rows)

    @kf.faas("StoreNumbers", joins_commit=True)
    def store(flow: kf.Flow, rows: list[int]) -> None:
        batch = kf.current_batch()  # None outside a checkpointed stream
        con.execute("BEGIN IMMEDIATE")
        try:
            if (
                batch is not None
                and con.execute(
                    "SELECT 1 FROM stored_batches WHERE key = ?", (batch.key,)
                ).fetchone()
            ):
                replayed.append(batch.key)  # stored before a crash: store nothing
            else:
                con.executemany("INSERT INTO numbers VALUES (?)", [(r,) for r in rows])
                if batch is not None:
                    con.execute("INSERT INTO stored_batches VALUES (?)", (batch.key,))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        flow.commit_row_batch(rows)

    @kf.faas("Report")
    def report(flow: kf.Flow, rows: list[int]) -> None:
        if crash_once and 15 in rows:
            crash_once.clear()
            raise RuntimeError("the process died here (after the Save, before the commit)")
        flow.commit_row_batch(rows)

    return (
        kf.FlowBuilder("OwnSave")
        .calculate("Square")
        .save("StoreNumbers")
        .calculate("Report")
        .build()
    )


def main() -> tuple[list[int], int]:
    """Stream 1..30 twice over one checkpoint; returns what is stored and the replays."""
    with tempfile.TemporaryDirectory() as tmp:
        db, checkpoint = Path(tmp) / "numbers.db", Path(tmp) / "numbers.ckpt.db"
        replayed: list[str] = []
        flow = build(db, [True], replayed)
        try:
            for _ in flow.stream(Numbers(30), batch_size=10, checkpoint=checkpoint):
                pass
        except kf.StageExecutionError as exc:
            print(f"first stream failed: {exc.__cause__}")
        with flow.stream(
            Numbers(30), batch_size=10, checkpoint=checkpoint, delivery="exactly-once"
        ) as stream:
            for _ in stream:
                pass
        con = sqlite3.connect(db)
        stored = [n for (n,) in con.execute("SELECT n FROM numbers ORDER BY n")]
        con.close()
    print(f"stored {len(stored)} numbers, {len(set(stored))} distinct; replayed {replayed}")
    return stored, len(replayed)


if __name__ == "__main__":
    main()
