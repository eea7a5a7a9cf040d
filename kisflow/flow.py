"""The Flow: a named chain of stages held in a networkx DiGraph, and the API a FaaS sees.

A ``Flow`` is a definition (config, graph of frozen ``Stage`` nodes, metadata, cache)
that can be run any number of times, from several threads at once: each ``run`` gets
its own private state. Inside a FaaS, the ``flow`` argument is a per-run view of the
same definition that also offers ``input()``, ``commit_row``, ``next`` and the
current-stage getters. Execution order is the graph's topological order; anything but a
single chain is rejected.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import time
import uuid
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Self

import attrs
import cachetools
import networkx as nx
from loguru import logger

from kisflow import _pool
from kisflow._pool import FaaSSpec
from kisflow._run import Run, after_run, run_sync
from kisflow._signature import Signature, read_signature
from kisflow.actions import Action
from kisflow.config import ConnConfig, FlowConfig, FlowFunctionParam, FuncConfig
from kisflow.connector import Connector
from kisflow.deadletter import DeadLetterSink, as_sink, sinks_for
from kisflow.dot import to_dot
from kisflow.errors import (
    ConfigError,
    ConnectorError,
    FlowCycleError,
    FlowDefinitionError,
    FlowShapeError,
    FlowTypeError,
    FunctionNotFoundError,
    RunError,
)
from kisflow.result import RunEnd, RunResult
from kisflow.rows import describe_type, type_fits
from kisflow.stage import Stage, new_stage_id

if TYPE_CHECKING:
    from kisflow import executors

__all__ = ["DEFAULT_MAX_STEPS", "Flow", "chain_order"]

DEFAULT_MAX_STEPS = 1000
"""Stage calls one run may make before ``FlowLoopError`` (jumps can loop forever)."""


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


def _ttl_seconds(ttl: float | timedelta | None) -> float:
    if ttl is None:
        return math.inf
    return ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)


def _builtin_faas(stage: Stage) -> FaaSSpec | None:
    """The default FaaS of a Save/Load stage on a built-in connector, if it is one."""
    from kisflow.connectors import default_faas

    fn = default_faas(stage)
    if fn is None:
        return None
    return FaaSSpec(name=stage.name, fn=fn, signature=_builtin_signature(fn))


@functools.cache
def _builtin_signature(fn: Callable[..., Any]) -> Signature:
    return read_signature(fn.__name__, fn)


@attrs.define(slots=True)
class _Plan:
    """The FaaS looked up for each stage, valid while the pool's version is unchanged."""

    pool: _pool.Pool
    version: int
    stages: tuple[Stage, ...]
    specs: tuple[FaaSSpec, ...]


class _Definition:
    """The shared, slowly changing part of a flow; views of a run point at the same one."""

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

    def __init__(self, config: FlowConfig, pool: _pool.Pool | None, max_steps: int) -> None:
        self.id = f"flow-{uuid.uuid4().hex}"
        self.config = config
        # What a view's commit_row/commit_row_batch become once its run has ended.
        self.after_run = functools.partial(after_run, config.flow_name)
        self.pool = pool
        self.max_steps = max_steps
        self.graph: nx.DiGraph = nx.freeze(nx.DiGraph())
        self.stages: tuple[Stage, ...] = ()
        self.jump_index: dict[str, tuple[int, ...]] = {}
        self.plan: _Plan | None = None
        self.lock = threading.Lock()
        self.metadata: dict[str, Any] = {}
        self.metadata_lock = threading.Lock()
        self.cache: cachetools.TLRUCache[str, tuple[Any, float]] = cachetools.TLRUCache(
            maxsize=math.inf, ttu=lambda _key, value, now: now + value[1], timer=time.monotonic
        )
        self.cache_lock = threading.Lock()
        self.dead_letters: dict[str | None, DeadLetterSink] = {}

    def set_graph(self, graph: nx.DiGraph) -> None:
        stages = chain_order(graph, self.config.flow_name)
        index: dict[str, list[int]] = {}
        for i, stage in enumerate(stages):
            index.setdefault(stage.name, []).append(i)
            index[stage.id] = [i]
        self.graph = nx.freeze(graph)
        self.stages = stages
        self.jump_index = {k: tuple(v) for k, v in index.items()}
        self.plan = None


