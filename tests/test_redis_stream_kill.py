"""Durable streams from Redis Streams survive SIGKILL: a real redis-server, a child process
streaming into SQLite through three stages, killed at random moments and restarted.

- exactly-once: 100,000 messages, six kills: the table holds every message once and
  nothing stays pending in the group (also with three batches in flight);
- the control: a user Save that does not join the checkpoint, killed right after it
  saved: rows stored twice (so the first test tells the guarantees apart);
- scale-out: two consumers of one group sharing one checkpoint file and one table, one
  killed mid-way and never restarted; the other takes its pending entries over (its
  intents replayed under its key): the union is every message, the overlap empty.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kisflow.checkpoint import Checkpoint
from tests.redisserver import redis_server
from tests.streamkill import count_rows, end_child, kill_loop, start_child, write_child

CHILD = """
    import sys
    import time

    import kisflow as kf
    from kisflow import sources

    port, stream, db, ckpt, consumer, save, min_idle, slow, in_flight = sys.argv[1:10]
    slow_s = float(slow)


    @kf.faas("CheckOrder")
    def check(flow: kf.Flow) -> None:
        for row in flow.input():
            if isinstance(row["id"], int):
                flow.commit_row(row)


    @kf.faas("PriceOrder")
    def price(flow: kf.Flow) -> None:
        for row in flow.input():
            row["total"] = row["qty"] * row["price"]
            flow.commit_row(row)


    @kf.faas("LabelOrder")
    def label(flow: kf.Flow) -> None:
        if slow_s:
            time.sleep(slow_s)
        for row in flow.input():
            row["label"] = f"order-{row['id']}"
            flow.commit_row(row)


    @kf.faas("UserStore")
    def user_store(flow: kf.Flow) -> None:
        # A user Save that writes by itself and does not join the checkpoint.
        import sqlite3

        con = sqlite3.connect(db, timeout=30)
        with con:
            con.execute("CREATE TABLE IF NOT EXISTS orders (id, qty, price, total, label)")
            con.executemany(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
                [(r["id"], r["qty"], r["price"], r["total"], r["label"]) for r in flow.input()],
            )
        con.close()
        print("saved", flush=True)
        time.sleep(0.5)  # the test kills it here: stored, not committed


    builder = kf.FlowBuilder("Orders").verify("CheckOrder").calculate("PriceOrder")
    builder = builder.calculate("LabelOrder")
    if save == "builtin":
        conn = kf.ConnConfig(cname="OrderDB", type="sqlite", addrs=db, key="orders")
        flow = builder.save("StoreOrder", conn=conn).build()
        delivery = "exactly-once"
    else:
        flow = builder.save("UserStore").build()
        delivery = "at-least-once"
    src = sources.redis_stream(
        f"redis://127.0.0.1:{port}/0",
        stream=stream,
        group="billing",
        consumer=consumer,
        min_idle=float(min_idle),
        claim_every=0.1,
    )
    with flow.stream(
        src,
        batch_size=1000,
        max_in_flight=int(in_flight),
        max_wait=0.1,
        checkpoint=ckpt,
        idle_timeout=2.0,
        delivery=delivery,
        handle_sigint=False,
        progress=False,
    ) as stream:
        for result in stream:
            print("batch", stream.committed, flush=True)
    print("done", stream.committed, flush=True)
