"""The stream line of ``make bench`` (issue 10 part 10): Redis Streams → three stages →
SQLite Save, exactly-once, against a hand-written loop doing the same in the same run.

One stream of ``n`` messages (field ``data``: a score-avg row as JSON) is written once
to a redis-server this module starts on a free loopback port; each side then reads all
of it through a consumer group of its own (a new group per side and repetition, created
at id 0), so every side reads the same entries from the same server:

- **loop**: ``XREADGROUP`` 1,000 entries, ``json.loads`` each, the workload's three
  stages (verify, average, grade) as plain loops, one SQLite transaction per batch
  holding the rows and the batch's entry ids, then ``XACK``;
- **exactly-once**: ``flow.stream(sources.redis_stream(...), checkpoint=...,
  delivery="exactly-once")`` over the same three stages (``commit_row`` per row) and a
  built-in SQLite Save;
- **at-least-once**: the same stream with ``delivery="at-least-once"`` and no
  checkpoint (entries acked after their batch ran; a crash re-delivers the group's
  pending entries). With a checkpoint and built-in Saves a stream is exactly once
  whatever ``delivery`` says, so this is what exactly-once costs: the checkpoint's
  intent and commit per batch and the Saves' marks.

Sides are interleaved per repetition, each round starting with the next side (loop,
exactly-once, at-least-once; then exactly-once, at-least-once, loop; ...), a garbage
collection before each, and each figure is the median. Every side must store ``0.9 n``
rows with the same grade counts and leave nothing pending. ``python -m bench.stream`` runs it alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import kisflow as kf
from bench import workload
from kisflow import sources
from tests.servers import ServerError, start_redis

STREAM = "bench-scores"
BATCH = 1000
TABLE = "scores"


@contextmanager
def redis_server(workdir: Path) -> Iterator[int]:
    """A redis-server (no persistence) on a free loopback port, stopped afterwards.

    The tests' start (tests/servers.py); one that is missing or does not start ends the
    run with its message.
    """
    try:
        server = start_redis(workdir)
    except ServerError as exc:
        raise SystemExit(f"bench/stream.py: {exc}") from None
    with server:
        yield server.port


def fill(client: Any, n: int) -> None:
    """``n`` score-avg rows as entries of the stream (field ``data``: the row's JSON)."""
    client.delete(STREAM)
    rows = workload.make_rows(n)
    for at in range(0, n, 5000):
        with client.pipeline(transaction=False) as pipe:
            for row in rows[at : at + 5000]:
                pipe.xadd(STREAM, {"data": json.dumps(row)})
            pipe.execute()


# -- the hand-written loop --------------------------------------------------------------


def _stages(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The workload's verify, average and grade stages as plain loops."""
    kept = [row for row in rows if row["stu_id"] % 10 != 0]
    averaged = [
        {"stu_id": r["stu_id"], "avg_score": (r["score_1"] + r["score_2"] + r["score_3"]) / 3}
        for r in kept
    ]
    for row in averaged:
        avg = row["avg_score"]
        row["grade"] = "A" if avg >= 80 else "B" if avg >= 60 else "C"
    return averaged


def loop_side(port: int, group: str, db: Path, n: int) -> None:
    """XREADGROUP, the stages, one SQLite transaction per batch with its ids, XACK."""
    import redis

    client = redis.Redis(port=port)
    client.xgroup_create(STREAM, group, id="0", mkstream=True)
    with closing(sqlite3.connect(db, isolation_level=None)) as con:
        con.execute(f"CREATE TABLE {TABLE} (stu_id INTEGER, avg_score REAL, grade TEXT)")
        con.execute("CREATE TABLE done_ids (id TEXT PRIMARY KEY)")
        done = 0
        while done < n:
            reply = client.xreadgroup(group, "loop", {STREAM: ">"}, count=BATCH, block=1000)
            if not reply:
                raise SystemExit(f"loop: the stream ran dry after {done} of {n} messages")
            entries = reply[0][1]
            ids = [entry_id for entry_id, _ in entries]
            out = _stages([json.loads(fields[b"data"]) for _, fields in entries])
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                f"INSERT INTO {TABLE} VALUES (?, ?, ?)",
                [(r["stu_id"], r["avg_score"], r["grade"]) for r in out],
            )
            con.executemany("INSERT INTO done_ids VALUES (?)", [(i,) for i in ids])
            con.execute("COMMIT")
            client.xack(STREAM, group, *ids)
            done += len(entries)
    client.close()


# -- kisflow ------------------------------------------------------------------------------


def build_flow(db: Path) -> kf.Flow:
    """verify → average → grade (``commit_row`` per row) → a built-in SQLite Save."""
    pool = kf.Pool()
    pool.faas("Verify", workload.verify)
    pool.faas("Average", workload.average)
    pool.faas("Grade", workload.grade)
    conn = kf.ConnConfig(cname="ScoresDB", type="sqlite", addrs=str(db), key=TABLE)
    return (
        kf.FlowBuilder("bench-stream", pool=pool)
        .verify("Verify")
        .calculate("Average")
        .calculate("Grade")
        .save("StoreScores", conn=conn)
        .build()
    )


def kisflow_side(port: int, group: str, db: Path, n: int, delivery: str) -> None:
    """The flow streamed from the group into SQLite with a checkpoint until ``n`` are in."""
    flow = build_flow(db)
    src = sources.redis_stream(
        f"redis://127.0.0.1:{port}/0", stream=STREAM, group=group, consumer="kisflow"
    )
    # At least once is the same stream without a checkpoint: the group's PEL alone
    # (with a checkpoint and built-in Saves, the stream delivers exactly once anyway).
    checkpoint = str(db.with_suffix(".ckpt.db")) if delivery == "exactly-once" else None
    with flow.stream(
        src,
        batch_size=BATCH,
        max_wait=0.25,
        checkpoint=checkpoint,
        idle_timeout=5.0,
        delivery=delivery,
        progress=False,
        handle_sigint=False,
    ) as stream:
        for _result in stream:
            if stream.committed >= n:
                break
    if stream.committed != n:
        raise SystemExit(f"{delivery}: committed {stream.committed} of {n} messages")


def _check(port: int, group: str, db: Path, n: int, what: str) -> dict[str, int]:
    """Every side stores 0.9 n distinct rows and leaves nothing pending; its grade counts."""
    import redis

    with closing(sqlite3.connect(db)) as con:
        stored, distinct = con.execute(
            f"SELECT COUNT(*), COUNT(DISTINCT stu_id) FROM {TABLE}"
        ).fetchone()
        grades = dict(con.execute(f"SELECT grade, COUNT(*) FROM {TABLE} GROUP BY grade"))
    expected = n - (n + 9) // 10
    if stored != expected or distinct != expected:
        raise SystemExit(f"{what}: stored {stored} rows ({distinct} distinct), not {expected}")
    with closing(redis.Redis(port=port)) as client:
        pending = client.xpending(STREAM, group)["pending"]
    if pending:
        raise SystemExit(f"{what}: {pending} entries left pending")
    return grades


def run(repeat: int = 5, n: int = 100_000, *, verbose: bool = False) -> dict[str, float]:
    """Time the three sides, interleaved; the figures of the tools line."""
    import redis

    sides: dict[str, Callable[[int, str, Path, int], None]] = {
        "loop": loop_side,
        "exactly-once": lambda p, g, d, k: kisflow_side(p, g, d, k, "exactly-once"),
        "at-least-once": lambda p, g, d, k: kisflow_side(p, g, d, k, "at-least-once"),
    }
    times: dict[str, list[float]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="kisflow-bench-stream-") as tmp:
        workdir = Path(tmp)
        with redis_server(workdir) as port:
            with closing(redis.Redis(port=port)) as client:
                fill(client, n)
            grades: dict[str, int] | None = None
            order = list(sides)
            for rep in range(repeat + 1):  # the first round is the warm-up
                # Each round starts with another side, so no side always follows the same.
                for number, side in enumerate(order[rep % 3 :] + order[: rep % 3]):
                    fn = sides[side]
                    group = f"g{rep}-{number}"
                    db = workdir / f"{group}.db"
                    gc.collect()
                    started = time.perf_counter()
                    fn(port, group, db, n)
                    elapsed = time.perf_counter() - started
                    got = _check(port, group, db, n, side)
                    if grades is not None and got != grades:
                        raise SystemExit(f"{side}: grade counts {got}, another side's {grades}")
                    grades = got
                    if rep:
                        times[side].append(elapsed)
                    if verbose:
                        print(f"  round {rep} {side:<14} {elapsed:.2f} s", flush=True)
                    with closing(redis.Redis(port=port)) as client:
                        client.xgroup_destroy(STREAM, group)
    t = {side: statistics.median(ts) for side, ts in times.items()}
    for side, seconds in t.items():
        print(f"stream/{side:<14} {n / seconds:>10,.0f} msg/s  ({seconds:.2f} s for {n:,})")
    figures = {
        "stream_msgs_per_s": n / t["exactly-once"],
        "ratio_stream": t["loop"] / t["exactly-once"],
        "exactly_once_cost": t["exactly-once"] / t["at-least-once"] - 1,
    }
    print(
        f"stream         exactly-once {figures['ratio_stream']:.2f}x the loop; "
        f"exactly-once costs {figures['exactly_once_cost']:+.1%} over at-least-once"
    )
    return figures


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.stream``: the stream line alone."""
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("-n", type=int, default=100_000, help="messages in the stream")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every timing")
    args = parser.parse_args(argv)
    figures = run(args.repeat, args.n, verbose=args.verbose)
    print(" ".join(f"{k}={v:.2f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
