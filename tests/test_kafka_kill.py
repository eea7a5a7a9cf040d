"""Kafka through three stages into SQLite, SIGKILLed at random moments: exactly once.

A real Kafka-protocol broker (Tansu, tests/kafka_broker.py) runs in the test process; a
child process streams the topic with ``sources.kafka`` and a checkpoint through Verify →
Calculate → Save. The test kills the child with SIGKILL at seeded random moments while
batches run, restarts it each time, and finally lets it drain the topic. With the built-in
SQLite Save every message is stored exactly once and the group's committed offsets reach
the end of every partition (nothing is left pending); a control run whose user Save does
not join the checkpoint stores some messages twice, so the test tells the two apart.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kisflow.checkpoint import Checkpoint
from tests.kafka_broker import Broker, running_broker
from tests.streamkill import count_rows, end_child, kill_loop, start_child, write_child

PARTITIONS = 3

_CHILD = """
import sys, sqlite3, time
import kisflow as kf
from kisflow import sources
from kisflow.checkpoint import Checkpoint

bootstrap, topic, db, mode, size = sys.argv[1:6]
consumer = sys.argv[6] if len(sys.argv) > 6 else None
pause = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0  # after the Save, before the commit
FAST = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 300, "fetch.wait.max.ms": 50}

@kf.faas("Check")
def check(flow, rows):
    flow.commit_row_batch(r for r in rows if isinstance(r, dict) and "id" in r)

@kf.faas("Price")
def price(flow, rows):
    print("priced", flush=True)
    time.sleep(0.05)  # a window inside the batch, after its intent and before its Save
    flow.commit_row_batch({"v": r["id"], "price": r["id"] * 2} for r in rows)

@kf.faas("Stored")
def stored(flow, rows):
    batch = kf.current_batch()
    if batch is not None and batch.source != src.key:  # a takeover of another's intent
        print("replayed", batch.key, len(rows), flush=True)
    print("stored", flush=True)
    time.sleep(pause)
    flow.commit_row_batch(rows)

if mode == "builtin":
    conn = kf.ConnConfig(cname="DB", type="sqlite", addrs=db, key="rows")
    builder = kf.FlowBuilder("kafka-kill").verify("Check").calculate("Price").save(
        "Store", conn=conn)
    flow = (builder.calculate("Stored") if consumer else builder).build()
    delivery = "exactly-once"
else:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("CREATE TABLE IF NOT EXISTS rows (v INTEGER)")

    @kf.faas("Store")
    def store(flow, rows):
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT INTO rows VALUES (?)", [(r["v"],) for r in rows])
        con.execute("COMMIT")
        print("saved", flush=True)
        time.sleep(0.1)  # the window between the Save and the checkpoint's commit
        flow.commit_row_batch(rows)

    flow = kf.FlowBuilder("kafka-kill").verify("Check").calculate("Price").save(
        "Store").build()
    delivery = "at-least-once"

src = sources.kafka(bootstrap, topic=topic, group="kill-" + topic, consumer=consumer,
                    config=FAST)
print("intents", len(Checkpoint(db + ".ckpt").intents(src.key)), flush=True)
with flow.stream(src, batch_size=int(size), max_wait=0.2, checkpoint=db + ".ckpt",
                 idle_timeout=8.0, delivery=delivery) as stream:
    for result in stream:
        print("batch", stream.committed, flush=True)
print("done", stream.committed, flush=True)
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with running_broker(tmp_path_factory.mktemp("tansu")) as b:
        yield b


def _stored(db: Path) -> dict[object, int]:
    """How many times each message's ``v`` is in the table ``rows``."""
    return count_rows(db, "rows", "v")


def _topic(broker: Broker, name: str, n: int) -> str:
    """A topic of ``PARTITIONS`` partitions holding ``{"id": i}`` for i < n, round robin."""
    broker.create_topic(name, partitions=PARTITIONS)
    _produce(broker, name, n)
    return name


def _produce(broker: Broker, topic: str, n: int) -> None:
    for p in range(PARTITIONS):
        broker.produce(topic, [{"id": i} for i in range(p, n, PARTITIONS)], partition=p)


def _kill_run(
    broker: Broker,
    tmp_path: Path,
    mode: str,
    *,
    n: int,
    size: int,
    seed: int,
    ready: str,
    delay: tuple[float, float],
) -> tuple[dict[object, int], int]:
    """Produce ``n`` messages, run the child with 5 kills; (stored counts, intents replayed)."""
    topic = _topic(broker, f"kill-{mode}", n)
    script = write_child(tmp_path, _CHILD)
    db = tmp_path / "rows.db"
    report = kill_loop(
        script,
        args=[broker.bootstrap, topic, str(db), mode, str(size)],
        kills=5,
        seed=seed,
        ready=ready,
        delay=delay,
        timeout=80.0,
    )
    assert report.kills == 5, (report.outputs[-1][-2000:], report.stderr[-3000:])
    assert report.returncode == 0, report.stderr[-3000:]
    assert "done" in report.stdout
    replays = [
        int(line.split()[1])
        for o in report.outputs
        for line in o.splitlines()
        if line.startswith("intents ")
    ]
    assert len(replays) == report.starts
    return _stored(db), sum(replays)


