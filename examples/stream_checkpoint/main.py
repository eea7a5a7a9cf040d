"""A durable stream: a JSON-lines file into SQLite with a checkpoint, stopped half-way
and resumed, every row stored once.

``sources.jsonl`` reads the file by byte offsets; ``flow.stream(..., checkpoint=...)``
commits each batch's position in the checkpoint with the batch's rows in the SQLite
Save, so a rerun goes on after the last committed batch. The first run stops after half
the batches (as a crash or Ctrl-C would); the second resumes; a third finds nothing new.
A line that is no JSON goes to the dead letters with its text and line number.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import kisflow as kf
from kisflow import sources
from kisflow.checkpoint import Checkpoint

ORDERS = 2_000
BATCH = 200


def write_orders(path: Path) -> None:
    """The input: one order per line, and one broken line half-way."""
    with path.open("w") as f:
        for i in range(ORDERS):
            f.write(json.dumps({"order": i, "qty": 1 + i % 5, "price": 2.5}) + "\n")
            if i == ORDERS // 2:
                f.write('{"order": "broken\n')


def build(db: Path) -> kf.Flow:
    """Verify -> Calculate -> Save (the built-in SQLite store)."""

    @kf.faas("CheckOrder", replace=True)
    def check(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        flow.commit_row_batch(r for r in rows if r["qty"] > 0)

    @kf.faas("PriceOrder", replace=True)
    def price(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        flow.commit_row_batch({"order": r["order"], "total": r["qty"] * r["price"]} for r in rows)

    conn = kf.ConnConfig(cname="OrderDB", type="sqlite", addrs=str(db), key="orders")
    return (
        kf.FlowBuilder("Orders")
        .verify("CheckOrder")
        .calculate("PriceOrder")
        .save("StoreOrder", conn=conn)
        .build()
    )


def run(
    flow: kf.Flow, folder: Path, *, stop_after: int | None = None
) -> tuple[int, int, list[Any]]:
    """One run of the stream: (batches this run, lines committed in all runs, letters)."""
    letters: list[Any] = []
    batches = 0
    source = sources.jsonl(folder / "orders.jsonl")
    checkpoint = folder / "orders.ckpt.db"
    with flow.stream(
        source, batch_size=BATCH, checkpoint=checkpoint, dead_letters=letters
    ) as stream:
        for _result in stream:
            batches += 1
            if batches == stop_after:
                break  # stop half-way: what is committed stays committed
    with Checkpoint(checkpoint) as ckpt:
        saved = ckpt.load(source.key)
    return batches, 0 if saved is None else saved.committed, letters


def main(folder: Path | None = None) -> int:
    """Run, stop, resume, rerun; print what is stored. Returns the rows stored."""
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp) if folder is None else folder
        write_orders(where / "orders.jsonl")
        flow = build(where / "orders.db")
        batches, committed, letters = run(flow, where, stop_after=5)
        print(f"first run: stopped after {batches} batches, {committed} lines committed")
        batches, committed, more = run(flow, where)
        letters += more
        print(f"resumed: {batches} more batches, {committed} lines committed in all")
        batches, committed, more = run(flow, where)
        letters += more
        print(f"rerun: {batches} batches, nothing new")
        for letter in letters:
            print(f"dead letter: {letter.error}")
        con = sqlite3.connect(where / "orders.db")
        try:
            stored, distinct = con.execute(
                'SELECT COUNT(*), COUNT(DISTINCT "order") FROM orders'
            ).fetchone()
        finally:
            con.close()
        once = stored == distinct == ORDERS
        print(f"table orders: {stored} rows, {distinct} orders: every row stored once: {once}")
        return int(stored)


if __name__ == "__main__":
    sys.exit(0 if main() == ORDERS else 1)
