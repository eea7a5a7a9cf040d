"""Big and hostile configs: linear linking and loading, YAML limits, keys given twice."""

from __future__ import annotations

import time
from pathlib import Path

import networkx as nx
import pytest

import kisflow as kf
from kisflow._pool import Pool


def cpu_seconds(fn: object) -> float:
    """The CPU time ``fn()`` takes (other processes on the machine do not count)."""
    start = time.process_time()
    fn()  # type: ignore[operator]
    return time.process_time() - start


class TestLinearLinking:
    """Linking n stages costs O(n) in all: no graph copy and re-sort per link."""

    def test_flow_builder_with_3000_stages_is_fast(self, pool: Pool) -> None:
        for i in range(10):
            kf.faas(f"f{i}", lambda flow: None)
        builder = kf.FlowBuilder("big")
        for i in range(3000):
            builder.calculate(f"f{i % 10}", {"i": i})
        flows: list[kf.Flow] = []
        # Quadratic linking took about 40 s here (1,000 stages: 5 s).
        assert cpu_seconds(lambda: flows.append(builder.build())) < 1.0
        flow = flows[0]
        assert len(flow.stages) == 3000
        assert [s.flow_params["i"] for s in flow.stages] == list(range(3000))
        assert [e.params["i"] for e in flow.config.flows] == list(range(3000))

    def test_the_chain_index_and_graph_follow_every_link(self, pool: Pool) -> None:
        kf.faas("a", lambda flow: flow.commit_row_batch(flow.input()))
        kf.faas("b", lambda flow: flow.commit_row_batch([r + 1 for r in flow.input()]))
        a = kf.FuncConfig(fname="a", fmode=kf.Mode.CALCULATE)
        b = kf.FuncConfig(fname="b", fmode=kf.Mode.CALCULATE)
        flow = kf.Flow("F").link(a).append_function(b)
        assert flow.run([1]).output == [2]
        handle = flow._d.functions[0]
        handle.set_metadata("runs", 3)
        graph_before = flow.graph
        flow.link(b, {"p": 1})
        assert flow.run([1]).output == [3]  # the plan was dropped and made again
        assert flow._d.functions[0] is handle  # metadata survives a link after it
        assert handle.get_metadata("runs") == 3
        assert [s.name for s in flow.stages] == ["a", "b", "b"]
        assert list(nx.topological_sort(flow.graph)) == list(flow.stages)
        s = flow.stages
        assert list(flow.graph.edges) == [(s[0], s[1]), (s[1], s[2])]
        assert len(graph_before) == 2  # a graph read before is not changed (copy on write)
        assert nx.is_frozen(flow.graph)
        assert [e.fname for e in flow.config.flows] == ["a", "b"]  # append_function records none
        assert flow._d.jump_index["b"] == (1, 2)
        assert flow.stages[2].name == "b"

    def test_a_second_config_under_a_name_is_refused_after_many_links(self, pool: Pool) -> None:
        a = kf.FuncConfig(fname="a", fmode=kf.Mode.CALCULATE)
        flow = kf.Flow("F")
        for _ in range(500):
            flow.link(a)
        with pytest.raises(kf.FlowDefinitionError, match="already has function 'a'"):
            flow.link(kf.FuncConfig(fname="a", fmode=kf.Mode.VERIFY))
        assert len(flow.stages) == 500

    def test_from_graph_then_link_keeps_the_graph_and_checks_every_config(
        self, pool: Pool
    ) -> None:
        a = kf.FuncConfig(fname="a", fmode=kf.Mode.CALCULATE)
        a2 = kf.FuncConfig(fname="a", fmode=kf.Mode.VERIFY)
        s1 = kf.Stage(id="func-1", config=a, flow_params={})
        s2 = kf.Stage(id="func-2", config=a2, flow_params={})
        graph = nx.DiGraph()
        graph.add_edge(s1, s2, label="kept")
        flow = kf.Flow.from_graph("G", graph)
        with pytest.raises(kf.FlowDefinitionError, match="already has function 'a'"):
            flow.link(a)  # a2 differs, as the old per-stage check found
        b = kf.FuncConfig(fname="b", fmode=kf.Mode.CALCULATE)
        flow.link(b)
        assert flow.graph.edges[s1, s2] == {"label": "kept"}
        assert [s.name for s in nx.topological_sort(flow.graph)] == ["a", "a", "b"]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
