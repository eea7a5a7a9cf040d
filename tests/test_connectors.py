"""Built-in connectors against real stores: SQLite, SQL via SQLAlchemy, JSONL and Redis."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import pytest

import kisflow as kf
from kisflow._pool import Pool
from kisflow.connectors import is_builtin_type
from kisflow.executors import Partition, PartitionResult
from kisflow.executors._partition import FlowPayload, dumps, run_partition, unwrap
from tests.redisserver import free_port, redis_server


@attrs.define
class Score:
    """A typed row, saved as a record with its fields."""

    stu_id: int
    avg: float


ROWS: list[dict[str, Any]] = [
    {"id": 1, "name": "ann", "score": 9.5, "ok": True, "tags": ["a", "b"], "raw": b"\x00\x01"},
    {"id": 2, "name": "bob", "score": 7.0, "ok": False, "tags": {"k": 1}, "raw": None},
    {"id": 3, "name": None, "score": None, "ok": None, "tags": None, "raw": b""},
]
JSON_ROWS: list[Any] = [{"id": 1, "v": [1, 2]}, {"id": 2, "v": None}, {"id": 3, "v": {"x": "y"}}]


def save_flow(conn: kf.ConnConfig, *, retry_times: int = 0) -> kf.Flow:
    option = kf.FuncOption(retry_times=retry_times, return_duration=1)
    return kf.FlowBuilder(f"save-{conn.cname}").save("Store", option=option, conn=conn).build()


def load_flow(conn: kf.ConnConfig, params: dict[str, Any] | None = None) -> kf.Flow:
    return kf.FlowBuilder(f"load-{conn.cname}").load("Fetch", params, conn=conn).build()


def round_trip(conn: kf.ConnConfig, rows: list[Any]) -> list[Any]:
    saved = save_flow(conn).run(rows)
    assert saved.output == rows, "a Save stage passes its input rows on"
    return load_flow(conn).run([]).output


class TestSQLite:
    """The sqlite connector stores rows in a table and gives back exactly what was saved."""

    def conn(self, tmp_path: Path, **kw: Any) -> kf.ConnConfig:
        return kf.ConnConfig(
            cname="db", type="sqlite", addrs=str(tmp_path / "x.db"), key="rows", **kw
        )

    def test_save_then_load_returns_exactly_what_was_saved(self, tmp_path: Path) -> None:
        assert round_trip(self.conn(tmp_path), ROWS) == ROWS

    def test_typed_rows_and_json_strings_are_saved_as_records(self, tmp_path: Path) -> None:
        conn = self.conn(tmp_path)
        save_flow(conn).run([Score(1, 9.5), '{"stu_id": 2, "avg": 3.0}'])
        assert load_flow(conn).run([]).output == [
            {"stu_id": 1, "avg": 9.5},
            {"stu_id": 2, "avg": 3.0},
        ]

    def test_batches_append_and_new_fields_add_columns(self, tmp_path: Path) -> None:
        conn = self.conn(tmp_path)
        flow = save_flow(conn)
        flow.run([{"a": 1}])
        flow.run([{"a": 2, "b": "new"}])
        assert load_flow(conn).run([]).output == [{"a": 1, "b": None}, {"a": 2, "b": "new"}]

    def test_where_and_limit(self, tmp_path: Path) -> None:
        conn = self.conn(tmp_path)
        save_flow(conn).run([{"k": i % 2, "i": i} for i in range(6)])
        out = load_flow(conn, {"where": {"k": 1}, "limit": 2}).run([]).output
        assert out == [{"k": 1, "i": 1}, {"k": 1, "i": 3}]

    def test_a_batch_is_one_transaction(self, tmp_path: Path) -> None:
        conn = self.conn(tmp_path)
        flow = save_flow(conn)
        flow.run([{"n": 1}])
        with pytest.raises(kf.ConnectorError, match=r"row 1 field .n.*INTEGER") as info:
            flow.run([{"n": 2}, {"n": "two"}])
        assert info.value.connector == "db"
        assert load_flow(conn).run([]).output == [{"n": 1}]

    def test_a_row_that_is_not_a_record_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(kf.ConnectorError, match="cannot store row 0"):
            save_flow(self.conn(tmp_path)).run([42])

    def test_loading_a_missing_table_names_it(self, tmp_path: Path) -> None:
        conn = self.conn(tmp_path)
        save_flow(attrs.evolve(conn, key="other")).run([{"a": 1}])
        with pytest.raises(kf.ConnectorError, match="has no table 'rows'"):
            load_flow(conn).run([])

    def test_an_unreachable_file_fails_after_the_retry_policy(self, tmp_path: Path) -> None:
        (tmp_path / "a-file").write_text("not a folder")
        conn = kf.ConnConfig(
            cname="db", type="sqlite", addrs=str(tmp_path / "a-file" / "x.db"), key="t"
        )
        with pytest.raises(kf.ConnectorError, match="after 3 attempt") as info:
            save_flow(conn, retry_times=2).run([{"a": 1}])
        assert (info.value.connector, info.value.type) == ("db", "sqlite")
        assert info.value.address == conn.addrs

    def test_a_user_caas_overrides_the_builtin_call(self, tmp_path: Path) -> None:
        got: list[Any] = []
        kf.caas("db", "Store", "Save", lambda conn, fn, flow, args: got.append(args))
        conn = self.conn(tmp_path)
        save_flow(conn).run([{"a": 1}])
        assert got == [[{"a": 1}]]
        assert not (tmp_path / "x.db").exists()


class TestSQL:
    """The sql connector (SQLAlchemy Core) behaves as the sqlite one, tested on SQLite."""

    def conn(self, tmp_path: Path) -> kf.ConnConfig:
        return kf.ConnConfig(
            cname="sa", type="sql", addrs=f"sqlite:///{tmp_path / 'sa.db'}", key="rows"
        )

    def test_save_then_load_returns_exactly_what_was_saved(self, tmp_path: Path) -> None:
        assert round_trip(self.conn(tmp_path), ROWS) == ROWS

    def test_new_fields_where_and_limit(self, tmp_path: Path) -> None:
        conn = self.conn(tmp_path)
        flow = save_flow(conn)
        flow.run([{"k": 0, "i": 0}])
        flow.run([{"k": 1, "i": 1, "extra": "x"}, {"k": 1, "i": 2}, {"k": 1, "i": 3}])
        out = load_flow(conn, {"where": {"k": 1}, "limit": 2}).run([]).output
        assert out == [{"k": 1, "i": 1, "extra": "x"}, {"k": 1, "i": 2, "extra": None}]

    def test_a_batch_is_one_transaction(self, tmp_path: Path) -> None:
        conn = self.conn(tmp_path)
        flow = save_flow(conn)
        flow.run([{"n": 1}])
        with pytest.raises(kf.ConnectorError, match="row 1 field 'n'"):
            flow.run([{"n": 2}, {"n": "two"}])
        assert load_flow(conn).run([]).output == [{"n": 1}]

    def test_a_bad_url_and_an_unreachable_database(self, tmp_path: Path) -> None:
        bad = kf.ConnConfig(cname="sa", type="sql", addrs="not a url", key="t")
        flow = save_flow(bad)  # checked when a run first uses the connector
        with pytest.raises(kf.ConnectorError, match="not a SQLAlchemy URL"):
            flow.run([{"a": 1}])
        gone = attrs.evolve(bad, addrs=f"sqlite:///{tmp_path / 'no' / 'x.db'}")
        # SQLAlchemy's sqlite driver does not create folders: the file cannot be opened.
        with pytest.raises(kf.ConnectorError, match="after 2 attempt") as info:
            save_flow(gone, retry_times=1).run([{"a": 1}])
        assert info.value.type == "sql"


class TestJSONL:
    """The jsonl connector appends rows as JSON lines and reads them back."""

    def conn(self, tmp_path: Path) -> kf.ConnConfig:
        return kf.ConnConfig(cname="j", type="jsonl", addrs=str(tmp_path / "d" / "rows.jsonl"))

    def test_save_appends_and_load_reads(self, tmp_path: Path) -> None:
        conn = self.conn(tmp_path)
        assert round_trip(conn, JSON_ROWS) == JSON_ROWS
        save_flow(conn).run([Score(7, 1.5)])
        assert load_flow(conn).run([]).output == [*JSON_ROWS, {"stu_id": 7, "avg": 1.5}]
        assert (tmp_path / "d" / "rows.jsonl").read_text().count("\n") == 4

    def test_where_and_limit(self, tmp_path: Path) -> None:
        conn = self.conn(tmp_path)
        save_flow(conn).run([{"k": i % 2, "i": i} for i in range(5)])
        assert load_flow(conn, {"where": {"k": 0}, "limit": 2}).run([]).output == [
            {"k": 0, "i": 0},
            {"k": 0, "i": 2},
        ]

    def test_a_bad_line_names_the_file_and_line(self, tmp_path: Path) -> None:
        conn = self.conn(tmp_path)
        save_flow(conn).run([{"a": 1}])
        with (tmp_path / "d" / "rows.jsonl").open("a") as f:
            f.write("{not json\n")
        with pytest.raises(kf.ConnectorError, match="line 2 is not JSON"):
            load_flow(conn).run([])

    def test_a_row_json_cannot_hold_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(kf.ConnectorError, match="row 1 as JSON"):
            save_flow(self.conn(tmp_path)).run([{"a": 1}, {"a": float("nan")}])
        assert not (tmp_path / "d" / "rows.jsonl").exists()

    def test_bad_params(self, tmp_path: Path) -> None:
        conn = self.conn(tmp_path)
        save_flow(conn).run([{"a": 1}])
        with pytest.raises(kf.ConnectorError, match=r"params\.limit"):
            load_flow(conn, {"limit": -1}).run([])
        with pytest.raises(kf.ConnectorError, match=r"params\.where"):
            load_flow(conn, {"where": "a = 1"}).run([])


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real redis-server on a free loopback port for the session; stopped afterwards."""
    with redis_server(tmp_path_factory.mktemp("redis")) as port:
        yield port


