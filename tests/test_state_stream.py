"""State and windows in durable streams: saved with each commit, resumed after a crash.

The kill test streams 100,000 events through a tumbling count into the built-in SQLite
Save with a checkpoint, SIGKILLs the child at seeded random moments, restarts it each time,
and compares the stored windows with a reference computed in the test without kisflow.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import kisflow as kf
from kisflow import windows
from tests.streamkill import TESTS, ListSource, kill_loop, write_child

SIZE = 10


def _events(n: int, keys: int = 20) -> list[dict[str, Any]]:
    """Event i: key ``i % keys`` at time ``i / 10``, with a little disorder (within grace)."""
    out = []
    for i in range(n):
        ts = i / 10 - (0.5 if i % 7 == 3 else 0.0)
        out.append({"id": i, "k": f"k{i % keys}", "ts": ts})
    return out


def _reference(events: list[dict[str, Any]], grace: float) -> dict[tuple[str, int], int]:
    """Counts per (key, window start), by hand: every event here is on time."""
    max_ts = -math.inf
    counts: Counter[tuple[str, int]] = Counter()
    for e in events:
        max_ts = max(max_ts, e["ts"])
        start = math.floor(e["ts"] / SIZE) * SIZE
        assert start + SIZE > max_ts - grace, "the workload has no late event"
        counts[(e["k"], start)] += 1
    return dict(counts)


def _flow(db: Path, grace: float = 1.0) -> kf.Flow:
    @kf.faas("Count", window=windows.tumbling(SIZE, time="ts", key="k", grace=grace), replace=True)
    def count(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        w = flow.window()
        flow.commit_row({"k": w.key, "start": w.start, "n": len(rows)})

    @kf.faas("Seen", replace=True)
    def seen(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        st = flow.state()
        st["events"] = st.get("events", 0) + len(rows)
        flow.commit_row_batch(rows)

    conn = kf.ConnConfig(cname="W", type="sqlite", addrs=str(db), key="windows")
    return (
        kf.FlowBuilder("Windows")
        .calculate("Seen")
        .calculate("Count")
        .save("Store", conn=conn)
        .build()
    )


def _stored(db: Path) -> list[tuple[str, int, int]]:
    con = sqlite3.connect(db)
    try:
        return [tuple(r) for r in con.execute("SELECT k, start, n FROM windows")]
    finally:
        con.close()


def test_windows_and_state_resume_from_the_checkpoint(tmp_path: Path) -> None:
    """Stop half-way, start a new process's worth of objects: totals and windows go on."""
    events = _events(3000)
    db, ckpt = tmp_path / "w.db", tmp_path / "w.ckpt"
    src = ListSource(events, name="ev")
    flow = _flow(db)
    with flow.stream(src, batch_size=100, checkpoint=str(ckpt)) as stream:
        for i, _ in enumerate(stream):
            if i == 11:
                break
    assert stream.committed == 1200
    half = _stored(db)
    assert half
    assert all(start + SIZE <= 120 for _, start, _ in half)
    # A new definition (a restarted process) resumes the state and the open windows.
    again = _flow(db).fork()
    with again.stream(ListSource(events, name="ev"), batch_size=100, checkpoint=str(ckpt)) as s:
        for _ in s:
            pass
    assert again.state_store.keyed("0:Seen")["events"] == 3000
    stored = _stored(db)
    got = Counter({(k, start): n for k, start, n in stored})
    assert len(stored) == len(got), "a window was stored twice"
    ref = _reference(events, 1.0)
    # Windows still open when the source ended stay in the checkpoint (not flushed).
    open_after = {w for w in ref if w[1] + SIZE > events[-1]["ts"] - 1.0}
    assert dict(got) == {w: n for w, n in ref.items() if w not in open_after}
    assert open_after


def test_batches_in_flight_keep_state_in_commit_order(tmp_path: Path) -> None:
    events = _events(2000)
    db, ckpt = tmp_path / "w.db", tmp_path / "w.ckpt"
    flow = _flow(db)
    with flow.stream(
        ListSource(events, name="ev"), batch_size=50, max_in_flight=4, checkpoint=str(ckpt)
    ) as stream:
        for _ in stream:
            pass
    saved = kf.Checkpoint(str(ckpt)).load("list:ev")
    assert saved is not None
    state = saved.state
    assert state["0:Seen"] == [["events", 2000]]
    ref = _reference(events, 1.0)
    got = {(k, start): n for k, start, n in _stored(db)}
    assert all(ref[w] == n for w, n in got.items())
    assert len(got) >= len(ref) - 20


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_state_stream import _events, _flow
from tests.streamkill import ListSource

db = sys.argv[1]
events = _events({n}) + [{{"id": -1, "k": "end", "ts": 1e9}}]
flow = _flow(__import__("pathlib").Path(db))
src = ListSource(events, name="events")
with flow.stream(src, batch_size=500, checkpoint=db + ".ckpt", idle_timeout=0.5) as stream:
    for result in stream:
        print("batch", stream.position, flush=True)
print("done", stream.committed, flush=True)
"""


@pytest.mark.slow
def test_each_window_is_stored_once_across_kills(tmp_path: Path) -> None:
    n = 100_000
    script = write_child(tmp_path, _CHILD.format(tests=str(TESTS), n=n))
    db = tmp_path / "windows.db"
    report = kill_loop(script, args=[str(db)], kills=5, seed=21, delay=(0.0, 0.4), timeout=90)
    assert report.kills == 5, report.outputs
    assert report.returncode == 0, report.stderr
    stored = _stored(db)
    got = Counter((k, start) for k, start, _ in stored)
    assert [w for w, c in got.items() if c > 1] == []
    assert {(k, start): c for k, start, c in stored} == _reference(_events(n), 1.0)
    ckpt = kf.Checkpoint(str(db) + ".ckpt").load("list:events")
    assert ckpt is not None
    assert ckpt.state["0:Seen"] == [["events", n + 1]]