class Flow:
    """A flow of stages. Build it with ``FlowBuilder``, ``link`` or a YAML config folder.

    ``commit_row(row)`` and ``commit_row_batch(rows, copy=True)`` are attributes, not
    methods: inside a FaaS ``commit_row`` is bound straight to the stage's result buffer,
    so committing a row costs one C call. Outside a run they add to the source of the
    next ``run()``.
    """

    _kisflow_flow_api: ClassVar[bool] = True

    commit_row: Callable[[Any], None]
    """Commit one row to the current stage's result (outside a run: to the next source)."""
    commit_row_batch: Callable[..., None]
    """Commit many rows at once (KisFlow's ``CommitRowBatch``): ``commit_row_batch(rows,
    copy=True)``; ``copy=False`` hands a list over without copying it (see concepts)."""

    def __init__(
        self,
        config: FlowConfig | str,
        *,
        pool: _pool.Pool | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
    ) -> None:
        if isinstance(config, str):
            config = FlowConfig(flow_name=config)
        if not isinstance(config, FlowConfig):
            raise ConfigError(f"Flow() takes a FlowConfig, got {type(config).__name__}")
        if max_steps < 1:
            raise FlowDefinitionError(
                f"max_steps must be at least 1, got {max_steps}", flow=config.flow_name
            )
        self._d = _Definition(config, pool, max_steps)
        self._init_state()

    def _init_state(self) -> None:
        self._ctx: Any = None
        self._run: Run | None = None
        self._stage: Stage | None = None
        self._input: list[Any] = []
        self._action: Action | None = None
        self._source: list[Any] = []
        self.commit_row = self._source.append
        self.commit_row_batch = self._commit_source_batch

    def _commit_source_batch(self, rows: Iterable[Any], copy: bool = True) -> None:
        """Outside a run: add rows to the next run's source (always copied)."""
        self._source.extend(rows)

    def _view(self, run: Run) -> Flow:
        """A view of this flow's definition bound to ``run`` (what a FaaS receives)."""
        view = object.__new__(_FlowView)
        view._d = self._d
        view._ctx = run.ctx
        view._run = run  # a cycle until Run.close() cuts it when the run ends
        view._stage = None
        view._input = run.source
        view._action = None
        view._source = []
        view.commit_row_batch = run.commit_batch
        return view

    @classmethod
    def from_graph(
        cls,
        config: FlowConfig | str,
        graph: nx.DiGraph,
        *,
        pool: _pool.Pool | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
    ) -> Flow:
        """Make a flow from a DiGraph of ``Stage`` nodes, which must form a single chain."""
        flow = cls(config, pool=pool, max_steps=max_steps)
        for node in graph.nodes:
            if not isinstance(node, Stage):
                raise FlowDefinitionError(
                    f"flow {flow.name!r}: graph nodes must be Stage objects, got {node!r}",
                    flow=flow.name,
                )
        flow._d.set_graph(nx.DiGraph(graph))
        return flow

    # -- identity -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The flow name."""
        return self._d.config.flow_name

    @property
    def id(self) -> str:
        """This flow's id (a fork gets a new one)."""
        return self._d.id

    @property
    def config(self) -> FlowConfig:
        """The flow's config, including the functions ``link`` recorded."""
        return self._d.config

    @property
    def graph(self) -> nx.DiGraph:
        """The frozen DiGraph of ``Stage`` nodes."""
        return self._d.graph

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The stages in execution (topological) order."""
        return self._d.stages

    @property
    def enabled(self) -> bool:
        """Whether runs do anything (config ``status == 1``)."""
        return self._d.config.enabled

    @property
    def pool(self) -> _pool.Pool:
        """The pool this flow looks its FaaS up in."""
        return self._d.pool if self._d.pool is not None else _pool.current()

    def get_name(self) -> str:
        """KisFlow's ``GetName``."""
        return self._d.config.flow_name

    def get_id(self) -> str:
        """KisFlow's ``GetId``."""
        return self._d.id

    def get_config(self) -> FlowConfig:
        """KisFlow's ``GetConfig``."""
        return self._d.config

    def __repr__(self) -> str:
        chain = " -> ".join(f"{s.name}[{s.mode.letter}]" for s in self._d.stages)
        return f"<Flow {self.name!r} {chain or '(empty)'}>"

    # -- building -----------------------------------------------------------------------

    def link(self, func_config: FuncConfig, params: Mapping[str, Any] | None = None) -> Self:
        """Append a function and record it in the flow config (KisFlow's ``Link``)."""
        self._append(func_config, params, record=True)
        return self

    def append_function(
        self, func_config: FuncConfig, params: Mapping[str, Any] | None = None
    ) -> Self:
        """Append a function without recording it (KisFlow's ``AppendNewFunction``)."""
        self._append(func_config, params, record=False)
        return self

    def _append(
        self, func_config: FuncConfig, params: Mapping[str, Any] | None, *, record: bool
    ) -> None:
        d = self._d
        if not isinstance(func_config, FuncConfig):
            raise ConfigError(
                f"flow {self.name!r}: link() takes a FuncConfig, got {type(func_config).__name__}"
            )
        flow_params = dict(params or {})
        with d.lock:
            for existing in d.stages:
                if existing.name == func_config.fname and existing.config != func_config:
                    raise FlowDefinitionError(
                        f"flow {self.name!r} already has function {func_config.fname!r} with "
                        f"another config ({existing.config.fmode.value} vs "
                        f"{func_config.fmode.value}); one name, one function config",
                        flow=self.name,
                    )
            stage = Stage(
                id=new_stage_id(),
                config=func_config,
                flow_params=flow_params,
                connector=self._connector_for(func_config),
            )
            graph = nx.DiGraph(d.graph)
            graph.add_node(stage)
            if d.stages:
                graph.add_edge(d.stages[-1], stage)
            d.set_graph(graph)
            if record:
                entry = FlowFunctionParam(fname=func_config.fname, params=flow_params)
                d.config = attrs.evolve(d.config, flows=(*d.config.flows, entry))
        logger.debug("flow {!r}: linked {!r}", self.name, func_config.fname)

    def _connector_for(self, func_config: FuncConfig) -> Connector | None:
        cname = func_config.option.cname
        if not cname:
            return None
        if func_config.conn is None:
            raise ConfigError(
                f"flow {self.name!r} function {func_config.fname!r} names connector {cname!r} "
                f"but no ConnConfig is bound; use func_config.with_connector(ConnConfig(...))",
                key="option.cname",
            )
        connector = Connector(func_config.conn, pool=self._d.pool)
        connector.init()
        return connector

    def fork(self) -> Flow:
        """A new flow (new id) with the same config, functions and params, and no data."""
        d = self._d
        new = type(self)(d.config, pool=d.pool, max_steps=d.max_steps)
        for stage in d.stages:
            new._append(stage.config, stage.flow_params, record=False)
        new._d.dead_letters = dict(d.dead_letters)
        return new

    def set_dead_letters(self, sink: Any, *, stage: str | None = None) -> Self:
        """Route rows this flow (or one ``stage``) cannot take to ``sink``; None removes it.

        ``sink`` is a list, a JSONL file path, a callable or an object with ``put(letter)``
        (see ``kisflow.deadletter``). A stage's own sink wins over ``run(dead_letters=)``,
        which wins over the flow's default.

        Raises:
            ConfigError: ``sink`` is not usable as a sink.
            FlowDefinitionError: no stage has that name or id.
        """
        if stage is not None and stage not in self._d.jump_index:
            known = ", ".join(repr(s.name) for s in self._d.stages)
            raise FlowDefinitionError(
                f"flow {self.name!r} has no stage {stage!r} to give a dead-letter sink; "
                f"stages are {known}",
                flow=self.name,
            )
        # Copy on write: runs starting in other threads read the table without a lock.
        table = dict(self._d.dead_letters)
        if sink is None:
            table.pop(stage, None)
        else:
            table[stage] = as_sink(sink)
        self._d.dead_letters = table
        return self

    # -- checking -----------------------------------------------------------------------

    def validate(self) -> None:
        """Check that every function has a FaaS and that adjacent row types fit.

        Raises:
            FunctionNotFoundError: a function has no FaaS registered.
            FlowTypeError: a stage's declared output does not fit the next stage's rows.
        """
        self._plan()

    def _plan(self) -> _Plan:
        d = self._d
        pool = d.pool if d.pool is not None else _pool.current()
        plan = d.plan
        if (
            plan is not None
            and plan.pool is pool
            and plan.version == pool.version
            and plan.stages is d.stages
        ):
            return plan
        stages = d.stages
        if not stages:
            raise FlowDefinitionError(
                f"flow {self.name!r} has no stages, so a run would drop its rows; link a "
                f"function first",
                flow=self.name,
            )
        specs: list[FaaSSpec] = []
        for stage in stages:
            spec = pool.get_faas(stage.name) or _builtin_faas(stage)
            if spec is None:
                raise FunctionNotFoundError(stage.name, flow=self.name)
            specs.append(spec)
        for (up, up_spec), (down, down_spec) in itertools.pairwise(zip(stages, specs, strict=True)):
            produced = up_spec.signature.output_type
            consumed = down_spec.signature.rows_type
            if produced is None or not down_spec.signature.takes_rows:
                continue
            if not type_fits(produced, consumed):
                raise FlowTypeError(
                    f"flow {self.name!r}: stage {up.name!r} outputs {describe_type(produced)} "
                    f"but stage {down.name!r} takes {describe_type(consumed)}; make the "
                    f"output= of {up.name!r} match the rows annotation of {down.name!r}",
                    flow=self.name,
                    upstream=up.name,
                    downstream=down.name,
                )
        plan = _Plan(pool=pool, version=pool.version, stages=stages, specs=tuple(specs))
        d.plan = plan
        return plan

    # -- running ------------------------------------------------------------------------

    def run(
        self,
        rows: Iterable[Any] | None = None,
        *,
        ctx: Any = None,
        max_steps: int | None = None,
        dead_letters: Any = None,
    ) -> RunResult:
        """Run the flow once and return its result.

        Args:
            rows: the source rows. Without them, the rows committed on this flow since
                the last run form the source (KisFlow's way; not thread-safe). Passing
                rows is the thread-safe way: one flow runs from many threads at once.
                A list is read in place, not copied (do not change it during the run):
                it is the first stage's ``input()``, kisflow never changes it, and
                ``output`` is never that list.
            ctx: passed as the first argument to every FaaS that takes a context.
            max_steps: stage calls allowed before ``FlowLoopError`` (default: the flow's).
            dead_letters: a dead-letter sink for this run (list, JSONL path, callable or
                sink): rows that fail conversion or are rejected go there and the run
                goes on. Stages with their own sink keep it (``set_dead_letters``).

        Raises:
            FunctionNotFoundError, FlowTypeError: before any stage runs.
            RowConversionError, StageExecutionError, ActionError, FlowLoopError: naming
                the flow and stage; the user's own exception is chained.
            RowRejectedError, DeadLetterError: a rejected row with no sink; a failing sink.
        """
        run = self._start(rows, ctx, max_steps, dead_letters=dead_letters)
        if run is None:
            return self._disabled_result()
        return run_sync(run)

    async def arun(
        self,
        rows: Iterable[Any] | None = None,
        *,
        ctx: Any = None,
        max_steps: int | None = None,
        dead_letters: Any = None,
    ) -> RunResult:
        """Run the flow once on the running event loop (``await flow.arun(rows)``).

        Async FaaS are awaited, sync FaaS run in a thread so they never block the loop;
        arguments, result and errors are those of ``run``.
        """
        from kisflow.executors._async import run_async

        run = self._start(rows, ctx, max_steps, dead_letters=dead_letters)
        if run is None:
            return self._disabled_result()
        return await run_async(run)

    def stream(
        self,
        source: Iterable[Any] | AsyncIterable[Any],
        *,
        batch_size: int = 10_000,
        max_in_flight: int = 1,
        ctx: Any = None,
        progress: bool | None = None,
        handle_sigint: bool = True,
    ) -> executors.Stream:
        """Run the flow over ``source`` in micro-batches; iterate for each batch's result.

        Memory stays bounded by ``batch_size * max_in_flight`` rows; Ctrl-C or ``stop()``
        end the stream between batches. See ``kisflow.executors.Stream``.
        """
        from kisflow.executors.stream import Stream

        return Stream(
            self,
            source,
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            ctx=ctx,
            progress=progress,
            handle_sigint=handle_sigint,
        )

    def astream(
        self,
        source: Iterable[Any] | AsyncIterable[Any],
        *,
        batch_size: int = 10_000,
        max_in_flight: int = 1,
        ctx: Any = None,
        progress: bool | None = None,
    ) -> executors.AsyncStream:
        """The async form of ``stream``: ``async for result in flow.astream(source)``."""
        from kisflow.executors.stream import AsyncStream

        return AsyncStream(
            self,
            source,
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            ctx=ctx,
            progress=progress,
        )

    def _start(
        self,
        rows: Iterable[Any] | None,
        ctx: Any,
        max_steps: int | None,
        *,
        dead_letters: Any = None,
    ) -> Run | None:
        """Create the private state of one run (None for a disabled flow)."""
        if not self._d.config.enabled:
            return None
        if max_steps is not None and max_steps < 1:
            raise FlowDefinitionError(
                f"flow {self.name!r}: max_steps must be at least 1, got {max_steps}",
                flow=self.name,
            )
        plan = self._plan()
        if rows is None:
            source = self._source[:]
            self._source.clear()
        elif type(rows) is list:
            # Read in place: copying a big batch costs time and, the copy being new, a
            # garbage-collector pass over every row. A run never changes its source.
            source = rows
        else:
            source = list(rows)
        return Run(
            self,
            plan.stages,
            plan.specs,
            self._d.jump_index,
            source,
            ctx,
            max_steps if max_steps is not None else self._d.max_steps,
            sinks=None
            if dead_letters is None and not self._d.dead_letters
            else sinks_for(
                plan.stages,
                self._d.dead_letters,
                as_sink(dead_letters) if dead_letters is not None else None,
            ),
        )

    def _disabled_result(self) -> RunResult:
        return RunResult(
            flow=self.name,
            output=[],
            ended=RunEnd.DISABLED,
            stopped_at=None,
            stages=(),
            steps=0,
            duration=0.0,
        )

    # -- the API a FaaS uses (valid inside a run) ----------------------------------------

    def _current(self) -> Stage:
        stage = self._stage
        if stage is None:
            raise RunError(
                f"flow {self.name!r}: this call is only valid inside a FaaS during a run",
                flow=self.name,
            )
        return stage

    def input(self) -> list[Any]:
        """The current stage's input rows (the previous stage's result layer)."""
        if self._stage is None:
            self._current()
        return self._input

    def next(self, *actions: Action) -> None:
        """Ask for actions after the current stage returns (see ``kisflow.actions``)."""
        if self._stage is None:
            self._current()
        merged = self._action
        for action in actions:
            if type(action) is not Action:
                raise RunError(
                    f"flow {self.name!r}: next() takes kisflow.actions values, got {action!r}",
                    flow=self.name,
                    stage=self._current().name,
                )
            # Actions are frozen values: the first one is kept as is, later ones combine.
            merged = action if merged is None else merged | action
        self._action = merged

    def dead_letter(self, row: Any, reason: str | BaseException = "rejected") -> None:
        """Reject ``row`` (a Verify stage's validation): it goes to the dead-letter sink.

        Rows rejected by an attempt that then fails and is retried are discarded with it.

        Raises:
            RowRejectedError: the stage has no dead-letter sink (nothing is lost silently).
        """
        self._current()
        if self._run is not None:
            self._run.reject(row, reason)

    def get_this_function(self) -> Stage:
        """The stage being run."""
        return self._current()

    def get_this_func_conf(self) -> FuncConfig:
        """The config of the stage being run."""
        return self._current().config

    def get_context(self) -> Any:
        """The ``ctx`` given to ``run`` (None when none was given)."""
        self._current()
        return self._ctx

    def get_func_config_by_name(self, name: str) -> FuncConfig | None:
        """The config of the function ``name`` in this flow, or None."""
        for stage in self._d.stages:
            if stage.name == name:
                return stage.config
        return None

    def get_func_param(self, key: str, default: Any = "") -> Any:
        """A param of the current stage ("" when absent, as KisFlow)."""
        return self._current().params.get(key, default)

    def get_func_param_all(self) -> dict[str, Any]:
        """All params of the current stage (defaults overridden by the flow's)."""
        return dict(self._current().params)

    def get_func_params_all_funcs(self) -> dict[str, dict[str, Any]]:
        """Params of every stage, by function name (by stage id where a name repeats)."""
        out: dict[str, dict[str, Any]] = {}
        for stage in self._d.stages:
            key = stage.name if stage.name not in out else stage.id
            out[key] = dict(stage.params)
        return out

    def get_connector(self) -> Connector:
        """The connector of the current stage.

        Raises:
            ConnectorError: the stage has no connector.
        """
        stage = self._current()
        if stage.connector is None:
            raise ConnectorError(
                f"flow {self.name!r} stage {stage.name!r} has no connector; "
                f"set option.cname and bind a ConnConfig",
            )
        return stage.connector

    def get_conn_conf(self) -> ConnConfig:
        """The connector config of the current stage."""
        return self.get_connector().config

    # -- metadata and cache (shared by every run of this flow) --------------------------

    def get_metadata(self, key: str) -> Any:
        """A value stored on this flow, or None (thread-safe)."""
        with self._d.metadata_lock:
            return self._d.metadata.get(key)

    def set_metadata(self, key: str, value: Any) -> None:
        """Store a value on this flow; it outlives runs (thread-safe)."""
        with self._d.metadata_lock:
            self._d.metadata[key] = value

    def get_cache(self, key: str) -> Any:
        """A cached value, or None once missing or expired (thread-safe)."""
        with self._d.cache_lock:
            entry = self._d.cache.get(key)
        return None if entry is None else entry[0]

    def set_cache(self, key: str, value: Any, ttl: float | timedelta | None = None) -> None:
        """Cache a value for ``ttl`` seconds (or a timedelta); None keeps it until replaced."""
        seconds = _ttl_seconds(ttl)
        if seconds <= 0:
            raise RunError(
                f"flow {self.name!r}: cache ttl must be positive, got {ttl!r}", flow=self.name
            )
        with self._d.cache_lock:
            self._d.cache[key] = (value, seconds)

    # -- export -------------------------------------------------------------------------

    def to_dot(self) -> str:
        """The flow as DOT text: one node per stage with its name, mode and row types."""
        return to_dot(self)


class _FlowView(Flow):
    """The ``flow`` a FaaS receives: the same definition, bound to one run.

    Slotted so that making one per run and rebinding ``commit_row`` per stage stay cheap.
    """

    __slots__ = (
        "_action",
        "_ctx",
        "_d",
        "_input",
        "_run",
        "_source",
        "_stage",
        "commit_row",
        "commit_row_batch",
    )
