"""The Flow: a named chain of stages held in a networkx DiGraph, that runs.

A ``Flow`` is a definition (config, graph of frozen ``Stage`` nodes, metadata, cache,
dead-letter sinks, in a shared ``Definition``) that can be run any number of times,
from several threads at once: each ``run`` gets its own private state (``kisflow._run``)
and hands its FaaS a per-run view of the same definition (``kisflow._api.RunView``),
which offers ``input()``, ``commit_row``, ``next`` and the current-stage getters.
Execution order is the graph's topological order; anything but a single chain is
rejected. What runs each stage is resolved once, by ``kisflow._plan``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self

import networkx as nx
from loguru import logger

from kisflow import _pool
from kisflow._api import CommitRow, CommitRowBatch, FlowAPI, RunView
from kisflow._definition import Definition, chain_order
from kisflow._plan import Plan, is_default, plan_of, pool_of, run_plan
from kisflow._run import Run, check_batch, run_async, run_sync
from kisflow.columnar import is_frame
from kisflow.config import FlowConfig, FlowFunctionParam, FuncConfig
from kisflow.connector import Connector
from kisflow.deadletter import as_sink
from kisflow.dot import to_dot
from kisflow.errors import ConfigError, FlowDefinitionError
from kisflow.modes import Mode
from kisflow.options import DEFAULT as DEFAULT_OPTIONS
from kisflow.options import RunOptions, merge
from kisflow.result import RunEnd, RunResult
from kisflow.stage import Stage, new_stage_id
from kisflow.state import StateStore

if TYPE_CHECKING:
    from kisflow.checkpoint import Checkpoint
    from kisflow.executors.stream import AsyncStream, Stream
    from kisflow.sources._base import Source as SourceBase

__all__ = ["DEFAULT_MAX_STEPS", "Flow", "chain_order"]

DEFAULT_MAX_STEPS = 1000
"""Stage calls one run may make before ``FlowLoopError`` (jumps can loop forever)."""


class Flow(FlowAPI):
    """A flow of stages. Build it with ``FlowBuilder``, ``link`` or a YAML config folder.

    ``commit_row(row)`` and ``commit_row_batch(rows, copy=True)`` commit to the current
    stage's result inside a FaaS, whose flow is the run itself (``commit_row`` is then
    ``list.append`` on it: one C call). Outside a run they add to the source of the next
    ``run()``.
    """

    commit_row: CommitRow
    """Commit one row to the current stage's result (outside a run: to the next source)."""
    commit_row_batch: CommitRowBatch
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
        self._d = Definition(config, pool, max_steps)
        self._d.owner = self
        # Outside a run there is no current call; commits go to the next run's source.
        self._run = None
        self._source: list[Any] = []
        self.commit_row = self._source.append
        self.commit_row_batch = self._commit_source_batch

    def _commit_source_batch(self, rows: Iterable[Any], copy: bool = True) -> None:
        """Outside a run: add rows to the next run's source (always copied)."""
        if type(rows) is not list:
            check_batch(rows, self.name, None)
        self._source.extend(rows)

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

    # -- the definition -----------------------------------------------------------------

    @property
    def graph(self) -> nx.DiGraph:
        """The frozen DiGraph of ``Stage`` nodes."""
        return self._d.graph

    @property
    def enabled(self) -> bool:
        """Whether runs do anything (config ``status == 1``)."""
        return self._d.config.enabled

    @property
    def pool(self) -> _pool.Pool:
        """The pool this flow looks its FaaS up in."""
        return pool_of(self._d)

    @property
    def max_steps(self) -> int:
        """Stage calls one run may make before ``FlowLoopError`` (unless a run says)."""
        return self._d.max_steps

    @property
    def state_store(self) -> StateStore:
        """Every stage's saved state: keyed state (``flow.state()``) and open windows."""
        return self._d.state

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
                f"flow {d.flow_name!r}: link() takes a FuncConfig, got {type(func_config).__name__}"
            )
        flow_params = dict(params or {})
        with d.lock:
            for existing in d.configs_named(func_config.fname):  # one unless from_graph
                if existing == func_config:
                    continue
                raise FlowDefinitionError(
                    f"flow {d.flow_name!r} already has function {func_config.fname!r} with "
                    f"another config ({existing.fmode.value} vs "
                    f"{func_config.fmode.value}); one name, one function config",
                    flow=d.flow_name,
                )
            stage = Stage(
                id=new_stage_id(),
                config=func_config,
                flow_params=flow_params,
                connector=self._connector_for(func_config),
            )
            d.append_stage(stage)
            if record:
                d.record(FlowFunctionParam(fname=func_config.fname, params=flow_params))
        logger.debug("flow {!r}: linked {!r}", d.flow_name, func_config.fname)

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
        # Made now, initialised by its first use in a run (never at link/build/validate).
        return Connector(func_config.conn, pool=self._d.pool)

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

        Touches no connector: a connector initialises on its first use in a run.

        Raises:
            FlowDefinitionError: the flow has no stages.
            FunctionNotFoundError: a function has no FaaS registered.
            FlowTypeError: a stage's declared output does not fit the next stage's rows.
        """
        plan_of(self._d)

    def plan(self) -> Plan:
        """The flow resolved against its pool: what runs each stage (raises as ``validate``)."""
        return plan_of(self._d)

    # -- running ------------------------------------------------------------------------

    def run(
        self,
        rows: Iterable[Any] | None = None,
        options: RunOptions | None = None,
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
            options: the run's ``RunOptions`` (ctx, max_steps, dead_letters, observers);
                the keyword arguments below override its fields.
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
        if options is None and ctx is None and max_steps is None and dead_letters is None:
            if type(rows) is list:  # the common case: a list, no options, no connector
                d = self._d
                plan = run_plan(d)
                if plan is not None and not plan.connectors:
                    return run_sync(Run(d, plan, rows, DEFAULT_OPTIONS, d.max_steps))
            options = DEFAULT_OPTIONS
        else:
            options = merge(options, ctx=ctx, max_steps=max_steps, dead_letters=dead_letters)
        run = self._start(rows, options)
        if run is None:
            return self._disabled_result()
        return run_sync(run)

    async def arun(
        self,
        rows: Iterable[Any] | None = None,
        options: RunOptions | None = None,
        *,
        ctx: Any = None,
        max_steps: int | None = None,
        dead_letters: Any = None,
    ) -> RunResult:
        """Run the flow once on the running event loop (``await flow.arun(rows)``).

        Async FaaS are awaited, sync FaaS run in a thread so they never block the loop;
        arguments, result and errors are those of ``run``.
        """
        run = self._start(
            rows, merge(options, ctx=ctx, max_steps=max_steps, dead_letters=dead_letters)
        )
        if run is None:
            return self._disabled_result()
        return await run_async(run)

    def stream(
        self,
        source: Iterable[Any] | AsyncIterable[Any] | SourceBase,
        options: RunOptions | None = None,
        *,
        batch_size: int = 10_000,
        max_in_flight: int = 1,
        max_wait: float | None = None,
        idle_timeout: float | None = None,
        checkpoint: str | os.PathLike[str] | Checkpoint | None = None,
        delivery: str | None = None,
        ctx: Any = None,
        dead_letters: Any = None,
        max_steps: int | None = None,
        progress: bool | None = None,
        handle_sigint: bool = True,
    ) -> Stream:
        """Run the flow over ``source`` in micro-batches; iterate for each batch's result.

        ``source`` is a ``kisflow.sources`` source (durable: positions, resume) or any
        iterable, generator or async iterable (at most once). A batch holds up to
        ``batch_size`` records, or what came within ``max_wait`` seconds of its first;
        ``idle_timeout`` ends the stream once the source was empty that long (None: run
        until stopped or the source ends). With a ``checkpoint`` (a file path or a
        ``Checkpoint``) each batch's position is committed with its effects and a
        restart goes on after the last committed batch; ``delivery="exactly-once"``
        fails with ``DeliveryError`` before the first row when the flow cannot give it.
        Bad records and rejected rows go to ``dead_letters`` (else the flow's sink).
        Memory stays bounded by ``batch_size * max_in_flight`` records; Ctrl-C or
        ``stop()`` end the stream between batches. See docs/streaming.md.
        """
        from kisflow.executors.stream import Stream

        return Stream(
            self,
            source,
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            options=merge(options, ctx=ctx, max_steps=max_steps, dead_letters=dead_letters),
            progress=progress,
            handle_sigint=handle_sigint,
            max_wait=max_wait,
            idle_timeout=idle_timeout,
            checkpoint=checkpoint,
            delivery=delivery,
            record_sink=self._record_sink(options, dead_letters),
            saves=self._save_stages,
        )

    def astream(
        self,
        source: Iterable[Any] | AsyncIterable[Any] | SourceBase,
        options: RunOptions | None = None,
        *,
        batch_size: int = 10_000,
        max_in_flight: int = 1,
        max_wait: float | None = None,
        idle_timeout: float | None = None,
        checkpoint: str | os.PathLike[str] | Checkpoint | None = None,
        delivery: str | None = None,
        ctx: Any = None,
        dead_letters: Any = None,
        max_steps: int | None = None,
        progress: bool | None = None,
    ) -> AsyncStream:
        """The async form of ``stream``: ``async for result in flow.astream(source)``."""
        from kisflow.executors.stream import AsyncStream

        return AsyncStream(
            self,
            source,
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            options=merge(options, ctx=ctx, max_steps=max_steps, dead_letters=dead_letters),
            progress=progress,
            max_wait=max_wait,
            idle_timeout=idle_timeout,
            checkpoint=checkpoint,
            delivery=delivery,
            record_sink=self._record_sink(options, dead_letters),
            saves=self._save_stages,
        )

    def _record_sink(self, options: RunOptions | None, dead_letters: Any) -> Any:
        """Where a stream's bad source records go: its own sink, else the flow's."""
        if dead_letters is not None:
            return as_sink(dead_letters)
        if options is not None and options.dead_letters is not None:
            return options.dead_letters
        return self._d.dead_letters.get(None)

    def _save_stages(self) -> list[tuple[str, bool]]:
        """The Save stages as ``(name, joins the commit)``: a built-in store records
        batch keys with its rows; a FaaS joins only when registered ``joins_commit``."""
        plan = plan_of(self._d)
        return [
            (stage.name, is_default(spec) or spec.joins_commit)
            for stage, spec in zip(plan.stages, plan.specs, strict=True)
            if stage.mode is Mode.SAVE
        ]

    def _start(self, rows: Iterable[Any] | None, options: RunOptions) -> Run | None:
        """Create the private state of one run (None for a disabled flow)."""
        d = self._d
        plan = run_plan(d)
        if plan is None:
            return None
        max_steps = options.max_steps
        if max_steps is None:
            max_steps = d.max_steps
        elif max_steps < 1:
            raise FlowDefinitionError(
                f"flow {self.name!r}: max_steps must be at least 1, got {max_steps}",
                flow=self.name,
            )
        if plan.connectors:
            plan.init_connectors()  # once per flow definition: its first run
        if rows is None:
            source = self._source[:]
            self._source.clear()
        elif type(rows) is list:
            # Read in place: copying a big batch costs time and, the copy being new, a
            # garbage-collector pass over every row. A run never changes its source.
            source = rows
        elif is_frame(rows):
            # A DataFrame: the first stage gets it whole (docs/columnar.md).
            source = rows  # type: ignore[assignment]
        else:
            source = list(rows)
        return Run(d, plan, source, options, max_steps)

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

    # -- export -------------------------------------------------------------------------

    def to_dot(self) -> str:
        """The flow as DOT text: one node per stage with its name, mode and row types."""
        return to_dot(self)


# A FaaS's flow is a Flow: isinstance(view, kisflow.Flow) holds for the views of runs.
Flow.register(RunView)
