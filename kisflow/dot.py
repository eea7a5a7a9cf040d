"""DOT export of a flow, produced through networkx's pydot support.

Each stage becomes a node named after its function (``name#2`` where a name repeats),
labelled with name, mode and row types (as ``kisflow._plan`` resolves the stage, so a
Save or Load served by its connector type shows that type's store); each mode has its
own shape and colour so a Save or a Verify stands out at a glance.
"""

from __future__ import annotations

import itertools
from typing import Any, Protocol

import networkx as nx

from kisflow._plan import is_default, stage_faas
from kisflow._pool import Pool
from kisflow.modes import Mode
from kisflow.rows import describe_type
from kisflow.stage import Stage


class Flow(Protocol):
    """What DOT export reads of a flow (``kisflow.Flow`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def stages(self) -> tuple[Stage, ...]: ...

    @property
    def pool(self) -> Pool: ...


__all__ = ["MODE_STYLE", "to_dot", "to_pydot_graph"]

MODE_STYLE: dict[Mode, dict[str, str]] = {
    Mode.VERIFY: {"shape": "diamond", "fillcolor": "#fff2cc"},
    Mode.SAVE: {"shape": "cylinder", "fillcolor": "#d5e8d4"},
    Mode.LOAD: {"shape": "cylinder", "fillcolor": "#dae8fc"},
    Mode.CALCULATE: {"shape": "box", "fillcolor": "#e1d5e7"},
    Mode.EXPAND: {"shape": "hexagon", "fillcolor": "#f8cecc"},
}
"""Node shape and fill colour per mode."""


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _types(flow: Flow, stage: Stage) -> tuple[str, str]:
    spec = stage_faas(flow.pool, stage)
    if spec is None:
        return "?", "?"
    if is_default(spec):
        conn = stage.config.conn
        store = f"{conn.type} {conn.key or conn.addrs}".strip() if conn is not None else "store"
        return ("input()", f"input() -> {store}") if stage.mode is Mode.SAVE else (store, "rows")
    sig = spec.signature
    rows_in = describe_type(sig.rows_type) if sig.takes_rows else "input()"
    rows_out = describe_type(sig.output_type) if sig.output_type is not None else "Any"
    return rows_in, rows_out


def node_names(flow: Flow) -> list[str]:
    """DOT node names, one per stage in order: the function name, ``name#k`` on repeats."""
    seen: dict[str, int] = {}
    names = []
    for stage in flow.stages:
        seen[stage.name] = seen.get(stage.name, 0) + 1
        names.append(stage.name if seen[stage.name] == 1 else f"{stage.name}#{seen[stage.name]}")
    return names


def to_pydot_graph(flow: Flow, extra_labels: list[str] | None = None) -> Any:
    """The flow as a ``pydot.Dot``; ``extra_labels`` adds one line per stage (figures)."""
    graph = nx.DiGraph()
    graph.graph["graph"] = {"rankdir": "LR", "label": _quote(flow.name), "labelloc": "t"}
    graph.graph["node"] = {"style": "filled", "fontname": "Helvetica"}
    names = node_names(flow)
    for i, (stage, node) in enumerate(zip(flow.stages, names, strict=True)):
        rows_in, rows_out = _types(flow, stage)
        label = f"{stage.name}\n{stage.mode.value} ({stage.mode.letter})\n{rows_in} -> {rows_out}"
        if extra_labels is not None:
            label += "\n" + extra_labels[i]
        graph.add_node(_quote(node), label=_quote(label), **MODE_STYLE[stage.mode])
    for a, b in itertools.pairwise(names):
        graph.add_edge(_quote(a), _quote(b))
    return nx.nx_pydot.to_pydot(graph)


def to_dot(flow: Flow) -> str:
    """The flow as DOT text."""
    return str(to_pydot_graph(flow).to_string())
