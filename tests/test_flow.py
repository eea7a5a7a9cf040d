"""Flow definitions and runs: graph shape, data layers, errors, concurrency, state APIs."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import networkx as nx
import pytest

import kisflow as kf
from kisflow.stage import Stage, new_stage_id


def _stage(name: str, mode: str = "Calculate") -> Stage:
    return Stage(id=new_stage_id(), config=kf.FuncConfig(fname=name, fmode=mode), flow_params={})


def _register_identity(*names: str) -> None:
    for name in names:

        def identity(flow: kf.Flow) -> None:
            flow.commit_row_batch(flow.input())

        kf.pool.faas(name, identity)


class TestGraphShape:
    """A flow is a single chain: cycles, branches and gaps are rejected clearly."""

    def test_chain_in_topological_order(self) -> None:
        a, b, c = _stage("A"), _stage("B"), _stage("C")
        graph = nx.DiGraph([(b, c), (a, b)])
        flow = kf.Flow.from_graph("g", graph)
        assert [s.name for s in flow.stages] == ["A", "B", "C"]
        assert isinstance(flow.graph, nx.DiGraph)
        assert nx.is_frozen(flow.graph)
        with pytest.raises(nx.NetworkXError):
            flow.graph.add_node(_stage("D"))

    def test_cycle_is_rejected(self) -> None:
        a, b = _stage("A"), _stage("B")
        with pytest.raises(
            kf.FlowCycleError, match=r"flow 'g' has a cycle \(A -> B\)|\(B -> A\)"
        ) as err:
            kf.Flow.from_graph("g", nx.DiGraph([(a, b), (b, a)]))
        assert err.value.flow == "g"
        assert isinstance(err.value, kf.FlowDefinitionError)

    def test_branch_is_rejected(self) -> None:
        a, b, c = _stage("A"), _stage("B"), _stage("C")
        with pytest.raises(kf.FlowShapeError, match=r"branches at stage 'A' \(0 in, 2 out\)"):
            kf.Flow.from_graph("g", nx.DiGraph([(a, b), (a, c)]))

    def test_join_is_rejected(self) -> None:
        a, b, c = _stage("A"), _stage("B"), _stage("C")
        with pytest.raises(kf.FlowShapeError, match=r"stage 'C' \(2 in, 0 out\)"):
            kf.Flow.from_graph("g", nx.DiGraph([(a, c), (b, c)]))

    def test_disconnected_is_rejected(self) -> None:
        graph = nx.DiGraph()
        graph.add_nodes_from([_stage("A"), _stage("B")])
        with pytest.raises(kf.FlowShapeError, match="not connected"):
            kf.Flow.from_graph("g", graph)

    def test_nodes_must_be_stages(self) -> None:
        with pytest.raises(kf.FlowDefinitionError, match="graph nodes must be Stage objects"):
            kf.Flow.from_graph("g", nx.DiGraph([("a", "b")]))

    def test_same_name_twice_gets_two_stage_ids(self) -> None:
        _register_identity("Inc")
        flow = kf.FlowBuilder("twice").calculate("Inc").calculate("Inc").build()
        ids = [s.id for s in flow.stages]
        assert len(set(ids)) == 2
        assert flow.run([1]).stage(ids[1]).calls == 1

    def test_same_name_with_another_config_is_rejected(self) -> None:
        _register_identity("Inc")
        with pytest.raises(
            kf.FlowDefinitionError, match="already has function 'Inc' with another config"
        ):
            kf.FlowBuilder("twice").calculate("Inc").verify("Inc").build()

    def test_stages_are_equal_by_id(self) -> None:
        a = _stage("A")
        same = Stage(
            id=a.id, config=kf.FuncConfig(fname="Other", fmode="Save"), flow_params={"x": 1}
        )
        assert a == same
        assert hash(a) == hash(same)
        assert a != _stage("A")


class TestDataLayers:
    """KisFlow's data-layer rules: what each stage sees and when a flow stops."""

    def test_stage_committing_nothing_stops_the_flow(self) -> None:
        calls: list[str] = []

        def drop(flow: kf.Flow) -> None:
            calls.append("drop")

        def after(flow: kf.Flow) -> None:
            calls.append("after")

        kf.pool.faas("drop", drop)
        kf.pool.faas("after", after)
        result = kf.FlowBuilder("f").verify("drop").expand("after").build().run([1, 2])
        assert calls == ["drop"]
        assert result.ended is kf.RunEnd.NO_ROWS
        assert result.stopped_at == "drop"
        assert result.output == []

    def test_empty_source_still_runs_the_first_stage(self) -> None:
        def load(flow: kf.Flow) -> None:
            assert flow.input() == []
            flow.commit_row_batch(["from", "store"])

        kf.pool.faas("load", load)
        _register_identity("sink")
        result = kf.FlowBuilder("f").load("load").expand("sink").build().run()
        assert result.output == ["from", "store"]
        assert result.ended is kf.RunEnd.COMPLETED

    def test_rows_committed_outside_a_run_form_the_next_source(self) -> None:
        _register_identity("id")
        flow = kf.FlowBuilder("f").calculate("id").build()
        flow.commit_row(1)
        flow.commit_row_batch([2, 3])
        assert flow.run().output == [1, 2, 3]
        assert flow.run().output == []

    def test_run_reads_a_given_list_in_place_and_never_returns_it(self) -> None:
        seen: list[bool] = []

        def reuse(flow: kf.Flow) -> None:
            seen.append(flow.input() is rows)
            flow.next(kf.actions.data_reuse)

        kf.pool.faas("reuse", reuse)
        rows = [1, 2]
        result = kf.FlowBuilder("f").calculate("reuse").calculate("reuse").build().run(rows)
        assert seen == [True, True]  # not copied: a big batch costs no copy
        assert result.output == [1, 2]
        assert result.output is not rows  # data_reuse passed it through: output is a copy
        result.output.append(3)
        assert rows == [1, 2]

    def test_run_reads_rows_from_any_iterable(self) -> None:
        kf.pool.faas("keep", lambda flow: flow.commit_row_batch(flow.input()))
        rows = (1, 2)
        result = kf.FlowBuilder("f").calculate("keep").build().run(r for r in rows)
        assert result.output == [1, 2]

    def test_disabled_flow_does_nothing(self) -> None:
        calls: list[int] = []
        kf.pool.faas("f", lambda flow: calls.append(1))
        flow = kf.FlowBuilder("off", status=0).calculate("f").build()
        result = flow.run([1])
        assert result.ended is kf.RunEnd.DISABLED
        assert (calls, result.output, result.steps, result.stages) == ([], [], 0, ())
        assert not flow.enabled

    def test_result_figures(self) -> None:
        def double(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(r * 2 for r in rows)
            flow.commit_row_batch(r * 2 + 1 for r in rows)

        kf.pool.faas("double", double)
        _register_identity("id")
        result = kf.FlowBuilder("f").calculate("double").expand("id").build().run([1, 2, 3])
        assert result.output == [2, 4, 6, 3, 5, 7]
        assert result.steps == 2
        assert [(s.name, s.mode, s.calls, s.rows_in, s.rows_out) for s in result.stages] == [
            ("double", kf.Mode.CALCULATE, 1, 3, 6),
            ("id", kf.Mode.EXPAND, 1, 6, 6),
        ]
        assert all(s.duration >= 0 for s in result.stages)
        assert result.duration >= sum(s.duration for s in result.stages)
        with pytest.raises(KeyError, match="no stage 'nope' in flow 'f'"):
            result.stage("nope")


class TestFaaSForms:
    """Async, generator and context-taking FaaS all run under the synchronous run()."""

    def test_async_generator_and_context(self) -> None:
        @kf.faas("agen", output=int)
        async def agen(ctx: dict[str, int], flow: kf.Flow, rows: list[int]) -> AsyncIterator[int]:
            await asyncio.sleep(0)
            for r in rows:
                yield r + ctx["add"]

        @kf.faas("gen")
        def gen(flow: kf.Flow, rows: list[int]) -> Iterator[int]:
            for r in rows:
                yield r * 10

        @kf.faas("coro")
        async def coro(flow: kf.Flow, rows: list[int]) -> None:
            await asyncio.sleep(0)
            flow.commit_row(sum(rows))

        flow = kf.FlowBuilder("forms").calculate("agen").calculate("gen").expand("coro").build()
        assert flow.run([1, 2], ctx={"add": 1}).output == [50]
        assert flow.run([0], ctx={"add": 5}).output == [50]

    def test_async_stage_inside_a_running_loop_points_to_arun(self) -> None:
        @kf.faas("coro")
        async def coro(flow: kf.Flow) -> None:
            flow.commit_row(1)

        flow = kf.FlowBuilder("f").calculate("coro").build()

        async def main() -> None:
            with pytest.raises(kf.RunError, match=r"use 'await flow\.arun\(\)'"):
                flow.run([1])

        asyncio.run(main())

    def test_returning_a_value_is_an_error(self) -> None:
        kf.pool.faas("bad", lambda flow: [1, 2])
        with pytest.raises(kf.StageExecutionError, match="must return None") as err:
            kf.FlowBuilder("f").calculate("bad").build().run([1])
        assert isinstance(err.value.__cause__, TypeError)


class TestErrors:
    """Errors name the flow and the stage, and chain the user's own exception."""

    def test_faas_exception_is_chained(self) -> None:
        def boom(flow: kf.Flow) -> None:
            raise ZeroDivisionError("bad maths")

        kf.pool.faas("boom", boom)
        _register_identity("ok")
        flow = kf.FlowBuilder("calc").verify("ok").calculate("boom").build()
        with pytest.raises(kf.StageExecutionError) as err:
            flow.run([1])
        assert (err.value.flow, err.value.stage, err.value.attempts) == ("calc", "boom", 1)
        assert isinstance(err.value.__cause__, ZeroDivisionError)
        assert str(err.value) == "flow 'calc' stage 'boom' raised ZeroDivisionError: bad maths"
        assert isinstance(err.value, kf.KisFlowError)

    def test_repeated_name_errors_carry_the_stage_id(self) -> None:
        def fail_second(flow: kf.Flow) -> None:
            if flow.get_this_function().id == flow.stages[1].id:
                raise ValueError("second")
            flow.commit_row_batch(flow.input())

        kf.pool.faas("twice", fail_second)
        flow = kf.FlowBuilder("rep").calculate("twice").calculate("twice").build()
        with pytest.raises(
            kf.StageExecutionError, match=f"stage 'twice' \\(stage {flow.stages[1].id}\\)"
        ):
            flow.run([1])

    def test_kisflow_errors_pass_through_with_a_note(self) -> None:
        def inner(flow: kf.Flow) -> None:
            flow.get_connector()

        kf.pool.faas("inner", inner)
        with pytest.raises(kf.ConnectorError, match="stage 'inner' has no connector") as err:
            kf.FlowBuilder("f").save("inner").build().run([1])
        assert "in flow 'f', stage 'inner'" in err.value.__notes__

    def test_faas_api_outside_a_run(self) -> None:
        _register_identity("id")
        flow = kf.FlowBuilder("f").calculate("id").build()
        for call in (flow.input, flow.get_this_function, lambda: flow.next(kf.actions.abort)):
            with pytest.raises(kf.RunError, match="only valid inside a FaaS"):
                call()

    def test_next_rejects_non_actions(self) -> None:
        kf.pool.faas("bad", lambda flow: flow.next("abort"))
        with pytest.raises(
            kf.RunError, match=r"next\(\) takes kisflow\.actions values, got 'abort'"
        ):
            kf.FlowBuilder("f").calculate("bad").build().run([1])

    def test_constructor_checks(self) -> None:
        with pytest.raises(kf.ConfigError, match="Flow\\(\\) takes a FlowConfig"):
            kf.Flow(42)  # type: ignore[arg-type]
        with pytest.raises(kf.FlowDefinitionError, match="max_steps must be at least 1"):
            kf.Flow("f", max_steps=0)
        with pytest.raises(kf.ConfigError, match="names connector 'c' but no ConnConfig is bound"):
            kf.Flow("f").link(kf.FuncConfig(fname="s", fmode="Save", option={"cname": "c"}))

    def test_replacing_a_faas_takes_effect_on_the_next_run(self) -> None:
        kf.pool.faas("f", lambda flow: flow.commit_row("old"))
        flow = kf.FlowBuilder("f").calculate("f").build()
        assert flow.run([1]).output == ["old"]
        kf.pool.faas("f", lambda flow: flow.commit_row("new"), replace=True)
        assert flow.run([1]).output == ["new"]


class TestConcurrency:
    """One built flow runs from 8 threads at once with no cross-talk."""

    def test_eight_threads(self) -> None:
        def tag(flow: kf.Flow, rows: list[int]) -> None:
            for r in rows:
                time.sleep(0)  # let other threads interleave mid-stage
                flow.commit_row((flow.get_func_param("tag"), r))

        def check(flow: kf.Flow) -> None:
            prev = flow.get_this_function()
            for row in flow.input():
                flow.commit_row(row)
                assert flow.get_this_function() is prev

        kf.pool.faas("tag", tag)
        kf.pool.faas("check", check)
        flow = kf.FlowBuilder("mt").calculate("tag", {"tag": "T"}).expand("check").build()
        errors: list[BaseException] = []
        outputs: dict[int, list[list[Any]]] = {}

        def worker(k: int) -> None:
            try:
                outputs[k] = [flow.run(range(k * 1000, k * 1000 + 50)).output for _ in range(20)]
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for k in range(8):
            expected = [("T", r) for r in range(k * 1000, k * 1000 + 50)]
            assert outputs[k] == [expected] * 20


class TestState:
    """Metadata, cache with TTL, config lookups: KisFlow's per-flow state."""

    def test_metadata_is_shared_across_runs(self) -> None:
        def count(flow: kf.Flow) -> None:
            flow.set_metadata("runs", (flow.get_metadata("runs") or 0) + 1)
            flow.commit_row(flow.get_metadata("runs"))

        kf.pool.faas("count", count)
        flow = kf.FlowBuilder("f").calculate("count").build()
        assert [flow.run([0]).output for _ in range(3)] == [[1], [2], [3]]
        assert flow.get_metadata("runs") == 3

    def test_cache_ttl(self) -> None:
        _register_identity("id")
        flow = kf.FlowBuilder("f").calculate("id").build()
        flow.set_cache("forever", 1)
        flow.set_cache("short", 2, ttl=0.05)
        flow.set_cache("delta", 3, ttl=timedelta(hours=1))
        assert (flow.get_cache("forever"), flow.get_cache("short"), flow.get_cache("delta")) == (
            1,
            2,
            3,
        )
        time.sleep(0.1)
        assert (flow.get_cache("forever"), flow.get_cache("short"), flow.get_cache("delta")) == (
            1,
            None,
            3,
        )
        assert flow.get_cache("missing") is None
        with pytest.raises(kf.RunError, match="cache ttl must be positive"):
            flow.set_cache("x", 1, ttl=0)

    def test_config_lookups_inside_a_faas(self) -> None:
        seen: dict[str, Any] = {}

        def look(flow: kf.Flow) -> None:
            seen["this"] = flow.get_this_func_conf().fname
            seen["other"] = flow.get_func_config_by_name("first")
            seen["none"] = flow.get_func_config_by_name("nope")
            seen["name"], seen["id"] = flow.get_name(), flow.get_id()

        _register_identity("first")
        kf.pool.faas("look", look)
        flow = (
            kf.FlowBuilder("lookups")
            .verify("first", source=kf.Source("orders", ["id"]))
            .expand("look")
            .build()
        )
        flow.run([1])
        assert seen["this"] == "look"
        assert seen["other"] == kf.FuncConfig(
            fname="first", fmode="Verify", source=kf.Source("orders", ("id",))
        )
        assert seen["none"] is None
        assert (seen["name"], seen["id"]) == ("lookups", flow.get_id())


class TestLimits:
    """Step limits and empty flows are checked, never silently turned into something else."""

    def test_max_steps_must_be_positive(self) -> None:
        _register_identity("A")
        with pytest.raises(kf.FlowDefinitionError, match="max_steps must be at least 1, got 0"):
            kf.FlowBuilder("f").calculate("A").max_steps(0)
        flow = kf.FlowBuilder("f").calculate("A").build()
        with pytest.raises(kf.FlowDefinitionError, match="max_steps must be at least 1, got 0"):
            flow.run([1], max_steps=0)

    def test_a_long_flow_past_the_limit_names_no_cycle(self) -> None:
        _register_identity("A", "B", "C")
        flow = kf.FlowBuilder("long").calculate("A").calculate("B").calculate("C").build()
        with pytest.raises(kf.FlowLoopError, match="without repeating a stage") as err:
            flow.run([1], max_steps=2)
        assert (err.value.cycle, err.value.stage, err.value.steps) == ((), "C", 2)
        assert flow.run([1], max_steps=3).output == [1]

    def test_a_flow_with_no_stages_refuses_to_run(self) -> None:
        flow = kf.Flow("empty")
        with pytest.raises(kf.FlowDefinitionError, match="has no stages, so a run would drop"):
            flow.run([1, 2])
        with pytest.raises(kf.FlowDefinitionError, match="has no stages"):
            kf.Flow.from_graph("g", nx.DiGraph()).validate()


class TestCommitBatchHandOver:
    """commit_row_batch copies by default; copy=False hands a fresh list over safely."""

    def test_default_copies_so_reusing_the_list_loses_nothing(self) -> None:
        def chunks(flow: kf.Flow) -> None:
            chunk: list[Any] = []
            for row in flow.input():
                chunk.append(row)
                if len(chunk) == 2:
                    flow.commit_row_batch(chunk)
                    chunk.clear()
            flow.commit_row_batch(chunk)

        kf.pool.faas("chunks", chunks)
        assert kf.FlowBuilder("f").calculate("chunks").build().run([1, 2, 3, 4, 5]).output == [
            1,
            2,
            3,
            4,
            5,
        ]

    def test_copy_false_adopts_a_fresh_list_and_keeps_order(self) -> None:
        handed: list[list[Any]] = []

        def hand_over(flow: kf.Flow) -> None:
            fresh = [r * 10 for r in flow.input()]
            handed.append(fresh)
            flow.commit_row_batch(fresh, copy=False)
            flow.commit_row("tail")
            flow.commit_row_batch(["more"], copy=False)  # buffer not empty: copied

        kf.pool.faas("hand", hand_over)
        result = kf.FlowBuilder("f").calculate("hand").build().run([1, 2])
        assert result.output == [10, 20, "tail", "more"]
        assert result.output is handed[0]

    def test_copy_false_never_adopts_the_stage_input(self) -> None:
        layers: list[list[Any]] = []

        def first(flow: kf.Flow) -> None:
            flow.commit_row_batch(flow.input(), copy=False)
            flow.commit_row("extra")
            layers.append(flow.input())

        kf.pool.faas("first", first)
        rows = [1, 2]
        result = kf.FlowBuilder("f").calculate("first").build().run(rows)
        assert result.output == [1, 2, "extra"]
        assert layers[0] == [1, 2]  # the input layer was not appended to
        assert rows == [1, 2]

    def test_a_retry_discards_a_handed_over_list(self) -> None:
        calls: list[int] = []

        def flaky(flow: kf.Flow) -> None:
            calls.append(1)
            flow.commit_row_batch([len(calls)], copy=False)
            if len(calls) == 1:
                raise OSError("once")

        kf.pool.faas("flaky", flaky)
        flow = kf.FlowBuilder("f").save("flaky", option=kf.FuncOption(retry_times=1)).build()
        assert flow.run([0]).output == [2]

    def test_committing_after_the_run_is_an_error(self) -> None:
        kept: list[kf.Flow] = []

        def keep(flow: kf.Flow) -> None:
            kept.append(flow)
            flow.commit_row(1)

        kf.pool.faas("keep", keep)
        kf.FlowBuilder("late").calculate("keep").build().run([0])
        with pytest.raises(kf.RunError, match="flow 'late': commit_row/commit_row_batch"):
            kept[0].commit_row(2)
        with pytest.raises(kf.RunError, match="after its run ended"):
            kept[0].commit_row_batch([2], copy=False)


class _Row:
    """A row that can be watched with a weak reference."""

    __slots__ = ("__weakref__", "n")

    def __init__(self, n: int) -> None:
        self.n = n


class TestLayersAreFreed:
    """A run's layers die with it, by reference counting, even if a FaaS kept its flow."""

    def _watched_run(self, keep: list[kf.Flow]) -> list[weakref.ref[_Row]]:
        refs: list[weakref.ref[_Row]] = []

        def make(flow: kf.Flow) -> None:
            for n in flow.input():
                row = _Row(n)
                refs.append(weakref.ref(row))
                flow.commit_row(row)

        def count(flow: kf.Flow) -> None:
            keep.append(flow)  # a FaaS that holds on to its flow after the run
            flow.commit_row(len(flow.input()))

        kf.pool.faas("Make", make)
        kf.pool.faas("Pass", lambda flow: flow.commit_row_batch(flow.input()))
        kf.pool.faas("Count", count)
        flow = kf.FlowBuilder("watched").calculate("Make").calculate("Pass").expand("Count")
        assert flow.build().run([1, 2, 3]).output == [3]
        return refs

    def test_rows_of_the_layers_are_freed_when_the_run_returns(self) -> None:
        kept: list[kf.Flow] = []
        gc.disable()  # freed by reference counting, not by a later collection
        try:
            refs = self._watched_run(kept)
            assert len(refs) == 3
            assert [r() for r in refs] == [None, None, None]
        finally:
            gc.enable()
        assert len(kept) == 1
        with pytest.raises(kf.RunError, match="only valid inside a FaaS"):
            kept[0].input()


class TestCommitRowBatchTakesBatches:
    """A str, bytes or a mapping is iterable but not a batch: KisFlow refuses it too."""

    @pytest.mark.parametrize("bad", ["ab", b"ab", bytearray(b"ab"), {"a": 1}])
    def test_inside_a_run(self, bad: object) -> None:
        @kf.faas("Bad")
        def bad_faas(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(bad)  # type: ignore[arg-type]

        flow = kf.FlowBuilder("b").calculate("Bad").build()
        with pytest.raises(kf.CommitError, match=r"flow 'b' stage 'Bad': commit_row_batch") as info:
            flow.run([1])
        assert isinstance(info.value, TypeError)
        assert (info.value.flow, info.value.stage) == ("b", "Bad")

    def test_on_the_flow_and_the_good_cases(self) -> None:
        @kf.faas("Id")
        def ident(flow: kf.Flow, rows: list[object]) -> None:
            flow.commit_row_batch(iter(rows))

        flow = kf.FlowBuilder("b").calculate("Id").build()
        with pytest.raises(kf.CommitError, match="got str"):
            flow.commit_row_batch("xyz")  # type: ignore[arg-type]
        flow.commit_row_batch(("xyz", {"a": 1}))
        assert flow.run().output == ["xyz", {"a": 1}]


class TestFunction:
    """get_this_function() is KisFlow's Function: metadata across runs, navigation."""

    def test_kisflow_counts_runs_with_function_metadata(self) -> None:
        printed: list[int] = []

        @kf.faas("Count")
        def count(flow: kf.Flow, rows: list[int]) -> None:
            fn = flow.get_this_function()
            n = (fn.get_metadata("runs") or 0) + 1
            fn.set_metadata("runs", n)
            printed.append(n)
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("c").calculate("Count").build()
        for _ in range(3):
            flow.run([1])
        assert printed == [1, 2, 3]
        assert flow.fork().run([1]).output == [1]
        assert printed == [1, 2, 3, 1]  # a fork's functions start afresh

    def test_navigation_and_identity(self) -> None:
        seen: dict[str, Any] = {}

        def probe(flow: kf.Flow, rows: list[int]) -> None:
            fn = flow.get_this_function()
            seen[fn.name] = (
                fn.get_prev_id(),
                fn.get_next_id(),
                None if fn.prev() is None else fn.prev().name,  # type: ignore[union-attr]
                None if fn.next() is None else fn.next().name,  # type: ignore[union-attr]
                fn.get_flow(),
                fn == flow.stages[fn.position],
                fn is flow.get_this_function(),
            )
            flow.commit_row_batch(rows)

        for name in ("A", "B", "C"):
            kf.faas(name, probe)
        flow = kf.FlowBuilder("n").calculate("A").calculate("B").calculate("C").build()
        flow.run([1])
        a, b, c = flow.stages
        assert seen["A"] == (None, b.id, None, "B", flow, True, True)
        assert seen["B"] == (a.id, c.id, "A", "C", flow, True, True)
        assert seen["C"] == (b.id, None, "B", None, flow, True, True)

    def test_metadata_from_eight_threads(self) -> None:
        @kf.faas("Tag")
        def tag(flow: kf.Flow, rows: list[int]) -> None:
            fn = flow.get_this_function()
            for r in rows:
                fn.set_metadata(f"row-{r}", r)
            flow.commit_row_batch(rows)

        @kf.faas("Seen")
        def seen(flow: kf.Flow, rows: list[int]) -> None:
            prev = flow.get_this_function().prev()
            assert prev is not None
            flow.commit_row(sum(prev.get_metadata(f"row-{i}") == i for i in range(800)))

        flow = kf.FlowBuilder("t").calculate("Tag").calculate("Seen").build()
        threads = [
            threading.Thread(target=flow.run, args=(list(range(k * 100, k * 100 + 100)),))
            for k in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert flow.run([0]).output == [800]
        with pytest.raises(kf.RunError, match="only valid inside a FaaS"):
            flow.get_this_function()


class TestTheFlowAFaaSReceives:
    """In a run the flow is the run itself, which is also the stage's result list: it
    still behaves as one object (identity, truth, repr) and its commits keep order."""

    def test_it_hashes_and_compares_by_identity_and_is_true_when_empty(self) -> None:
        seen: list[tuple[Any, ...]] = []

        def look(flow: kf.Flow) -> None:
            seen.append((bool(flow), flow == [], hash(flow) == hash(flow), {flow: 1}[flow]))
            seen.append((repr(flow), isinstance(flow, kf.Flow)))
            flow.commit_row("row")
            seen.append((flow == ["row"], bool(flow)))

        kf.pool.faas("look", look)
        kf.FlowBuilder("ident").calculate("look").build().run([0])
        assert seen[0] == (True, False, True, 1)
        shown, is_flow = seen[1]
        assert is_flow
        assert "'ident'" in shown
        assert shown.startswith("<kisflow run ")
        assert seen[2] == (False, True)

    def test_data_reuse_drops_what_the_stage_committed(self) -> None:
        def both(flow: kf.Flow) -> None:
            flow.commit_row("dropped")
            flow.next(kf.actions.data_reuse)

        def echo(flow: kf.Flow) -> None:
            flow.commit_row_batch(flow.input())

        kf.pool.faas("both", both)
        kf.pool.faas("echo", echo)
        result = kf.FlowBuilder("reuse").calculate("both").calculate("echo").build().run([1, 2])
        assert result.output == [1, 2]
        assert [(s.rows_in, s.rows_out) for s in result.stages] == [(2, 2), (2, 2)]

    def test_rows_after_a_hand_over_then_yielded_rows_keep_their_order(self) -> None:
        def mixed(flow: kf.Flow) -> Iterator[str]:
            flow.commit_row_batch(["a", "b"], copy=False)
            flow.commit_row("c")
            yield "d"

        kf.pool.faas("mixed", mixed)
        result = kf.FlowBuilder("order").calculate("mixed").build().run([0])
        assert result.output == ["a", "b", "c", "d"]

    def test_each_stage_starts_with_nothing_committed(self) -> None:
        sizes: list[int] = []

        def count_then_commit(flow: kf.Flow) -> None:
            sizes.append(len(flow.input()))
            for row in flow.input():
                flow.commit_row(row + 1)

        kf.pool.faas("inc", count_then_commit)
        flow = kf.FlowBuilder("layers").calculate("inc").calculate("inc").calculate("inc").build()
        assert flow.run([0, 0]).output == [3, 3]
        assert flow.run([5]).output == [8]
        assert sizes == [2, 2, 2, 1, 1, 1]
