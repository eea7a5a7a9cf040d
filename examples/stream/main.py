"""Stream an endless-looking source through a flow in micro-batches, sync and async.

A generator stands in for a log tail or a binlog: 100,000 access-log records, read
1,000 at a time. Verify drops health checks, Calculate turns each record into a row,
Save writes every batch to SQLite in one transaction. Memory holds one batch, whatever
the source's length; Ctrl-C stops after the batch in flight. Then the same flow runs as
an async stream over an async source, with an async stage mixed in.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kisflow as kf


def access_log(n: int) -> Iterator[dict[str, Any]]:
    """A source read lazily: nothing but the current batch is ever in memory."""
    for i in range(n):
        yield {"path": "/health" if i % 10 == 0 else f"/item/{i % 50}", "ms": i % 300}


def build(db: Path) -> kf.Flow:
    """Register the FaaS and build the flow: Verify -> Calculate -> Save."""
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE hits (path TEXT, slow INTEGER)")
    con.close()

    @kf.faas("DropHealthChecks")
    def drop_health(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        flow.commit_row_batch(r for r in rows if r["path"] != "/health")

    @kf.faas("MarkSlow")
    def mark_slow(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        flow.commit_row_batch((r["path"], int(r["ms"] >= 250)) for r in rows)

    @kf.faas("SaveHits")
    def save_hits(flow: kf.Flow, rows: list[Any]) -> None:
        con = sqlite3.connect(db)
        try:
            with con:  # one transaction per batch: a stop never leaves half a batch
                con.executemany("INSERT INTO hits VALUES (?, ?)", rows)
        finally:
            con.close()
        flow.commit_row_batch(rows)

    return (
        kf.FlowBuilder("access-log")
        .verify("DropHealthChecks")
        .calculate("MarkSlow")
        .save("SaveHits")
        .build()
    )


async def ticks(n: int) -> AsyncIterator[dict[str, Any]]:
    """An async source, e.g. a queue consumer."""
    for i in range(n):
        if i % 500 == 0:
            await asyncio.sleep(0)
        yield {"path": f"/item/{i % 7}", "ms": 260 if i % 4 == 0 else 20}


async def async_part() -> int:
    """The async stream: an async stage awaited, a sync one run in a thread."""

    @kf.faas("Enrich")
    async def enrich(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        await asyncio.sleep(0)  # e.g. an async HTTP lookup
        flow.commit_row_batch({**r, "slow": r["ms"] >= 250} for r in rows)

    @kf.faas("CountSlow")
    def count_slow(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        flow.commit_row(sum(r["slow"] for r in rows))

    flow = kf.FlowBuilder("ticks").calculate("Enrich").expand("CountSlow").build()
    slow = 0
    async for result in flow.astream(ticks(10_000), batch_size=1_000, max_in_flight=4):
        slow += result.output[0]
    return slow


def main() -> dict[str, int]:
    """Run both streams and return their figures (the test checks them)."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "hits.db"
        flow = build(db)
        stream = flow.stream(access_log(100_000), batch_size=1_000)
        for result in stream:
            if stream.batches_done % 25 == 0:
                print(f"batch {stream.batches_done}: {stream.rows_done} rows read")
            assert len(result.output) <= 1_000
        con = sqlite3.connect(db)
        saved, slow = con.execute("SELECT COUNT(*), SUM(slow) FROM hits").fetchone()
        con.close()
    state = "stopped early" if stream.interrupted else "finished"
    print(f"stream {state}: {stream.rows_done} rows in {stream.batches_done} batches")
    print(f"saved {saved} hits, {slow} slow")
    async_slow = asyncio.run(async_part())
    print(f"async stream: {async_slow} slow ticks")
    return {"rows": stream.rows_done, "saved": saved, "slow": slow, "async_slow": async_slow}


if __name__ == "__main__":
    main()
