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

import attrs
import cachetools
import networkx as nx

from kisflow.config import FlowConfig, FlowFunctionParam, FuncConfig
from kisflow.deadletter import DeadLetterSink
from kisflow.errors import FlowCycleError, FlowShapeError, RunError
from kisflow.stage import Stage
from kisflow.state import StateStore

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
    """The shared part of a flow; a ``Flow`` and the views of its runs point at one.

    ``stages``, ``functions``, ``jump_index``, ``graph`` and ``config`` are published
    whole (copy on write). ``append_stage`` and ``record`` only queue what they add, and
    the next read publishes it at once, so linking n stages costs O(n) in all, not a
    copy and a re-sort of the chain per link.
    """

    __slots__ = (
        "_config",
        "_configs",
        "_functions",
        "_graph",
        "_graph_size",
        "_jump_index",
        "_pending",
        "_recorded",
        "_stages",
        "after_run",
        "cache",
        "cache_lock",
        "dead_letters",
        "id",
        "lock",
        "max_steps",
        "metadata",
        "metadata_lock",
        "owner",
        "plan",
        "pool",
        "state",
    )

    def __init__(self, config: FlowConfig, pool: Any, max_steps: int) -> None:
        self.id = f"flow-{uuid.uuid4().hex}"
        self._config = config
        self._recorded: list[FlowFunctionParam] = []
        """Entries ``record`` queued for ``config.flows``, published on the next read."""
        # What a view's commit_row/commit_row_batch become once its run has ended.
        self.after_run = functools.partial(after_run, config.flow_name)
        self.pool: Any = pool
        """The flow's own ``kisflow._pool.Pool``, or None for the current pool."""
        self.max_steps = max_steps
        self._graph: nx.DiGraph = nx.freeze(nx.DiGraph())
        self._graph_size = 0
        """How many of ``stages`` (the first ones) ``_graph`` holds."""
        self._stages: tuple[Stage, ...] = ()
        self._functions: tuple[Function, ...] = ()
        self._jump_index: dict[str, tuple[int, ...]] = {}
        self._pending: list[Stage] = []
        """Stages ``append_stage`` queued after ``_stages``, published on the next read."""
        self._configs: dict[str, list[FuncConfig]] = {}
        """The distinct configs of the stages of each name, published or queued."""
        self.owner: Any = None
        """The ``Flow`` this definition belongs to (``Function.get_flow``)."""
        self.plan: Any = None
        """The cached ``kisflow._plan.Plan`` (``_plan`` owns it; None until first needed)."""
        # Reentrant: a read inside a link (under the lock) publishes what is queued.
        self.lock = threading.RLock()
        self.metadata: dict[str, Any] = {}
        self.metadata_lock = threading.Lock()
        self.cache: cachetools.TLRUCache[str, tuple[Any, float]] = cachetools.TLRUCache(
            maxsize=math.inf, ttu=lambda _key, value, now: now + value[1], timer=time.monotonic
        )
        self.cache_lock = threading.Lock()
        self.dead_letters: dict[str | None, DeadLetterSink] = {}
        self.state = StateStore()
        """The stages' keyed state and open windows (``flow.state()``, kisflow.windows)."""

    # -- the chain, published on read ------------------------------------------------------

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The chain of stages, in execution order."""
        if self._pending:
            self._publish()
        return self._stages

    @property
    def functions(self) -> tuple[Function, ...]:
        """One ``Function`` handle per stage, in order."""
        if self._pending:
            self._publish()
        return self._functions

    @property
    def jump_index(self) -> dict[str, tuple[int, ...]]:
        """Stage name or id -> the positions of the stages it names."""
        if self._pending:
            self._publish()
        return self._jump_index

    @property
    def graph(self) -> nx.DiGraph:
        """The frozen DiGraph of the chain (made on read after appends)."""
        stages = self.stages
        if self._graph_size < len(stages):
            with self.lock:
                stages = self.stages
                if self._graph_size < len(stages):
                    graph = nx.DiGraph(self._graph)
                    new = stages[self._graph_size :]
                    graph.add_nodes_from(new)
                    start = self._graph_size - 1 if self._graph_size else 0
                    graph.add_edges_from(itertools.pairwise(stages[start:]))
                    self._graph = nx.freeze(graph)
                    self._graph_size = len(stages)
        return self._graph

    @property
    def config(self) -> FlowConfig:
        """The flow config, with every function ``link`` recorded in ``flows``."""
        if self._recorded:
            with self.lock:
                if self._recorded:
                    flows = (*self._config.flows, *self._recorded)
                    self._config = attrs.evolve(self._config, flows=flows)
                    self._recorded = []
        return self._config

    @property
    def flow_name(self) -> str:
        """The flow's name (recording functions never changes it; reads publish nothing)."""
        return self._config.flow_name

    def configs_named(self, name: str) -> list[FuncConfig]:
        """The distinct configs of the stages named ``name`` (published or queued).

        ``link`` keeps one config per name, so this is one config at most, unless
        ``Flow.from_graph`` was given more: O(1) per link either way.
        """
        return self._configs.get(name, [])

    @staticmethod
    def _add_config(configs: dict[str, list[FuncConfig]], stage: Stage) -> None:
        known = configs.setdefault(stage.name, [])
        if stage.config not in known:
            known.append(stage.config)

    def _publish(self) -> None:
        """Fold the queued stages into the published tuples and index (one copy each)."""
        with self.lock:
            pending = self._pending
            if not pending:
                return
            start = len(self._stages)
            index = {k: list(v) for k, v in self._jump_index.items()}
            functions = list(self._functions)
            for i, stage in enumerate(pending, start):
                index.setdefault(stage.name, []).append(i)
                index[stage.id] = [i]
                functions.append(Function(self, i, stage))
            # Published in the order the unlocked readers check them: _pending last.
            self._stages = (*self._stages, *pending)
            self._functions = tuple(functions)
            self._jump_index = {k: tuple(v) for k, v in index.items()}
            self._pending = []

    # -- changing it ---------------------------------------------------------------------------

    def append_stage(self, stage: Stage) -> None:
        """Add ``stage`` after the last one in O(1); the next read publishes it, plan dropped."""
        with self.lock:
            self._pending.append(stage)
            self._add_config(self._configs, stage)
            self.plan = None

    def set_graph(self, graph: nx.DiGraph) -> None:
        """Replace the chain (checked to be one), its name/id index and drop the plan."""
        stages = chain_order(graph, self.config.flow_name)
        index: dict[str, list[int]] = {}
        configs: dict[str, list[FuncConfig]] = {}
        for i, stage in enumerate(stages):
            index.setdefault(stage.name, []).append(i)
            index[stage.id] = [i]
            self._add_config(configs, stage)
        with self.lock:
            old = {f.stage.id: f for f in self.functions}
            functions = []
            for i, stage in enumerate(stages):
                kept = old.get(stage.id)
                if kept is not None and kept.position == i:
                    functions.append(kept)  # its metadata survives a link after it
                else:
                    functions.append(Function(self, i, stage))
            self._graph = nx.freeze(graph)
            self._graph_size = len(stages)
            self._stages = stages
            self._functions = tuple(functions)
            self._jump_index = {k: tuple(v) for k, v in index.items()}
            self._configs = configs
            self.plan = None

    def record(self, entry: FlowFunctionParam) -> None:
        """Add ``entry`` to ``config.flows`` (``link`` records functions) in O(1)."""
        with self.lock:
            self._recorded.append(entry)

    def set_config(self, config: FlowConfig) -> None:
        """Replace the config (and drop what ``record`` queued)."""
        with self.lock:
            self._config = config
            self._recorded = []
