"""KisFlow's own Go test suite, ported: pool, flow, params, actions, fork, typed injection,
commit batch. Flows are built the KisFlow way (configs + ``link``); the YAML-loaded
versions of the same tests live with the config loader's tests.

KisFlow's tests only print; each port asserts what the Go code would have done, except
where SEMANTICS.md says kisflow deliberately does better (noted inline).
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import kisflow as kf

SOURCE_ROWS = ["This is Data1 from Test", "This is Data2 from Test", "This is Data3 from Test"]


class Recorder:
    """Collects (function name, stage id, rows seen) per FaaS call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[Any]]] = []

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def rows_of(self, name: str) -> list[list[Any]]:
        return [rows for n, _, rows in self.calls if n == name]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def _seen(rec: Recorder, flow: kf.Flow) -> None:
    rec.calls.append(
        (flow.get_this_func_conf().fname, flow.get_this_function().get_id(), list(flow.input()))
    )


@pytest.fixture
def kisflow_faas(rec: Recorder) -> None:
    """KisFlow's test FaaS: funcName1/2/3, abortFunc, dataReuseFunc, noResultFunc, jumpFunc."""

    def func_name1(flow: kf.Flow) -> None:
        _seen(rec, flow)
        for index, _row in enumerate(flow.input()):
            flow.commit_row(
                f"data from funcName[{flow.get_this_func_conf().fname}], index = {index}"
            )

    def func_name2(flow: kf.Flow) -> None:
        _seen(rec, flow)
        for index, _row in enumerate(flow.input()):
            flow.commit_row(
                f"data from funcName[{flow.get_this_func_conf().fname}], index = {index}"
            )

    def func_name3(flow: kf.Flow) -> None:
        _seen(rec, flow)

    def abort_func(flow: kf.Flow) -> None:
        _seen(rec, flow)
        flow.next(kf.actions.abort)

    def data_reuse_func(flow: kf.Flow) -> None:
        _seen(rec, flow)
        for index, _row in enumerate(flow.input()):
            flow.commit_row(
                f"data from funcName[{flow.get_this_func_conf().fname}], index = {index}"
            )
        flow.next(kf.actions.data_reuse)

    def no_result_func(flow: kf.Flow) -> None:
        _seen(rec, flow)
        flow.next(kf.actions.force_entry_next)

    def jump_func(flow: kf.Flow) -> None:
        _seen(rec, flow)
        flow.next(kf.actions.jump_func("funcName1"))

    kf.pool.faas("funcName1", func_name1)
    kf.pool.faas("funcName2", func_name2)
    kf.pool.faas("funcName3", func_name3)
    kf.pool.faas("abortFunc", abort_func)
    kf.pool.faas("dataReuseFunc", data_reuse_func)
    kf.pool.faas("noResultFunc", no_result_func)
    kf.pool.faas("jumpFunc", jump_func)


def _func(fname: str, mode: kf.Mode, **defaults: Any) -> kf.FuncConfig:
    return kf.FuncConfig(
        fname=fname,
        fmode=mode,
        source=kf.Source(name="TikTokOrder", must=["order_id", "user_id"]),
        option=kf.FuncOption(default_params=defaults),
    )


def _flow(name: str, *fnames: str) -> kf.Flow:
    modes = {"funcName1": kf.Mode.VERIFY, "funcName2": kf.Mode.SAVE}
    flow = kf.Flow(kf.FlowConfig(flow_name=name, status=1))
    for fname in fnames:
        flow.link(_func(fname, modes.get(fname, kf.Mode.CALCULATE)))
    return flow


def _commit_source(flow: kf.Flow) -> None:
    for row in SOURCE_ROWS:
        flow.commit_row(row)