class TestRedis:
    """The redis connector stores rows in a list or a stream of a real redis-server."""

    def conn(self, port: int, key: str, **params: Any) -> kf.ConnConfig:
        return kf.ConnConfig(
            cname=f"r-{key}", type="redis", addrs=f"127.0.0.1:{port}", key=key, params=params
        )

    def test_list_round_trip(self, redis_port: int, request: pytest.FixtureRequest) -> None:
        conn = self.conn(redis_port, f"list-{request.node.name}")
        assert round_trip(conn, JSON_ROWS) == JSON_ROWS
        assert load_flow(conn, {"limit": 1}).run([]).output == JSON_ROWS[:1]

    def test_stream_round_trip(self, redis_port: int, request: pytest.FixtureRequest) -> None:
        conn = self.conn(redis_port, f"stream-{request.node.name}", structure="stream")
        assert round_trip(conn, JSON_ROWS) == JSON_ROWS
        assert load_flow(conn, {"where": {"id": 2}}).run([]).output == [JSON_ROWS[1]]

    def test_a_url_address(self, redis_port: int) -> None:
        conn = attrs.evolve(self.conn(redis_port, "url"), addrs=f"redis://127.0.0.1:{redis_port}/1")
        assert round_trip(conn, [{"a": 1}]) == [{"a": 1}]

    def test_an_unreachable_server_fails_after_the_retry_policy(self) -> None:
        conn = self.conn(free_port(), "gone", timeout=1)
        with pytest.raises(kf.ConnectorError, match="after 2 attempt") as info:
            save_flow(conn, retry_times=1).run([{"a": 1}])
        assert (info.value.connector, info.value.type) == ("r-gone", "redis")
        assert info.value.address == conn.addrs

    def test_bad_addrs_and_structure(self) -> None:
        nowhere = save_flow(kf.ConnConfig(cname="r", type="redis", addrs="nowhere", key="k"))
        with pytest.raises(kf.ConnectorError, match="host:port"):
            nowhere.run([{"a": 1}])
        with pytest.raises(kf.ConnectorError, match="list or stream"):
            save_flow(self.conn(6379, "k", structure="set")).run([{"a": 1}])


