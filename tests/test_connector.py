"""Tests for kisflow.connector: init once, CaaS dispatch and metadata, through real flows."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from resources.threads import run_threads

import kisflow as kf
from kisflow._pool import Pool
from kisflow.connector import Connector
from kisflow.errors import ConnectorError, RunError, StageExecutionError

CONN = kf.ConnConfig(cname="Mem", type="memory", addrs="127.0.0.1:6379", key="k")


def save_via_connector(flow: kf.Flow, rows: list[int]) -> None:
    """The FaaS of every flow here: pass the rows to the connector, commit what it returns."""
    flow.commit_row_batch(flow.get_connector().call(flow, rows))


def save_flow(name: str = "F", conn: kf.ConnConfig = CONN) -> kf.Flow:
    """A one-stage flow whose Save stage ``F`` is bound to ``conn``."""
    return kf.FlowBuilder(name).save("F", conn=conn).build()


class TestInit:
    """The init callback runs once per connector, even when 8 threads race to run it."""

    def test_runs_once_at_the_first_run(self) -> None:
        calls: list[Connector] = []
        kf.caas_init("Mem", calls.append)
        kf.faas("F", save_via_connector)
        kf.caas("Mem", "F", "S", lambda conn, fn, flow, args: args)
        flow = save_flow()
        flow.validate()
        flow.fork()
        assert calls == []  # not at link, build, validate or fork
        flow.run([1])
        assert len(calls) == 1
        assert calls[0] is flow.stages[0].connector
        flow.run([2])
        assert len(calls) == 1

    def test_once_from_eight_threads(self) -> None:
        calls: list[int] = []
        lock = threading.Lock()

        def init(conn: Connector) -> None:
            with lock:
                calls.append(1)
            time.sleep(0.02)  # widen the window in which a second init could start
            conn.set_metadata("client", "ready")

        kf.caas_init("Mem", init)
        conn = Connector(CONN)
        seen: list[Any] = []

        def use(_: int) -> None:
            conn.init()
            seen.append(conn.get_metadata("client"))

        assert run_threads(8, use) == []
        assert len(calls) == 1
        assert seen == ["ready"] * 8

    def test_each_connector_instance_inits(self) -> None:
        calls: list[str] = []
        kf.caas_init("Mem", lambda conn: calls.append(conn.get_id()))
        a, b = Connector(CONN), Connector(CONN)
        a.init()
        b.init()
        a.init()
        assert calls == [a.get_id(), b.get_id()]
        assert a.get_id() != b.get_id()

    def test_no_init_registered_is_fine(self) -> None:
        conn = Connector(CONN)
        conn.init()
        assert conn.get_metadata("anything") is None

    def test_failing_init_names_connector_type_and_address(self) -> None:
        def init(conn: Connector) -> None:
            raise OSError("connection refused")

        kf.caas_init("Mem", init)
        kf.faas("F", save_via_connector)
        flow = save_flow()
        with pytest.raises(ConnectorError) as info:
            flow.run([1])
        err = info.value
        assert (err.connector, err.type, err.address) == ("Mem", "memory", "127.0.0.1:6379")
        assert str(err) == (
            "connector 'Mem' (memory at '127.0.0.1:6379') failed to initialise: connection refused"
        )
        assert isinstance(err.__cause__, OSError)
        assert isinstance(err, ConnectionError)

    def test_failed_init_is_retried(self) -> None:
        attempts: list[int] = []

        def init(conn: Connector) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise OSError("not yet")

        kf.caas_init("Mem", init)
        conn = Connector(CONN)
        with pytest.raises(ConnectorError):
            conn.init()
        conn.init()
        conn.init()
        assert len(attempts) == 2


class TestCall:
    """``call`` reaches the CaaS for (connector, current function, mode)."""

    def test_dispatch_without_ctx(self) -> None:
        seen: list[tuple[Any, ...]] = []

        def caas(conn: Connector, fn: kf.Stage, flow: kf.Flow, args: Any) -> list[int]:
            seen.append((conn.get_name(), fn.name, fn.mode, flow.get_name(), args))
            return [a * 10 for a in args]

        kf.faas("F", save_via_connector)
        kf.caas("Mem", "F", "Save", caas)
        result = save_flow().run([1, 2])
        assert result.output == [10, 20]
        assert seen == [("Mem", "F", kf.Mode.SAVE, "F", [1, 2])]

    def test_dispatch_with_leading_ctx(self) -> None:
        seen: list[Any] = []

        def caas(ctx: Any, conn: Connector, fn: kf.Stage, flow: kf.Flow, args: Any) -> list[int]:
            seen.append(ctx)
            return [a + ctx["add"] for a in args]

        kf.faas("F", save_via_connector)
        kf.caas("Mem", "F", "S", caas)
        ctx = {"add": 5}
        assert save_flow().run([1, 2], ctx=ctx).output == [6, 7]
        assert seen[0] is ctx

    def test_ctx_is_none_without_one(self) -> None:
        seen: list[Any] = []
        kf.faas("F", save_via_connector)
        kf.caas("Mem", "F", "S", lambda ctx, conn, fn, flow, args: seen.append(ctx) or args)
        assert save_flow().run([3]).output == [3]
        assert seen == [None]

    def test_dispatch_by_mode(self) -> None:
        kf.faas("F", save_via_connector)
        kf.caas("Mem", "F", "S", lambda conn, fn, flow, args: ["saved"])
        kf.caas("Mem", "F", "L", lambda conn, fn, flow, args: ["loaded"])
        saving = kf.FlowBuilder("A").save("F", conn=CONN).build()
        loading = kf.FlowBuilder("B").load("F", conn=CONN).build()
        assert saving.run([1]).output == ["saved"]
        assert loading.run([1]).output == ["loaded"]

    def test_dispatch_by_function(self) -> None:
        kf.faas("F", save_via_connector)
        kf.faas("G", save_via_connector)
        kf.caas("Mem", "F", "S", lambda conn, fn, flow, args: [a + 1 for a in args])
        kf.caas("Mem", "G", "S", lambda conn, fn, flow, args: [a * 2 for a in args])
        flow = kf.FlowBuilder("FG").save("F", conn=CONN).save("G", conn=CONN).build()
        assert flow.run([1, 2]).output == [4, 6]

    def test_missing_caas(self) -> None:
        kf.faas("F", save_via_connector)
        kf.caas("Mem", "F", "L", lambda conn, fn, flow, args: args)  # wrong mode
        with pytest.raises(ConnectorError) as info:
            save_flow().run([1])
        err = info.value
        assert (err.connector, err.type, err.address) == ("Mem", "memory", "127.0.0.1:6379")
        assert "connector 'Mem' has no caas for function 'F' in mode Save" in str(err)
        assert "kisflow.caas('Mem', 'F', 'Save')" in str(err)
        # the run passes kisflow's own errors through, noting where they happened
        assert err.__notes__ == ["in flow 'F', stage 'F'"]

    def test_call_outside_a_run(self) -> None:
        kf.faas("F", save_via_connector)
        kf.caas("Mem", "F", "S", lambda conn, fn, flow, args: args)
        flow = save_flow()
        conn = flow.stages[0].connector
        assert conn is not None
        with pytest.raises(RunError, match="only valid inside a FaaS during a run"):
            conn.call(flow, [1])

    def test_caas_error_is_chained(self) -> None:
        def caas(conn: Connector, fn: kf.Stage, flow: kf.Flow, args: Any) -> Any:
            raise KeyError("row 7")

        kf.faas("F", save_via_connector)
        kf.caas("Mem", "F", "S", caas)
        with pytest.raises(StageExecutionError) as info:
            save_flow().run([1])
        assert isinstance(info.value.__cause__, KeyError)

    def test_flow_pool_is_used(self) -> None:
        own = Pool()
        own.faas("F", save_via_connector)
        own.caas_init("Mem", lambda conn: conn.set_metadata("pool", "own"))
        own.caas("Mem", "F", "S", lambda conn, fn, flow, args: [conn.get_metadata("pool")])
        flow = kf.FlowBuilder("F", pool=own).save("F", conn=CONN).build()
        assert flow.run([1]).output == ["own"]
        assert kf.pool.get_caas("Mem", "F", "S") is None

    def test_eight_threads_share_one_connector(self) -> None:
        inits: list[int] = []
        kf.caas_init("Mem", lambda conn: inits.append(1))
        kf.faas("F", save_via_connector)
        kf.caas("Mem", "F", "S", lambda conn, fn, flow, args: [a * 2 for a in args])
        flow = save_flow()
        outputs: dict[int, list[Any]] = {}

        def go(i: int) -> None:
            outputs[i] = flow.run([i, i + 100]).output

        assert run_threads(8, go) == []
        assert outputs == {i: [2 * i, 2 * i + 200] for i in range(8)}
        assert len(inits) == 1


class TestMetadataAndIdentity:
    """A connector keeps metadata between calls and answers KisFlow's getters."""

    def test_metadata_from_init_seen_by_caas(self) -> None:
        kf.caas_init("Mem", lambda conn: conn.set_metadata("store", []))

        def caas(conn: Connector, fn: kf.Stage, flow: kf.Flow, args: Any) -> list[int]:
            store = conn.get_metadata("store")
            store.extend(args)
            return list(store)

        kf.faas("F", save_via_connector)
        kf.caas("Mem", "F", "S", caas)
        flow = save_flow()
        assert flow.run([1]).output == [1]
        assert flow.run([2, 3]).output == [1, 2, 3]

    def test_get_set(self) -> None:
        conn = Connector(CONN)
        assert conn.get_metadata("k") is None
        conn.set_metadata("k", 1)
        conn.set_metadata("k", 2)
        assert conn.get_metadata("k") == 2

    def test_metadata_from_eight_threads(self) -> None:
        conn = Connector(CONN)

        def put(i: int) -> None:
            for j in range(100):
                conn.set_metadata(f"{i}-{j}", j)

        assert run_threads(8, put) == []
        assert all(conn.get_metadata(f"{i}-{j}") == j for i in range(8) for j in range(100))

    def test_identity(self) -> None:
        conn = Connector(CONN)
        assert conn.get_name() == "Mem"
        assert conn.get_config() is CONN
        assert conn.get_id().startswith("conn-")
        assert repr(conn) == "Connector('Mem', type='memory')"

    def test_flow_getters(self) -> None:
        seen: list[Any] = []

        def faas(flow: kf.Flow, rows: list[int]) -> None:
            seen.append((flow.get_connector().get_name(), flow.get_conn_conf()))

        kf.faas("F", faas)
        save_flow().run([1])
        assert seen == [("Mem", CONN)]


class TestLateInit:
    """A caas_init registered after the stage was linked still runs, once, at first call."""

    def test_init_registered_after_link(self) -> None:
        inits: list[str] = []
        kf.faas("F", save_via_connector)
        kf.caas(
            "Mem", "F", "S", lambda conn, fn, flow, args: [conn.get_metadata("ready")] * len(args)
        )
        flow = save_flow()

        def init(conn: Connector) -> None:
            inits.append(conn.get_name())
            conn.set_metadata("ready", "yes")

        kf.caas_init("Mem", init)
        assert inits == []
        assert flow.run([1, 2]).output == ["yes", "yes"]
        assert flow.run([3]).output == ["yes"]
        assert inits == ["Mem"]
