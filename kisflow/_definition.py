"""A flow's definition: the shared, slowly changing part every run of the flow reads.

``Definition`` holds the config, the frozen chain of stages, the step limit, the flow's
metadata and cache, its dead-letter sinks and the cached plan. A ``Flow`` and every
per-run view of it point at the same ``Definition``; runs never write to it except
through its locks (metadata, cache) or by replacing whole values (copy on write).
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import cachetools
import networkx as nx

from kisflow.config import FlowConfig, FuncConfig
from kisflow.deadletter import DeadLetterSink
from kisflow.errors import FlowCycleError, FlowShapeError, RunError
from kisflow.stage import Stage

if TYPE_CHECKING:
    from kisflow.connector import Connector
    from kisflow.modes import Mode

__all__ = ["Definition", "Function", "after_run", "chain_order"]


def chain_order(graph: nx.DiGraph, flow: str) -> tuple[Stage, ...]:
    """The stages of ``graph`` in execution order, checking it is one single chain.

    Raises:
        FlowCycleError: the graph has a cycle.
        FlowShapeError: a stage branches or joins, or the graph is not connected.
    """
    try:
        order: list[Stage] = list(nx.topological_sort(graph))
    except nx.NetworkXUnfeasible as exc:
        cycle = " -> ".join(s.name for s, _ in nx.find_cycle(graph))
        raise FlowCycleError(
            f"flow {flow!r} has a cycle ({cycle}); a flow is a single chain of stages "
            f"(loop with actions.jump_func instead)",
            flow=flow,
        ) from exc
    for stage in order:
        if graph.out_degree(stage) > 1 or graph.in_degree(stage) > 1:
            raise FlowShapeError(
                f"flow {flow!r} branches at stage {stage.name!r} "
                f"({graph.in_degree(stage)} in, {graph.out_degree(stage)} out); "
                f"a flow is a single chain of stages",
                flow=flow,
            )
    for a, b in itertools.pairwise(order):
        if not graph.has_edge(a, b):
            raise FlowShapeError(
                f"flow {flow!r} is not connected: nothing leads from stage {a.name!r} to "
                f"stage {b.name!r}; a flow is a single chain of stages",
                flow=flow,
            )
    return tuple(order)


def after_run(flow: str, *_args: Any, **_kwargs: Any) -> None:
    """What ``commit_row``/``commit_row_batch`` of a FaaS's flow do once its run ended."""
    raise RunError(
        f"flow {flow!r}: commit_row/commit_row_batch were called on a FaaS's flow after "
        f"its run ended; commit inside the FaaS, or on the flow itself before run()",
        flow=flow,
    )


class Function:
    """KisFlow's Function: one stage of one flow definition, as a FaaS sees it.

    ``flow.get_this_function()`` returns it. It reads like the ``Stage`` it wraps (``id``,
    ``name``, ``mode``, ``config``, ``params``, ``connector``, ``get_id()``,
    ``get_config()``; it compares equal to that stage) and adds what KisFlow's Function
    has: metadata kept across the flow's runs (thread-safe), ``prev()``/``next()`` and
    their ids, and ``get_flow()``. One handle per stage and definition: a fork has its own.
    """

    __slots__ = ("_d", "_lock", "_metadata", "position", "stage")

    def __init__(self, d: Definition, position: int, stage: Stage) -> None:
        self._d = d
        self.position = position
        """The stage's index in the flow's chain."""
        self.stage = stage
        self._metadata: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- the stage it wraps ---------------------------------------------------------------

    @property
    def id(self) -> str:
        """The stage id (``func-<uuid>``)."""
        return self.stage.id

    @property
    def name(self) -> str:
        """The function name (``fname``)."""
        return self.stage.name

    @property
    def mode(self) -> Mode:
        """The function mode."""
        return self.stage.mode

    @property
    def config(self) -> FuncConfig:
        """The function config."""
        return self.stage.config

    @property
    def params(self) -> Mapping[str, Any]:
        """The effective params (defaults overridden by the flow's)."""
        return self.stage.params

    @property
    def flow_params(self) -> Mapping[str, Any]:
        """The params the flow gives this function."""
        return self.stage.flow_params

    @property
    def connector(self) -> Connector | None:
        """The stage's connector, if it has one."""
        return self.stage.connector

    def get_id(self) -> str:
        """KisFlow's ``GetId``."""
        return self.stage.id

    def get_config(self) -> FuncConfig:
        """KisFlow's ``GetConfig``."""
        return self.stage.config

    # -- what KisFlow's Function adds -------------------------------------------------------

    def get_metadata(self, key: str) -> Any:
        """A value stored on this function, or None; kept across the flow's runs."""
        with self._lock:
            return self._metadata.get(key)

    def set_metadata(self, key: str, value: Any) -> None:
        """Store a value on this function (thread-safe); the next runs see it."""
        with self._lock:
            self._metadata[key] = value

    def prev(self) -> Function | None:
        """The function before this one in the chain, or None for the first."""
        return self._d.functions[self.position - 1] if self.position > 0 else None

    def next(self) -> Function | None:
        """The function after this one in the chain, or None for the last."""
        functions = self._d.functions
        return functions[self.position + 1] if self.position + 1 < len(functions) else None

    def get_prev_id(self) -> str | None:
        """KisFlow's ``GetPrevId``: the previous function's id, or None."""
        prev = self.prev()
        return None if prev is None else prev.id

    def get_next_id(self) -> str | None:
        """KisFlow's ``GetNextId``: the next function's id, or None."""
        nxt = self.next()
        return None if nxt is None else nxt.id

    def get_flow(self) -> Any:
        """KisFlow's ``GetFlow``: the flow (the definition) this function belongs to."""
        return self._d.owner

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Function):
            return other.stage == self.stage
        if isinstance(other, Stage):
            return other == self.stage
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.stage)

    def __repr__(self) -> str:
        return f"<Function {self.name!r} [{self.mode.letter}] {self.id}>"


