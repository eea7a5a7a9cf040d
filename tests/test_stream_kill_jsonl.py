"""Kill tests for a JSON-lines file stream with a checkpoint (issue 10, part 9).

A child process streams a file through Verify -> Calculate -> Save (the built-in SQLite
store) with a checkpoint; the test SIGKILLs it at five or more seeded random moments,
restarts it each time and checks the table holds every row exactly once and the
checkpoint holds no intent and ends at the file's last byte. The control run saves
through a user FaaS that does not join the checkpoint and is killed right after its
Save: it stores duplicates, so the test tells the two guarantees apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kisflow.checkpoint import Checkpoint
from tests.streamkill import count_rows, kill_loop, write_child

ROWS = 60_000
BATCH = 500

CHILD = """\
import sqlite3
import sys
import time

import kisflow as kf
from kisflow import sources

control = sys.argv[1] == "control"


@kf.faas("Check")
def check(flow, rows):
    flow.commit_row_batch(r for r in rows if r["id"] >= 0)


@kf.faas("Price")
def price(flow, rows):
    flow.commit_row_batch({"id": r["id"], "total": r["qty"] * 3} for r in rows)


first = True


@kf.faas("UserStore")
def user_store(flow, rows):
    global first
    con = sqlite3.connect("orders.db")
    with con:
        con.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER, total INTEGER)")
        con.executemany("INSERT INTO orders VALUES (?, ?)", [(r["id"], r["total"]) for r in rows])
    con.close()
    flow.commit_row_batch(rows)
    if first:  # the kill lands here: stored, not yet committed in the checkpoint
        first = False
        print("saved", flush=True)
        time.sleep(2)


builder = kf.FlowBuilder("Orders").verify("Check").calculate("Price")
if control:
    flow = builder.save("UserStore").build()
else:
    conn = kf.ConnConfig(cname="OrderDB", type="sqlite", addrs="orders.db", key="orders")
    flow = builder.save("Store", conn=conn).build()
with flow.stream(
    sources.jsonl("orders.jsonl"), batch_size=BATCH_SIZE, checkpoint="orders.ckpt.db"
) as stream:
    for result in stream:
        print("batch", stream.committed, flush=True)
        if not control:
            time.sleep(0.02)  # caps each start's work, so all the kills land mid-stream
print("done", flush=True)
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    with (tmp_path / "orders.jsonl").open("w") as f:
        for i in range(ROWS):
            f.write(json.dumps({"id": i, "qty": i % 7}) + "\n")
    write_child(tmp_path, CHILD.replace("BATCH_SIZE", str(BATCH)))
    return tmp_path


@pytest.mark.slow
def test_killed_five_times_every_row_is_stored_once(folder: Path) -> None:
    report = kill_loop(
        folder / "child.py", args=["builtin"], kills=6, seed=10, delay=(0.0, 0.3), timeout=60
    )
    assert report.kills >= 5, report.outputs
    assert report.returncode == 0, report.stderr
    assert report.stdout.splitlines()[-1] == "done"
    counts = count_rows(folder / "orders.db", "orders", "id")
    assert len(counts) == ROWS
    assert set(counts) == set(range(ROWS))
    assert [k for k, n in counts.items() if n != 1] == []
    with Checkpoint(folder / "orders.ckpt.db") as ckpt:
        key = f"jsonl:{folder / 'orders.jsonl'}"
        assert ckpt.intents(key) == []
        saved = ckpt.load(key)
        assert saved is not None
        assert saved.position["offset"] == (folder / "orders.jsonl").stat().st_size
        assert saved.position["line"] == ROWS + 1
        assert saved.committed == ROWS


def test_a_user_save_outside_the_checkpoint_duplicates(folder: Path) -> None:
    report = kill_loop(
        folder / "child.py", args=["control"], kills=5, seed=3, ready="saved", delay=(0.0, 0.0)
    )
    assert report.kills == 5
    assert report.returncode == 0, report.stderr
    counts = count_rows(folder / "orders.db", "orders", "id")
    assert set(counts) == set(range(ROWS))  # at least once
    again = sum(n - 1 for n in counts.values())
    assert again >= 5 * BATCH  # each kill stored a batch that is stored again on restart