"""


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with redis_server(tmp_path_factory.mktemp("redis")) as p:
        yield p


def fill(port: int, stream: str, n: int) -> None:
    """``n`` orders as JSON in field ``data``; order i has id i."""
    with redis.Redis(port=port) as client:
        client.delete(stream)
        for at in range(0, n, 10_000):
            with client.pipeline(transaction=False) as pipe:
                for i in range(at, min(n, at + 10_000)):
                    order = {"id": i, "qty": i % 7 + 1, "price": 2.5}
                    pipe.xadd(stream, {"data": json.dumps(order)})
                pipe.execute()


def pending(port: int, stream: str, consumer: str | None = None) -> int:
    with redis.Redis(port=port) as client:
        if consumer is None:
            return int(client.xpending(stream, "billing")["pending"])
        rows = client.xpending_range(stream, "billing", "-", "+", 1_000_000, consumername=consumer)
        return len(rows)


def args(port: int, stream: str, tmp: Path, consumer: str, save: str, **kw: str) -> list[str]:
    return [
        str(port),
        stream,
        str(tmp / "orders.db"),
        str(tmp / "orders.ckpt.db"),
        consumer,
        save,
        kw.get("min_idle", "60"),
        kw.get("slow", "0"),
        kw.get("in_flight", "1"),
    ]


def check_values(db: Path, n: int) -> None:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT id, qty, total, label FROM orders WHERE id IN (0, 7, ?)", (n - 1,)
        )
        for i, qty, total, label in rows:
            assert (qty, total, label) == (i % 7 + 1, (i % 7 + 1) * 2.5, f"order-{i}")
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
class TestKilled:
    """A stream from Redis killed five times and restarted stores every message once."""

    # A short sleep per batch (slow) caps how much one start can do before its kill, so
    # even a fast machine gets all six kills in before the stream is drained.
    @pytest.mark.parametrize(
        ("in_flight", "slow", "delay"), [(1, "0.01", (0.0, 0.25)), (3, "0.05", (0.0, 0.15))]
    )
    def test_exactly_once_after_kills(
        self, port: int, tmp_path: Path, in_flight: int, slow: str, delay: tuple[float, float]
    ) -> None:
        n = 100_000
        stream = f"kill-eo-{in_flight}"
        fill(port, stream, n)
        script = write_child(tmp_path, CHILD)
        report = kill_loop(
            script,
            args=args(port, stream, tmp_path, "w1", "builtin", in_flight=str(in_flight), slow=slow),
            kills=6,
            seed=10 + in_flight,
            delay=delay,
            timeout=60,
        )
        assert report.returncode == 0, report.stderr[-3000:]
        assert report.kills == 6
        counts = count_rows(tmp_path / "orders.db", "orders", "id")
        assert len(counts) == n
        assert set(counts) == set(range(n))
        assert [i for i, c in counts.items() if c != 1] == []
        assert pending(port, stream) == 0
        check_values(tmp_path / "orders.db", n)
        key = f"redis:127.0.0.1:{port}/0/{stream}/billing/w1"
        assert Checkpoint(tmp_path / "orders.ckpt.db").intents(key) == []

    def test_the_control_duplicates(self, port: int, tmp_path: Path) -> None:
        n = 5_000
        fill(port, "kill-control", n)
        script = write_child(tmp_path, CHILD)
        report = kill_loop(
            script,
            args=args(port, "kill-control", tmp_path, "w1", "user"),
            kills=5,
            seed=11,
            ready="saved",
            delay=(0.0, 0.1),
            timeout=60,
        )
        assert report.returncode == 0, report.stderr[-3000:]
        assert report.kills == 5
        counts = count_rows(tmp_path / "orders.db", "orders", "id")
        assert set(counts) == set(range(n))  # at least once: nothing lost
        assert sum(counts.values()) > n  # but stored twice
        assert max(counts.values()) > 1
        assert pending(port, "kill-control") == 0


@pytest.mark.timeout(90)
class TestTwoConsumers:
    """Two consumers of one group, one killed: the other takes its entries over."""

    def test_union_exact_overlap_empty(self, port: int, tmp_path: Path) -> None:
        n = 30_000
        fill(port, "two", n)
        script = write_child(tmp_path, CHILD)

        def start(consumer: str, slow: str) -> subprocess.Popen[str]:
            argv = args(port, "two", tmp_path, consumer, "builtin", min_idle="0.5", slow=slow)
            return start_child(script, argv)

        doomed = start("a", "0.1")
        # The survivor stays busy (>= 0.05 s a batch) well past min_idle after the kill:
        # a stream looks for takeovers between batches.
        survivor = start("b", "0.05")
        try:
            assert doomed.stdout is not None
            for _ in range(3):  # three batches committed, then killed mid-batch
                line = doomed.stdout.readline()
                assert line.startswith("batch"), line + doomed.stderr.read()
            time.sleep(0.05)
            doomed.send_signal(signal.SIGKILL)
            doomed.communicate(timeout=10)
            left_pending = pending(port, "two", "a")
            with Checkpoint(tmp_path / "orders.ckpt.db") as ckpt:
                left_intents = ckpt.intents(f"redis:127.0.0.1:{port}/0/two/billing/a")
            out, err = survivor.communicate(timeout=75)
        finally:
            for proc in (doomed, survivor):
                end_child(proc)
        assert survivor.returncode == 0, err[-3000:]
        assert left_pending > 0  # the kill left entries pending for the survivor
        assert len(left_intents) == 1  # and a batch begun: b replays it under a's key
        counts = count_rows(tmp_path / "orders.db", "orders", "id")
        assert set(counts) == set(range(n))  # the union is exact
        assert [i for i, c in counts.items() if c != 1] == []  # the overlap empty
        assert pending(port, "two") == 0
        base = f"redis:127.0.0.1:{port}/0/two/billing"
        ckpt = Checkpoint(tmp_path / "orders.ckpt.db")
        assert ckpt.intents(f"{base}/a") == []  # a's intents were replayed by b
        assert ckpt.intents(f"{base}/b") == []
        assert out.rstrip().splitlines()[-1].startswith("done")