@pytest.mark.usefixtures("kisflow_faas")
class TestPoolAndFlow:
    """kis_pool_test / kis_flow_test: registered FaaS are called in link order."""

    def test_flow_name1_runs_every_function_in_order(self, rec: Recorder) -> None:
        flow = _flow("flowName1", "funcName1", "funcName2", "funcName3")
        _commit_source(flow)
        result = flow.run()
        assert rec.names() == ["funcName1", "funcName2", "funcName3"]
        assert rec.rows_of("funcName1") == [SOURCE_ROWS]
        assert rec.rows_of("funcName2") == [
            [f"data from funcName[funcName1], index = {i}" for i in range(3)]
        ]
        assert rec.rows_of("funcName3") == [
            [f"data from funcName[funcName2], index = {i}" for i in range(3)]
        ]
        # funcName3 is a sink that commits nothing: the run completes with no output.
        assert result.ended is kf.RunEnd.COMPLETED
        assert result.output == []
        assert [(s.rows_in, s.rows_out) for s in result.stages] == [(3, 3), (3, 3), (3, 0)]

    def test_link_records_functions_in_the_flow_config(self) -> None:
        flow = _flow("flowName1", "funcName1", "funcName2", "funcName3")
        assert [f.fname for f in flow.config.flows] == ["funcName1", "funcName2", "funcName3"]
        assert [s.mode.letter for s in flow.stages] == ["V", "S", "C"]

    def test_source_is_cleared_after_each_run(self, rec: Recorder) -> None:
        flow = _flow("flowName1", "funcName1", "funcName2", "funcName3")
        _commit_source(flow)
        flow.run()
        second = flow.run()
        assert rec.rows_of("funcName1") == [SOURCE_ROWS, []]
        # An empty source still runs the first stage, which then commits nothing.
        assert second.ended is kf.RunEnd.NO_ROWS
        assert second.stopped_at == "funcName1"

    def test_unregistered_function_is_reported_before_any_stage_runs(self, rec: Recorder) -> None:
        flow = _flow("flowName1", "funcName1", "NotRegistered")
        with pytest.raises(kf.FunctionNotFoundError) as err:
            flow.run(SOURCE_ROWS)
        assert err.value.function == "NotRegistered"
        assert err.value.flow == "flowName1"
        assert rec.calls == []

    def test_add_flow_and_get_flow(self) -> None:
        flow = _flow("flowName1", "funcName1")
        kf.pool.add_flow("flowName1", flow)
        assert kf.pool.get_flow("flowName1") is flow
        assert kf.pool.get_flow("nope") is None
        assert list(kf.pool.get_flows()) == ["flowName1"]
        with pytest.raises(kf.DuplicateRegistrationError):
            kf.pool.add_flow("flowName1", flow)


@pytest.mark.usefixtures("kisflow_faas")
class TestActions:
    """kis_action_test: Abort, DataReuse, ForceEntryNext and JumpFunc on KisFlow's flows."""

    def test_abort_stops_after_the_function(self, rec: Recorder) -> None:
        flow = _flow("flowName2", "funcName1", "abortFunc", "funcName3")
        result = flow.run(SOURCE_ROWS)
        assert rec.names() == ["funcName1", "abortFunc"]
        assert result.ended is kf.RunEnd.ABORTED
        assert result.stopped_at == "abortFunc"
        assert result.stage("funcName3").calls == 0

    def test_data_reuse_passes_the_input_on(self, rec: Recorder) -> None:
        flow = _flow("flowName3", "funcName1", "dataReuseFunc", "funcName3")
        result = flow.run(SOURCE_ROWS)
        from_func1 = [f"data from funcName[funcName1], index = {i}" for i in range(3)]
        assert rec.rows_of("funcName3") == [from_func1]
        assert result.stage("dataReuseFunc").rows_out == 3
        assert result.ended is kf.RunEnd.COMPLETED

    def test_force_entry_next_runs_the_next_function_on_empty_input(self, rec: Recorder) -> None:
        flow = _flow("flowName4", "funcName1", "noResultFunc", "funcName3")
        result = flow.run(SOURCE_ROWS)
        assert rec.names() == ["funcName1", "noResultFunc", "funcName3"]
        assert rec.rows_of("funcName3") == [[]]
        assert result.ended is kf.RunEnd.COMPLETED

    def test_jump_back_forever_is_a_flow_loop_error(self, rec: Recorder) -> None:
        # KisFlow's flowName5 jumps back to funcName1 on every pass and never ends in Go.
        flow = _flow("flowName5", "funcName1", "funcName2", "jumpFunc")
        with pytest.raises(kf.FlowLoopError) as err:
            flow.run(SOURCE_ROWS, max_steps=30)
        assert err.value.cycle == ("funcName1", "funcName2", "jumpFunc")
        assert err.value.steps == 30
        assert "funcName1 -> funcName2 -> jumpFunc -> funcName1" in str(err.value)
        assert len(rec.calls) == 30
        # Every pass of funcName1 reads the source layer again (its previous layer).
        assert all(rows == SOURCE_ROWS for rows in rec.rows_of("funcName1"))