class TestUserCallbacks:
    """User callbacks replace the built-in ones: KisFlow's fake redis connector never dials."""

    def test_user_init_replaces_the_builtin_init(self, pool: Pool) -> None:
        inits: list[str] = []
        kf.caas_init("fake", lambda conn: inits.append(conn.get_name()))
        kf.caas("fake", "Store", "Save", lambda conn, fn, flow, args: len(args))
        conn = kf.ConnConfig(cname="fake", type="redis", addrs="nowhere", key="k")
        # The built-in redis init would refuse "nowhere"; the user's init runs instead.
        result = save_flow(conn).run([{"a": 1}])
        assert result.output == [{"a": 1}]
        assert inits == ["fake"]

    def test_types_without_builtin_need_user_callbacks(self) -> None:
        assert is_builtin_type("SQLite")
        assert not is_builtin_type("kafka")
        conn = kf.ConnConfig(cname="k", type="kafka", addrs="127.0.0.1:9092", key="t")
        with pytest.raises(kf.FunctionNotFoundError):
            save_flow(conn)

    def test_a_builtin_connector_serves_a_users_faas(self, tmp_path: Path) -> None:
        conn = kf.ConnConfig(cname="db", type="sqlite", addrs=str(tmp_path / "u.db"), key="t")

        @kf.faas("Store")
        def store(flow: kf.Flow, rows: list[Score]) -> None:
            n = flow.get_connector().call(flow, [r for r in rows if r.avg > 5])
            flow.commit_row({"saved": n})

        assert save_flow(conn).run([Score(1, 9.0), Score(2, 1.0)]).output == [{"saved": 1}]
        assert load_flow(conn).run([]).output == [{"stu_id": 1, "avg": 9.0}]


