"""``kisflow run`` as a durable stream: --checkpoint, --follow, --source, --max-wait,
--dead-letters, and the default batch size of 10,000."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kisflow.cli import main, parse_source_url
from kisflow.errors import ConfigError
from kisflow.observers import Observer, observing
from kisflow.testing import isolated_pool

FAAS = """\
import kisflow as kf


@kf.faas("Check")
def check(flow, rows):
    for row in rows:
        if row.get("id", -1) < 0:
            flow.dead_letter(row, "no id")
        else:
            flow.commit_row(row)


@kf.faas("Price")
def price(flow, rows):
    flow.commit_row_batch([{"id": r["id"], "total": r["id"] * 2} for r in rows])
"""

CONF = {
    "flow-Orders.yml": "kistype: flow\nstatus: 1\nflow_name: Orders\nflows:\n"
    "  - fname: Check\n  - fname: Price\n  - fname: Store\n",
    "func-Check.yml": "kistype: func\nfname: Check\nfmode: Verify\n",
    "func-Price.yml": "kistype: func\nfname: Price\nfmode: Calculate\n",
    "func-Store.yml": "kistype: func\nfname: Store\nfmode: Save\noption:\n  cname: OrderDB\n",
    "conn-OrderDB.yml": "kistype: conn\ncname: OrderDB\naddrs: data/orders.db\n"
    "type: sqlite\nkey: orders\nparams: {}\n",
}


@pytest.fixture
def conf(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "conf"
    folder.mkdir()
    for name, text in CONF.items():
        (folder / name).write_text(text)
    faas = tmp_path / "faas.py"
    faas.write_text(FAAS)
    return folder, faas


def _run(conf: tuple[Path, Path], *args: str | Path, stdin: str = "") -> Result:
    folder, faas = conf
    with isolated_pool():  # each run registers the FaaS and the flow afresh, as a process
        return CliRunner().invoke(
            main, ["run", str(folder), "--faas", str(faas), *map(str, args)], input=stdin
        )


def _rows(ids: Any) -> str:
    return "".join(json.dumps({"id": i}) + "\n" for i in ids)


def _stored(conf: tuple[Path, Path]) -> list[int]:
    db = conf[0] / "data" / "orders.db"
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    try:
        return sorted(row_id for (row_id,) in con.execute("SELECT id FROM orders"))
    finally:
        con.close()


class TestSourceUrl:
    """``--source URL`` names a factory of ``kisflow.sources`` and its arguments."""

    def test_redis(self) -> None:
        url = "redis://127.0.0.1:6390/2?stream=orders&group=billing&consumer=w1&min_idle=1.5"
        assert parse_source_url(url) == (
            "redis_stream",
            ("redis://127.0.0.1:6390/2",),
            {"stream": "orders", "group": "billing", "consumer": "w1", "min_idle": 1.5},
        )

    def test_redis_consumer_defaults_to_the_host_name(self) -> None:
        import socket

        name, args, kwargs = parse_source_url("redis://localhost:6379?stream=s&group=g")
        assert (name, args) == ("redis_stream", ("redis://localhost:6379/0",))
        assert kwargs == {"stream": "s", "group": "g", "consumer": socket.gethostname()}

    def test_kafka_with_librdkafka_settings(self) -> None:
        url = "kafka://127.0.0.1:9092/orders?group=billing&session.timeout.ms=6000"
        assert parse_source_url(url) == (
            "kafka",
            ("127.0.0.1:9092",),
            {"topic": "orders", "group": "billing", "config": {"session.timeout.ms": "6000"}},
        )

    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("redis://h:1/0?group=g", "no stream="),
            ("redis://h:1/0?stream=s", "no group="),
            ("redis://h:1/0?stream=s&group=g&topic=t", "unknown parameter 'topic'"),
            ("redis://h:1/0?stream=s&stream=t&group=g", "'stream' is given twice"),
            ("redis://h:1/0?stream=s&group=g&min_idle=soon", "min_idle='soon' is not a number"),
            ("redis:///0?stream=s&group=g", "no HOST:PORT"),
            ("kafka://h:1/?group=g", "give one topic as the path"),
            ("kafka://h:1/a/b?group=g", "give one topic as the path"),
            ("kafka://h:1/t", "no group="),
            ("kafka://h:1/t?group=g&acks=all", "unknown parameter 'acks'"),
            ("amqp://h:1/q", "unknown scheme 'amqp'"),
            ("redis://h:1/0?stream", "the query is not key=value pairs"),
        ],
    )
    def test_problems(self, url: str, problem: str) -> None:
        with pytest.raises(ConfigError) as info:
            parse_source_url(url)
        assert str(info.value).startswith(f"--source {url!r}: ")
        assert problem in str(info.value)


class TestUsage:
    """Options that do not go together are usage errors (exit 2), before any row is read."""

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--follow"], "--follow needs --input FILE: stdin cannot be tailed"),
            (
                ["--checkpoint", "x.db"],
                "--checkpoint needs --input FILE or --source URL: stdin cannot be read again "
                "from a position",
            ),
            (
                ["--source", "redis://h:1/0?stream=s&group=g", "--input", "-"],
                "give --input FILE or --source URL, not both",
            ),
            (
                ["--source", "redis://h:1/0?stream=s&group=g", "--follow"],
                "--follow tails an --input file; a --source broker is always followed",
            ),
            (["--source", "redis://h:1/0?group=g"], "--source 'redis://h:1/0?group=g': no stream="),
        ],
    )
    def test_refused(self, conf: tuple[Path, Path], args: list[str], message: str) -> None:
        result = _run(conf, "--flow", "Orders", *args)
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines()[-1].startswith(f"kisflow: error: {message}")
        assert not (conf[0] / "data" / "orders.db").exists()


class TestBatchSize:
    """The default batch size is 10,000 rows; ``--batch-size 0`` runs the whole input once."""

    def test_default_is_ten_thousand(self, conf: tuple[Path, Path]) -> None:
        result = _run(conf, "--flow", "Orders", stdin=_rows(range(10_001)))
        assert result.exit_code == 0, result.output
        assert "flow Orders: completed, 10001 rows out in 2 batches" in result.stderr
        assert _stored(conf) == list(range(10_001))

    def test_zero_is_the_whole_input(self, conf: tuple[Path, Path]) -> None:
        result = _run(conf, "--flow", "Orders", "--batch-size", "0", stdin=_rows(range(10_001)))
        assert result.exit_code == 0, result.output
        assert result.stderr.splitlines()[0] == "flow Orders: completed, 10001 rows out"


class TestDurable:
    """A run with a checkpoint resumes; bad lines and rejected rows become dead letters."""

    def test_a_rerun_goes_on_after_the_last_committed_batch(
        self, conf: tuple[Path, Path], tmp_path: Path
    ) -> None:
        rows = tmp_path / "orders.jsonl"
        rows.write_text(_rows(range(25)))
        ckpt = tmp_path / "orders.ckpt.db"
        args = ["--flow", "Orders", "--input", rows, "--batch-size", "10", "--checkpoint", ckpt]
        first = _run(conf, *args)
        assert first.exit_code == 0, first.output
        assert "flow Orders: completed, 25 rows out in 3 batches" in first.stderr
        assert len(first.stdout.splitlines()) == 25
        with rows.open("a") as f:
            f.write(_rows(range(25, 30)))
        second = _run(conf, *args)
        assert second.exit_code == 0, second.output
        assert "flow Orders: completed, 5 rows out" in second.stderr.splitlines()
        assert [json.loads(line)["id"] for line in second.stdout.splitlines()] == [
            25,
            26,
            27,
            28,
            29,
        ]
        assert f"checkpoint {ckpt}: 5 records committed by this run" in second.stderr
        third = _run(conf, *args)
        assert third.exit_code == 0, third.output
        assert third.stdout == ""
        assert _stored(conf) == list(range(30))

    def test_bad_lines_and_rejected_rows_go_to_the_dead_letters(
        self, conf: tuple[Path, Path], tmp_path: Path
    ) -> None:
        rows = tmp_path / "orders.jsonl"
        rows.write_text(_rows([0, 1]) + '{"id": oops\n' + _rows([-1, 3]))
        letters = tmp_path / "dead.jsonl"
        result = _run(conf, "--flow", "Orders", "--input", rows, "--dead-letters", letters)
        assert result.exit_code == 0, result.output
        assert "flow Orders: completed, 3 rows out" in result.stderr
        assert result.stderr.splitlines()[-1] == f"  2 dead letters written to {letters}"
        written = [json.loads(line) for line in letters.read_text().splitlines()]
        assert len(written) == 2
        bad = next(w for w in written if w["row"] == '{"id": oops')
        assert f"{rows} line 3" in bad["error"]
        rejected = next(w for w in written if w["row"] == {"id": -1})
        assert (rejected["stage"], rejected["reason"]) == ("Check", "rejected")
        assert _stored(conf) == [0, 1, 3]

    def test_stdin_with_dead_letters(self, conf: tuple[Path, Path], tmp_path: Path) -> None:
        letters = tmp_path / "dead.jsonl"
        result = _run(
            conf, "--flow", "Orders", "--dead-letters", letters, stdin="1x\n" + _rows([7])
        )
        assert result.exit_code == 0, result.output
        assert result.stdout == '{"id": 7, "total": 14}\n'
        (letter,) = [json.loads(line) for line in letters.read_text().splitlines()]
        assert letter["row"] == "1x"
        assert "stdin line 1" in letter["error"]

    def test_without_dead_letters_a_bad_line_stops_the_run(
        self, conf: tuple[Path, Path], tmp_path: Path
    ) -> None:
        rows = tmp_path / "orders.jsonl"
        rows.write_text(_rows([0]) + "oops\n")
        ckpt = tmp_path / "c.db"
        result = _run(conf, "--flow", "Orders", "--input", rows, "--checkpoint", ckpt)
        assert result.exit_code in (2, 3), result.output
        assert f"{rows} line 2" in result.stderr
        assert _stored(conf) == []  # the batch holding the bad line is not committed

    def test_a_checkpoint_of_a_replaced_file_is_refused(
        self, conf: tuple[Path, Path], tmp_path: Path
    ) -> None:
        rows = tmp_path / "orders.jsonl"
        rows.write_text(_rows(range(5)))
        ckpt = tmp_path / "c.db"
        args = ["--flow", "Orders", "--input", rows, "--checkpoint", ckpt]
        assert _run(conf, *args).exit_code == 0
        rows.write_text(_rows(range(2)))  # truncated and rewritten
        result = _run(conf, *args)
        assert result.exit_code == 2, result.output
        assert f"kisflow: error: SourceError: {rows}: was truncated since" in result.stderr
        assert _stored(conf) == list(range(5))

    def test_follow_until_idle(self, conf: tuple[Path, Path], tmp_path: Path) -> None:
        rows = tmp_path / "orders.jsonl"
        rows.write_text(_rows(range(3)) + '{"id": 3')  # a last line still being written
        result = _run(
            conf,
            "--flow",
            "Orders",
            "--input",
            rows,
            "--follow",
            "--idle-timeout",
            "0.3",
            "--max-wait",
            "0.1",
        )
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [0, 1, 2]
        assert _stored(conf) == [0, 1, 2]

    @pytest.mark.timeout(60)  # without the default max wait, the first batch never ends
    def test_a_followed_file_runs_a_batch_per_max_wait(
        self, conf: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """Lines appended one by one while followed are not held for 10,000 rows: each
        batch ends within the default max wait; Ctrl-C then ends the run (exit 130)."""
        rows = tmp_path / "orders.jsonl"
        rows.write_text(_rows([0]))
        seen: list[int] = []

        class Appender(Observer):  # appends a line once the batch before it is stored
            def batch_done(self, flow: Any, batch: Any, result: Any) -> None:
                seen.append(len(result.output))
                if len(seen) < 3:
                    with rows.open("a") as f:
                        f.write(_rows([len(seen)]))
                else:
                    os.kill(os.getpid(), signal.SIGINT)

        with observing(Appender()):
            result = _run(conf, "--flow", "Orders", "--input", rows, "--follow")
        assert result.exit_code == 130, result.output
        assert seen == [1, 1, 1]
        assert _stored(conf) == [0, 1, 2]
        assert "flow Orders: interrupted, 3 rows out in 3 batches" in result.stderr


class TestRedisSource:
    """``--source redis://...`` against a real redis-server: a consumer group into SQLite
    with a checkpoint; a rerun reads only what was added, and nothing stays pending."""

    def test_a_stream_into_sqlite_and_resumed(
        self, conf: tuple[Path, Path], tmp_path: Path
    ) -> None:
        import redis

        from tests.redisserver import redis_server

        with redis_server(tmp_path) as port:
            client = redis.Redis(port=port, decode_responses=True)
            try:
                for i in range(45):
                    client.xadd("orders", {"data": json.dumps({"id": i})})
                client.xadd("orders", {"data": "not json"})
                url = f"redis://127.0.0.1:{port}/0?stream=orders&group=billing&consumer=cli"
                letters = tmp_path / "dead.jsonl"
                args = [
                    "--flow",
                    "Orders",
                    "--source",
                    url,
                    "--checkpoint",
                    tmp_path / "c.db",
                    "--batch-size",
                    "20",
                    "--idle-timeout",
                    "0.5",
                    "--dead-letters",
                    letters,
                ]
                first = _run(conf, *args)
                assert first.exit_code == 0, first.output
                assert len(first.stdout.splitlines()) == 45
                assert "1 dead letter written to" in first.stderr
                (letter,) = [json.loads(line) for line in letters.read_text().splitlines()]
                assert letter["row"] == "not json"
                for i in range(45, 50):
                    client.xadd("orders", {"data": json.dumps({"id": i})})
                second = _run(conf, *args)
                assert second.exit_code == 0, second.output
                assert [json.loads(x)["id"] for x in second.stdout.splitlines()] == [
                    45,
                    46,
                    47,
                    48,
                    49,
                ]
                assert _stored(conf) == list(range(50))
                assert client.xpending("orders", "billing")["pending"] == 0
            finally:
                client.close()

    def test_an_unreachable_server(self, conf: tuple[Path, Path], tmp_path: Path) -> None:
        from tests.redisserver import free_port

        url = f"redis://127.0.0.1:{free_port()}/0?stream=orders&group=billing&consumer=cli"
        result = _run(conf, "--flow", "Orders", "--source", url, "--idle-timeout", "0.2")
        assert result.exit_code == 3, result.output  # a broker that is down: retryable
        assert result.stderr.splitlines()[-1].startswith("kisflow: error: SourceError: ")
        assert f"127.0.0.1:{url.split(':')[2].split('/')[0]}" in result.stderr


class TestKafkaSource:
    """``--source kafka://...`` against a real Kafka-protocol broker (Tansu): a group into
    SQLite with a checkpoint, librdkafka settings from the query; a rerun reads only what
    was added."""

    def test_a_topic_into_sqlite_and_resumed(self, conf: tuple[Path, Path], tmp_path: Path) -> None:
        from tests.kafka_broker import running_broker

        with running_broker(tmp_path) as broker:
            broker.create_topic("orders")
            broker.produce("orders", [{"id": i} for i in range(30)])
            broker.produce("orders", [b"not json"])
            url = (
                f"kafka://{broker.bootstrap}/orders?group=billing&session.timeout.ms=2000"
                f"&heartbeat.interval.ms=300&fetch.wait.max.ms=50"
            )
            letters = tmp_path / "dead.jsonl"
            args = [
                "--flow",
                "Orders",
                "--source",
                url,
                "--checkpoint",
                tmp_path / "c.db",
                "--batch-size",
                "20",
                "--idle-timeout",
                "3",
                "--dead-letters",
                letters,
            ]
            first = _run(conf, *args)
            assert first.exit_code == 0, first.output
            assert len(first.stdout.splitlines()) == 30
            assert "1 dead letter written to" in first.stderr
            broker.produce("orders", [{"id": i} for i in range(30, 35)])
            second = _run(conf, *args)
            assert second.exit_code == 0, second.output
            assert [json.loads(x)["id"] for x in second.stdout.splitlines()] == [
                30,
                31,
                32,
                33,
                34,
            ]
            assert _stored(conf) == list(range(35))
            assert broker.committed("orders", "billing", 1) == {0: 36}