@pytest.mark.usefixtures("kisflow_faas")
class TestParams:
    """kis_params_test: flow params override a function's default params key by key."""

    def test_params_merge_and_lookup(self) -> None:
        seen: dict[str, Any] = {}

        def show(flow: kf.Flow) -> None:
            seen["all"] = flow.get_func_param_all()
            seen["one"] = flow.get_func_param("myKey1")
            seen["missing"] = flow.get_func_param("nope")
            seen["funcs"] = flow.get_func_params_all_funcs()
            flow.commit_row("x")

        kf.pool.faas("showParams", show)
        flow = kf.Flow(kf.FlowConfig(flow_name="flowName1"))
        flow.link(
            _func("funcName1", kf.Mode.VERIFY, default1="funcName1_param1"),
            {"myKey1": "flowValue1-1"},
        )
        flow.link(
            _func("showParams", kf.Mode.CALCULATE, default1="p1", myKey1="default"),
            {"myKey1": "flowValue3-1", "myKey2": "flowValue3-2"},
        )
        flow.run(SOURCE_ROWS)
        assert seen["all"] == {"default1": "p1", "myKey1": "flowValue3-1", "myKey2": "flowValue3-2"}
        assert seen["one"] == "flowValue3-1"
        assert seen["missing"] == ""
        assert seen["funcs"] == {
            "funcName1": {"default1": "funcName1_param1", "myKey1": "flowValue1-1"},
            "showParams": {"default1": "p1", "myKey1": "flowValue3-1", "myKey2": "flowValue3-2"},
        }
        assert flow.config.flows[1].params == {"myKey1": "flowValue3-1", "myKey2": "flowValue3-2"}


@pytest.mark.usefixtures("kisflow_faas")
class TestFork:
    """kis_fork_test: a fork has a new id, the same functions and params, and no data."""

    def test_fork_runs_independently(self, rec: Recorder) -> None:
        flow = _flow("flowFork1", "funcName1", "funcName3")
        flow.commit_row("only in the original")
        clone = flow.fork()
        assert clone.get_id() != flow.get_id()
        assert clone.get_name() == "flowFork1"
        assert [s.name for s in clone.stages] == ["funcName1", "funcName3"]
        assert {s.id for s in clone.stages}.isdisjoint({s.id for s in flow.stages})
        assert clone.config == flow.config
        clone.commit_row("only in the clone")
        clone.run()
        flow.run()
        assert rec.rows_of("funcName1") == [["only in the clone"], ["only in the original"]]

    def test_fork_keeps_params_and_not_metadata(self) -> None:
        flow = kf.Flow(kf.FlowConfig(flow_name="flowFork1"))
        flow.link(_func("funcName1", kf.Mode.VERIFY, a=1), {"b": 2})
        flow.set_metadata("k", "v")
        clone = flow.fork()
        assert dict(clone.stages[0].params) == {"a": 1, "b": 2}
        assert clone.get_metadata("k") is None


@attrs.define
class AvgStuScoreIn:
    stu_id: int
    score_1: int
    score_2: int
    score_3: int


@attrs.define
class AvgStuScoreOut:
    stu_id: int
    avg_score: float