@pytest.mark.slow
@pytest.mark.timeout(90)
class TestKafkaKills:
    def test_builtin_save_stores_every_message_once(self, broker: Broker, tmp_path: Path) -> None:
        n = 100_000
        counts, replayed = _kill_run(
            broker, tmp_path, "builtin", n=n, size=1000, seed=20, ready="priced", delay=(0.0, 0.08)
        )
        assert counts == dict.fromkeys(range(n), 1)
        assert replayed >= 1  # kills landed inside batches: their intents were reread
        ends = {p: len(range(p, n, PARTITIONS)) for p in range(PARTITIONS)}
        assert broker.committed("kill-builtin", "kill-kill-builtin", PARTITIONS) == ends

    def test_control_user_save_not_joining_duplicates(self, broker: Broker, tmp_path: Path) -> None:
        n = 2000
        counts, _ = _kill_run(
            broker, tmp_path, "own", n=n, size=100, seed=21, ready="saved", delay=(0.0, 0.03)
        )
        assert set(counts) == set(range(n))  # nothing lost: at least once
        assert max(counts.values()) > 1  # a kill right after its Save stored rows twice


def _ids(span: dict[str, list[int]]) -> set[int]:
    """The ``id`` of each message a span covers (partition p offset o holds p + 3 o)."""
    return {p + o * PARTITIONS for k, (s, e) in span.items() for p in [int(k)] for o in range(s, e)}


@pytest.mark.slow
@pytest.mark.timeout(90)
class TestTwoConsumers:
    def test_one_killed_after_its_save_the_other_replays_its_batch(
        self, broker: Broker, tmp_path: Path
    ) -> None:
        """Two consumers of one group share a checkpoint and a table; ``a`` is SIGKILLed
        after its batch's Save stored and before the checkpoint's commit, and stays dead.
        ``b`` is given a's partitions, starts after a's intent and replays it under a's
        key (the Save's mark skips it): the union is every message, the overlap none."""
        n, size = 30_000, 500
        topic = _topic(broker, "two", 0)
        script = write_child(tmp_path, _CHILD)
        db = tmp_path / "rows.db"

        def start(name: str, pause: float) -> subprocess.Popen[str]:
            args = [broker.bootstrap, topic, str(db), "builtin", str(size), name, str(pause)]
            return start_child(script, args)

        a, b = start("a", 0.5), start("b", 0.0)
        base = f"kafka:{broker.bootstrap}/{topic}/kill-two"
        ckpt = Checkpoint(f"{db}.ckpt")
        try:
            assert a.stdout is not None
            assert b.stdout is not None
            assert a.stdout.readline().startswith("intents 0")
            assert b.stdout.readline().startswith("intents 0")
            # Let both join the group before any record exists: a rebalance moving a
            # partition from a live consumer mid-batch is the at-least-once case
            time.sleep(4.0)
            _produce(broker, topic, n)
            batches = 0
            for line in a.stdout:  # a stores a few batches; kill it after a Save
                batches += line.startswith("batch ")
                if batches >= 3 and line.startswith("stored"):
                    break
            a.send_signal(signal.SIGKILL)
            a.wait(10)
            (left,) = ckpt.intents(f"{base}/a")  # the kill landed inside the batch
            in_flight = _ids(left.span)
            assert len(in_flight) == size
            assert set(_stored(db)) >= in_flight  # ... after its Save stored it
            out, err = b.communicate(timeout=70)
        finally:
            for proc in (a, b):
                end_child(proc)
        assert b.returncode == 0, err[-3000:]
        counts = _stored(db)
        assert set(counts) == set(range(n))  # the union is every message
        assert max(counts.values()) == 1  # the overlap none
        # b replayed a's batch under a's key and seq, and committed it there
        assert f"replayed {base}/a#{left.seq} {size}" in out.splitlines()
        assert ckpt.intents(f"{base}/a") == []
        mine, dead = ckpt.load(f"{base}/b"), ckpt.load(f"{base}/a")
        assert mine is not None
        assert dead is not None
        assert mine.committed + dead.committed == n
        assert int(out.split("done ")[-1]) == mine.committed + size
        ckpt.close()
        ends = {p: len(range(p, n, PARTITIONS)) for p in range(PARTITIONS)}
        assert broker.committed(topic, "kill-two", PARTITIONS) == ends