class TestConcurrency:
    """Init runs once per connector instance, and saves from many threads all land."""

    def test_init_runs_once_across_threads(self) -> None:
        inits: list[int] = []
        gate = threading.Barrier(8)

        def init(conn: kf.Connector) -> None:
            inits.append(1)
            time.sleep(0.01)

        kf.caas_init("shared", init)
        connector = kf.Connector(kf.ConnConfig(cname="shared", type="custom"))

        def worker() -> None:
            gate.wait()
            connector.init()

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert inits == [1]

    @pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
    def test_parallel_saves_keep_every_row(self, tmp_path: Path, kind: str) -> None:
        conn = kf.ConnConfig(cname="p", type=kind, addrs=str(tmp_path / f"p.{kind}"), key="t")
        flow = save_flow(conn)
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                flow.run([{"n": n, "i": i} for i in range(50)])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        rows = load_flow(conn).run([]).output
        assert sorted((r["n"], r["i"]) for r in rows) == [
            (n, i) for n in range(6) for i in range(50)
        ]


def rows_of(spec: Any) -> Any:
    """A partition's rows are its description (the tests hand rows in directly)."""
    return spec


def save_as_partition(flow: kf.Flow, rows: list[Any], key: str) -> PartitionResult:
    """Run ``flow`` on ``rows`` as partition ``key`` through the workers' entry point, here."""
    raw = run_partition(
        FlowPayload.of(flow),
        dumps(rows_of, [rows_of]),
        Partition(index=0, key=key, spec=rows),
        keep_output=True,
    )
    return unwrap(raw)  # a failure is raised as the PartitionError the executors raise


def part_rows(part: str, n: int = 3) -> list[dict[str, Any]]:
    return [{"part": part, "i": i} for i in range(n)]