class TestTypedInjection:
    """kis_auto_inject_param_test: JSON rows are injected as typed slices (StuAvg flow)."""

    def test_stu_avg_from_json_strings(self) -> None:
        printed: list[AvgStuScoreOut] = []

        @kf.faas("AvgStuScore", output=AvgStuScoreOut)
        def avg(flow: kf.Flow, rows: list[AvgStuScoreIn]) -> None:
            for r in rows:
                flow.commit_row(AvgStuScoreOut(r.stu_id, (r.score_1 + r.score_2 + r.score_3) / 3))

        @kf.faas("PrintStuAvgScore")
        def show(flow: kf.Flow, rows: list[AvgStuScoreOut]) -> None:
            printed.extend(rows)

        flow = kf.Flow(kf.FlowConfig(flow_name="StuAvg"))
        flow.link(
            kf.FuncConfig(
                fname="AvgStuScore",
                fmode="Calculate",
                source={"name": "StudentAverageScore", "must": ["stu_id"]},
            )
        )
        flow.link(kf.FuncConfig(fname="PrintStuAvgScore", fmode="Expand"))
        flow.commit_row('{"stu_id":101, "score_1":100, "score_2":90, "score_3":80}')
        flow.commit_row('{"stu_id":102, "score_1":100, "score_2":80, "score_3":60}')
        result = flow.run()
        assert printed == [AvgStuScoreOut(101, 90.0), AvgStuScoreOut(102, 80.0)]
        assert result.stage("AvgStuScore").rows_out == 2

    def test_unconvertible_row_is_an_error_not_a_zero_value(self) -> None:
        # Go logs the failure and calls the FaaS with a zero value; kisflow refuses.
        called: list[list[AvgStuScoreIn]] = []

        @kf.faas("AvgStuScore")
        def avg(flow: kf.Flow, rows: list[AvgStuScoreIn]) -> None:
            called.append(rows)

        flow = kf.Flow(kf.FlowConfig(flow_name="StuAvg"))
        flow.link(kf.FuncConfig(fname="AvgStuScore", fmode="Calculate"))
        with pytest.raises(kf.RowConversionError) as err:
            flow.run(['{"stu_id": 1, "score_1": 1, "score_2": 2, "score_3": 3}', '{"stu_id": "x"}'])
        assert (err.value.flow, err.value.stage, err.value.row_index) == (
            "StuAvg",
            "AvgStuScore",
            1,
        )
        assert err.value.row == '{"stu_id": "x"}'
        assert called == []


class TestCommitBatch:
    """kis_flow_commit_batch_test: CommitRowBatch commits a whole slice at once."""

    def test_commit_row_batch_before_and_inside_a_run(self) -> None:
        seen: list[list[Any]] = []

        def first(flow: kf.Flow) -> None:
            seen.append(list(flow.input()))
            flow.commit_row_batch([f"batch-{r}" for r in flow.input()])

        def second(flow: kf.Flow) -> None:
            seen.append(list(flow.input()))
            flow.commit_row_batch(flow.input())

        kf.pool.faas("first", first)
        kf.pool.faas("second", second)
        flow = kf.Flow(kf.FlowConfig(flow_name="batch"))
        flow.link(kf.FuncConfig(fname="first", fmode="V"))
        flow.link(kf.FuncConfig(fname="second", fmode="E"))
        flow.commit_row_batch(["a", "b"])
        flow.commit_row("c")
        result = flow.run()
        assert seen == [["a", "b", "c"], ["batch-a", "batch-b", "batch-c"]]
        assert result.output == ["batch-a", "batch-b", "batch-c"]


class TestConnectorCall:
    """kis_connector_test: funcName2 calls its connector's CaaS for every row."""

    def test_caas_receives_each_row(self) -> None:
        inits: list[str] = []
        stored: list[tuple[str, str, Any]] = []

        @kf.caas_init("ConnName1")
        def init(conn: kf.Connector) -> None:
            inits.append(conn.get_name())
            conn.set_metadata("client", "fake-client")

        @kf.caas("ConnName1", "funcName2", kf.Mode.SAVE)
        def save(conn: kf.Connector, fn: kf.Stage, flow: kf.Flow, args: Any) -> str:
            stored.append((conn.get_metadata("client"), fn.name, args))
            return f"saved {args}"

        results: list[Any] = []

        @kf.faas("funcName2")
        def func_name2(flow: kf.Flow) -> None:
            conn = flow.get_connector()
            assert flow.get_conn_conf().key == "redis-key"
            for row in flow.input():
                results.append(conn.call(flow, row))
                flow.commit_row(row)

        conn_conf = kf.ConnConfig(
            cname="ConnName1", addrs="0.0.0.0:9988", type="redis", key="redis-key"
        )
        func = kf.FuncConfig(fname="funcName2", fmode="Save").with_connector(conn_conf)
        flow = kf.Flow(kf.FlowConfig(flow_name="flowName1")).link(func)
        assert inits == []  # kisflow initialises a connector at its flow's first run
        flow.run(["r1", "r2"])
        flow.run(["r3"])
        assert inits == ["ConnName1"]
        assert stored == [("fake-client", "funcName2", r) for r in ("r1", "r2", "r3")]
        assert results == ["saved r1", "saved r2", "saved r3"]