class Definition:
    """The shared part of a flow; a ``Flow`` and the views of its runs point at one."""

    __slots__ = (
        "after_run",
        "cache",
        "cache_lock",
        "config",
        "dead_letters",
        "functions",
        "graph",
        "id",
        "jump_index",
        "lock",
        "max_steps",
        "metadata",
        "metadata_lock",
        "owner",
        "plan",
        "pool",
        "stages",
    )

    def __init__(self, config: FlowConfig, pool: Any, max_steps: int) -> None:
        self.id = f"flow-{uuid.uuid4().hex}"
        self.config = config
        # What a view's commit_row/commit_row_batch become once its run has ended.
        self.after_run = functools.partial(after_run, config.flow_name)
        self.pool: Any = pool
        """The flow's own ``kisflow._pool.Pool``, or None for the current pool."""
        self.max_steps = max_steps
        self.graph: nx.DiGraph = nx.freeze(nx.DiGraph())
        self.stages: tuple[Stage, ...] = ()
        self.functions: tuple[Function, ...] = ()
        """One ``Function`` handle per stage, in order."""
        self.owner: Any = None
        """The ``Flow`` this definition belongs to (``Function.get_flow``)."""
        self.jump_index: dict[str, tuple[int, ...]] = {}
        self.plan: Any = None
        """The cached ``kisflow._plan.Plan`` (``_plan`` owns it; None until first needed)."""
        self.lock = threading.Lock()
        self.metadata: dict[str, Any] = {}
        self.metadata_lock = threading.Lock()
        self.cache: cachetools.TLRUCache[str, tuple[Any, float]] = cachetools.TLRUCache(
            maxsize=math.inf, ttu=lambda _key, value, now: now + value[1], timer=time.monotonic
        )
        self.cache_lock = threading.Lock()
        self.dead_letters: dict[str | None, DeadLetterSink] = {}

    def set_graph(self, graph: nx.DiGraph) -> None:
        """Replace the chain (checked to be one), its name/id index and drop the plan."""
        stages = chain_order(graph, self.config.flow_name)
        index: dict[str, list[int]] = {}
        for i, stage in enumerate(stages):
            index.setdefault(stage.name, []).append(i)
            index[stage.id] = [i]
        self.graph = nx.freeze(graph)
        self.stages = stages
        old = {f.stage.id: f for f in self.functions}
        functions = []
        for i, stage in enumerate(stages):
            kept = old.get(stage.id)
            if kept is not None and kept.position == i:
                functions.append(kept)  # its metadata survives a link after it
            else:
                functions.append(Function(self, i, stage))
        self.functions = tuple(functions)
        self.jump_index = {k: tuple(v) for k, v in index.items()}
        self.plan = None

    def set_config(self, config: FlowConfig) -> None:
        """Replace the config (``link`` records functions in it)."""
        self.config = config
