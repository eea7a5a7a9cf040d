"""The plan: one place resolves what runs each stage, for runs, DOT and validation alike."""

from __future__ import annotations

from pathlib import Path

import pytest

import kisflow as kf
from kisflow._plan import is_default, stage_faas, store_load, store_save


def _db(tmp_path: Path) -> kf.ConnConfig:
    return kf.ConnConfig(cname="db", type="sqlite", addrs=str(tmp_path / "t.db"), key="t")


class TestResolution:
    def test_a_save_on_a_registered_type_needs_no_faas(self, tmp_path: Path) -> None:
        flow = kf.FlowBuilder("s").save("Store", conn=_db(tmp_path)).build()
        plan = flow.plan()
        assert [s.fn for s in plan.specs] == [store_save]
        assert plan.connectors == (flow.stages[0].connector,)
        assert flow.run([{"a": 1}]).output == [{"a": 1}]
        load = kf.FlowBuilder("l").load("Read", conn=_db(tmp_path)).build()
        assert load.plan().specs[0].fn is store_load
        assert load.run([]).output == [{"a": 1}]

    def test_a_registered_faas_wins_over_the_default(self, tmp_path: Path) -> None:
        @kf.faas("Store")
        def mine(flow: kf.Flow, rows: list[dict[str, int]]) -> None:
            flow.commit_row_batch([{"mine": 1}])

        flow = kf.FlowBuilder("s").save("Store", conn=_db(tmp_path)).build()
        spec = stage_faas(flow.pool, flow.stages[0])
        assert spec is not None
        assert spec.fn is mine
        assert not is_default(spec)
        assert flow.run([{"a": 1}]).output == [{"mine": 1}]

    def test_an_unknown_type_has_no_default(self) -> None:
        conn = kf.ConnConfig(cname="x", type="nosuchtype", addrs="a", key="k")
        with pytest.raises(kf.FunctionNotFoundError, match="'Store'"):
            kf.FlowBuilder("s").save("Store", conn=conn).build()

    def test_the_plan_is_cached_until_the_pool_changes(self) -> None:
        @kf.faas("A")
        def a(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("p").calculate("A").build()
        first = flow.plan()
        assert flow.plan() is first
        kf.faas("A", a, replace=True)
        assert flow.plan() is not first
        second = flow.plan()
        flow.set_dead_letters([])
        assert flow.plan() is not second
        assert flow.plan().sinks is not None


class TestConnectorsStartWithTheFirstRun:
    def test_validate_dot_and_fork_run_no_init(self, tmp_path: Path) -> None:
        inits: list[str] = []
        kf.caas_init("db", lambda conn: inits.append(conn.get_name()))
        kf.caas("db", "Store", "Save", lambda conn, fn, flow, args: args)
        flow = kf.FlowBuilder("s").save("Store", conn=_db(tmp_path)).build()
        flow.validate()
        flow.to_dot()
        fork = flow.fork()
        assert inits == []
        flow.run([1])
        flow.run([2])
        assert inits == ["db"]
        fork.run([3])  # a fork is another definition: its own connector, its own init
        assert inits == ["db", "db"]


class TestDot:
    def test_store_stages_show_their_store(self, tmp_path: Path) -> None:
        flow = (
            kf.FlowBuilder("d")
            .load("Read", conn=_db(tmp_path))
            .save("Write", conn=_db(tmp_path))
            .build()
        )
        dot = flow.to_dot()
        assert "sqlite t -> rows" in dot
        assert "input() -> input() -> sqlite t" in dot
        assert "?" not in dot


class TestConnectorErrors:
    def test_a_connector_error_names_flow_stage_and_attempts(self, tmp_path: Path) -> None:
        gone = kf.ConnConfig(
            cname="db",
            type="sqlite",
            addrs=str(tmp_path),
            key="t",  # a folder, not a file
        )
        func = kf.FuncConfig(
            fname="Store", fmode="Save", option=kf.FuncOption(cname="db", retry_times=1)
        ).with_connector(gone)
        flow = kf.Flow("gone").link(func)
        with pytest.raises(kf.ConnectorError) as info:
            flow.run([{"a": 1}])
        err = info.value
        assert (err.flow, err.stage, err.attempts) == ("gone", "Store", 2)
        assert (err.connector, err.type) == ("db", "sqlite")
        assert "(after 2 attempts)" in str(err)
        assert isinstance(err.__cause__, kf.ConnectorError)


class TestDeepRowsInTableStores:
    """A row too deep for JSON is a ConnectorError from a table store, never a RecursionError."""

    def test_a_deep_field_and_a_deep_json_string(self, tmp_path: Path) -> None:
        deep: object = 0
        for _ in range(10_000):
            deep = [deep]
        flow = kf.FlowBuilder("deep").save("Store", conn=_db(tmp_path)).build()
        flow.run([{"a": [1]}])  # the column is JSON from now on
        with pytest.raises(kf.ConnectorError, match="is not JSON data"):
            flow.run([{"a": deep}])
        text = "[" * 10_000 + "]" * 10_000
        with pytest.raises(kf.ConnectorError, match="a table row must be a mapping"):
            flow.run([text])