@pytest.fixture(params=["sqlite", "sql", "jsonl", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> kf.ConnConfig:
    """A connector config of each built-in type on a fresh real store."""
    kind: str = request.param
    if kind == "sqlite":
        return kf.ConnConfig(cname="c", type=kind, addrs=str(tmp_path / "x.db"), key="rows")
    if kind == "sql":
        return kf.ConnConfig(
            cname="c", type=kind, addrs=f"sqlite:///{tmp_path / 'sa.db'}", key="rows"
        )
    if kind == "jsonl":
        return kf.ConnConfig(cname="c", type=kind, addrs=str(tmp_path / "rows.jsonl"))
    port = request.getfixturevalue("redis_port")
    key = "idem-" + "".join(ch if ch.isalnum() else "-" for ch in request.node.name)
    return kf.ConnConfig(cname="c", type=kind, addrs=f"127.0.0.1:{port}", key=key)


def stored(conn: kf.ConnConfig) -> list[tuple[str, int]]:
    """(part, i) of every stored row, in store order."""
    return [(r["part"], r["i"]) for r in load_flow(conn).run([]).output]


def ledger_entries(conn: kf.ConnConfig) -> list[list[str]]:
    """The (flow, stage, partition) marks a store's ledger holds, sorted ([] if none)."""
    if conn.type == "sqlite" or conn.type == "sql":
        path = conn.addrs.removeprefix("sqlite:///")
        with closing(sqlite3.connect(path)) as db:
            if not db.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'kisflow_partitions'"
            ).fetchone():
                return []
            return sorted(
                list(r)
                for r in db.execute('SELECT flow, stage, "partition" FROM kisflow_partitions')
            )
    if conn.type == "jsonl":
        side = Path(conn.addrs + ".kisflow_partitions")
        if not side.exists():
            return []
        entries = [json.loads(line) for line in side.read_text().splitlines()]
        return sorted(e["done"] for e in entries if "done" in e)
    import redis

    host, port = conn.addrs.split(":")
    with redis.Redis(host=host, port=int(port), decode_responses=True) as client:
        return sorted(json.loads(m) for m in client.smembers(f"{conn.key}:kisflow_partitions"))


class TestIdempotentPerPartition:
    """Each built-in Save stores a partition once, however often an executor replays it."""

    def test_the_same_partition_twice_is_written_once(self, store: kf.ConnConfig) -> None:
        flow = save_flow(store)
        first = save_as_partition(flow, part_rows("a"), "a")
        again = save_as_partition(flow, part_rows("a"), "a")
        assert stored(store) == [("a", 0), ("a", 1), ("a", 2)]
        # The replay still passes its input rows on: the flow's output is the same.
        assert first.output == again.output == part_rows("a")
        assert ledger_entries(store) == [[flow.name, "Store", "a"]]

    def test_different_partitions_both_write(self, store: kf.ConnConfig) -> None:
        flow = save_flow(store)
        save_as_partition(flow, part_rows("a"), "a")
        save_as_partition(flow, part_rows("b", 2), "b")
        save_as_partition(flow, part_rows("a"), "a")
        assert stored(store) == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
        assert ledger_entries(store) == [[flow.name, "Store", "a"], [flow.name, "Store", "b"]]

    def test_the_key_is_per_flow_and_stage(self, store: kf.ConnConfig) -> None:
        one = kf.FlowBuilder("one").save("Store", conn=store).build()
        two = kf.FlowBuilder("two").save("Store", conn=store).build()
        save_as_partition(one, part_rows("a", 1), "0")
        save_as_partition(two, part_rows("b", 1), "0")
        assert stored(store) == [("a", 0), ("b", 0)]

    def test_outside_an_executor_every_save_appends(self, store: kf.ConnConfig) -> None:
        flow = save_flow(store)
        flow.run(part_rows("a", 2))
        flow.run(part_rows("a", 2))
        assert stored(store) == [("a", 0), ("a", 1), ("a", 0), ("a", 1)]
        assert ledger_entries(store) == []

    def test_concurrent_replays_write_each_partition_once(self, store: kf.ConnConfig) -> None:
        flow = save_flow(store, retry_times=3)
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            key = str(n % 3)
            try:
                save_as_partition(flow, part_rows(key, 20), key)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sorted(stored(store)) == [(k, i) for k in "012" for i in range(20)]


class TestJSONLRecovery:
    """A jsonl writer killed between its rows and its ledger entry leaves no duplicate."""

    def test_rows_of_a_crashed_save_are_cut_back(self, tmp_path: Path) -> None:
        conn = kf.ConnConfig(cname="j", type="jsonl", addrs=str(tmp_path / "rows.jsonl"))
        flow = save_flow(conn)
        save_as_partition(flow, part_rows("a", 2), "a")
        data = Path(conn.addrs)
        side = Path(conn.addrs + ".kisflow_partitions")
        size = data.stat().st_size
        # What a writer killed after appending partition b's rows (no "done") leaves.
        mark = [flow.name, "Store", "b"]
        with side.open("a") as f:
            f.write(json.dumps({"begin": mark, "size": size}) + "\n")
        with data.open("a") as f:
            f.write('{"part": "b", "i": 0}\n{"part": "b", "i": 1}\n{"part": "b", "i"')
        save_as_partition(flow, part_rows("b", 2), "b")
        assert stored(conn) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
        kinds = [next(iter(json.loads(line))) for line in side.read_text().splitlines()]
        assert kinds == ["begin", "done", "begin", "abort", "begin", "done"]

    def test_a_torn_ledger_line_is_dropped(self, tmp_path: Path) -> None:
        conn = kf.ConnConfig(cname="j", type="jsonl", addrs=str(tmp_path / "rows.jsonl"))
        flow = save_flow(conn)
        save_as_partition(flow, part_rows("a", 1), "a")
        side = Path(conn.addrs + ".kisflow_partitions")
        with side.open("a") as f:
            f.write('{"begin": ["save-j", "St')  # killed mid-write: rows never started
        save_as_partition(flow, part_rows("b", 1), "b")
        save_as_partition(flow, part_rows("a", 1), "a")
        assert stored(conn) == [("a", 0), ("b", 0)]
        assert ledger_entries(conn) == [[flow.name, "Store", "a"], [flow.name, "Store", "b"]]

    def test_a_plain_save_after_a_crash_is_kept(self, tmp_path: Path) -> None:
        conn = kf.ConnConfig(cname="j", type="jsonl", addrs=str(tmp_path / "rows.jsonl"))
        flow = save_flow(conn)
        save_as_partition(flow, part_rows("a", 1), "a")
        data = Path(conn.addrs)
        side = Path(conn.addrs + ".kisflow_partitions")
        with side.open("a") as f:
            f.write(json.dumps({"begin": [flow.name, "Store", "b"], "size": data.stat().st_size}))
            f.write("\n")
        with data.open("a") as f:
            f.write('{"part": "b", "i": 0}\n')
        flow.run(part_rows("p", 1))  # outside an executor: undoes b's half, then appends
        save_as_partition(flow, part_rows("b", 1), "b")
        assert stored(conn) == [("a", 0), ("p", 0), ("b", 0)]


class TestJSONLLedgerErrors:
    """A sidecar ledger kisflow cannot read fails the Save with an error naming it."""

    def test_a_corrupt_ledger_is_a_connector_error_naming_it(self, tmp_path: Path) -> None:
        conn = kf.ConnConfig(cname="j", type="jsonl", addrs=str(tmp_path / "rows.jsonl"))
        side = Path(conn.addrs + ".kisflow_partitions")
        side.write_text("not json\n")
        flow = save_flow(conn)
        with pytest.raises(kf.PartitionError) as info:
            save_as_partition(flow, part_rows("a", 1), "a")
        assert (info.value.flow, info.value.partition) == (flow.name, "a")
        message = str(info.value)
        assert "rows.jsonl.kisflow_partitions" in message
        assert "line 1 is not a ledger entry" in message
        assert not Path(conn.addrs).exists()


class TestChunkedSaves:
    """A FaaS that calls a built-in Save several times per partition keeps every chunk."""

    def test_each_chunk_is_saved_once(self, tmp_path: Path) -> None:
        conn = kf.ConnConfig(cname="c", type="sqlite", addrs=str(tmp_path / "x.db"), key="rows")

        @kf.faas("Chunks")
        def chunks(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
            for start in range(0, len(rows), 2):
                flow.get_connector().call(flow, rows[start : start + 2])
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("chunked").save("Chunks", conn=conn).build()
        save_as_partition(flow, part_rows("a", 5), "a")
        save_as_partition(flow, part_rows("a", 5), "a")
        save_as_partition(flow, part_rows("b", 1), "b")
        assert stored(conn) == [("a", i) for i in range(5)] + [("b", 0)]
        assert ledger_entries(conn) == [
            ["chunked", "Chunks", key] for key in ("a", "a#2", "a#3", "b")
        ]

    def test_a_retried_attempt_saves_its_chunks_once(self, tmp_path: Path) -> None:
        conn = kf.ConnConfig(cname="c", type="sqlite", addrs=str(tmp_path / "x.db"), key="rows")
        # The FaaS runs on a rebuilt copy of the flow: it counts its attempts in a file.
        attempts = tmp_path / "attempts"

        @kf.faas("Flaky")
        def flaky(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
            with attempts.open("a") as f:
                f.write("x")
            flow.get_connector().call(flow, rows[:2])
            if attempts.read_text() == "x":
                raise RuntimeError("lost the connection after the first chunk")
            flow.get_connector().call(flow, rows[2:])
            flow.commit_row_batch(rows)

        option = kf.FuncOption(retry_times=1, return_duration=1)
        flow = kf.FlowBuilder("flaky").save("Flaky", option=option, conn=conn).build()
        result = save_as_partition(flow, part_rows("a", 4), "a")
        assert attempts.read_text() == "xx"
        assert result.rows_out == 4
        save_as_partition(flow, part_rows("a", 4), "a")  # a replay: the counter restarts
        assert stored(conn) == [("a", i) for i in range(4)]
        assert ledger_entries(conn) == [["flaky", "Flaky", "a"], ["flaky", "Flaky", "a#2"]]
