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
from typing import Any

import cachetools
import networkx as nx

from kisflow.config import FlowConfig
from kisflow.deadletter import DeadLetterSink
from kisflow.errors import FlowCycleError, FlowShapeError, RunError
from kisflow.stage import Stage

__all__ = ["Definition", "after_run", "chain_order"]


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


class Definition:
    """The shared part of a flow; a ``Flow`` and the views of its runs point at one."""

    __slots__ = (
        "after_run",
        "cache",
        "cache_lock",
        "config",
        "dead_letters",
        "graph",
        "id",
        "jump_index",
        "lock",
        "max_steps",
        "metadata",
        "metadata_lock",
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
        self.jump_index = {k: tuple(v) for k, v in index.items()}
        self.plan = None

    def set_config(self, config: FlowConfig) -> None:
        """Replace the config (``link`` records functions in it)."""
        self.config = config
