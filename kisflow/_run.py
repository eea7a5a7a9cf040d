"""One run's state and the loop that carries it out.

A ``Run`` is created per ``Flow.run`` call and owns everything that changes during the
run (source and result layers, the current stage, the pending action, step count and
figures), so one Flow definition runs from many threads at once without cross-talk.
The loop is split into ``begin`` (prepare the stage and its arguments) and ``end``
(apply the data-layer rules and actions), so sync and async drivers share it.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kisflow._pool import FaaSSpec
from kisflow._signature import CallKind
from kisflow.errors import (
    ActionError,
    FlowLoopError,
    KisFlowError,
    RowConversionError,
    RunError,
    StageExecutionError,
)
from kisflow.result import RunEnd, RunResult
from kisflow.rows import RowConversionFailure, describe_type
from kisflow.stage import Stage

if TYPE_CHECKING:
    from kisflow.flow import Flow

__all__ = ["Run", "run_sync"]


class Run:
    """The private state of one run of a flow."""

    __slots__ = (
        "_calls",
        "_durations",
        "_rows_in",
        "_rows_out",
        "_runner",
        "_started",
        "buffer",
        "ctx",
        "ended",
        "flow_name",
        "input",
        "jump_index",
        "layers",
        "max_steps",
        "n",
        "output",
        "pos",
        "source",
        "specs",
        "stages",
        "steps",
        "stopped_at",
        "trace",
        "trace_from",
        "view",
    )

    def __init__(
        self,
        flow: Flow,
        stages: Sequence[Stage],
        specs: Sequence[FaaSSpec],
        jump_index: Mapping[str, tuple[int, ...]],
        source: list[Any],
        ctx: Any,
        max_steps: int,
    ) -> None:
        n = len(stages)
        self.flow_name = flow.name
        self.stages = stages
        self.specs = specs
        self.jump_index = jump_index
        self.source = source
        self.ctx = ctx
        self.max_steps = max_steps
        self.layers: list[list[Any] | None] = [None] * n
        self.pos = 0
        self.steps = 0
        self.n = n
        # Positions are only recorded near the step limit, to name the cycle if it is hit.
        self.trace: collections.deque[int] | None = None
        self.trace_from = max_steps - (4 * n + 4)
        self.buffer: list[Any] = []
        self.input: list[Any] = source
        self.output: list[Any] = []
        self.ended = RunEnd.COMPLETED
        self.stopped_at: str | None = None
        self._calls = [0] * n
        self._rows_in = [0] * n
        self._rows_out = [0] * n
        self._durations = [0.0] * n
        self._runner: asyncio.Runner | None = None
        self._started = time.perf_counter()
        self.view = flow._view(self)

    # -- the two halves of a step --------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether the run has ended (drivers loop ``while not run.done``)."""
        return self.pos >= self.n

    def begin(self) -> tuple[FaaSSpec, tuple[Any, ...]]:
        """Prepare the current stage (``not done``); return its FaaS and call arguments."""
        pos = self.pos
        self.steps += 1
        if self.steps > self.trace_from:
            if self.steps > self.max_steps:
                raise self._loop_error()
            if self.trace is None:
                self.trace = collections.deque(maxlen=4 * self.n + 4)
            self.trace.append(pos)
        stage = self.stages[pos]
        spec = self.specs[pos]
        if pos == 0:
            inp = self.source
        else:
            prev = self.layers[pos - 1]
            inp = prev if prev is not None else []
        self.input = inp
        buf: list[Any] = []
        self.buffer = buf
        view = self.view
        view._stage = stage
        view._input = inp
        view._action = None
        view.commit_row = buf.append
        view.commit_row_batch = buf.extend
        sig = spec.signature
        args: tuple[Any, ...]
        if sig.takes_rows:
            rows: Any = inp
            if sig.rows is not None:
                try:
                    rows = sig.rows.convert(inp)
                except RowConversionFailure as bad:
                    raise RowConversionError(
                        f"flow {self.flow_name!r} stage {self.label(pos)}: row {bad.index} "
                        f"cannot be converted to {describe_type(sig.rows_type)}: {bad.cause}; "
                        f"row was {bad.row!r}"[:2000],
                        flow=self.flow_name,
                        stage=stage.name,
                        row_index=bad.index,
                        row=bad.row,
                    ) from bad.cause
            args = (self.ctx, view, rows) if sig.takes_ctx else (view, rows)
        else:
            args = (self.ctx, view) if sig.takes_ctx else (view,)
        return spec, args

    def end(self, duration: float) -> None:
        """Apply KisFlow's data-layer rules and the pending action to the stage just run."""
        pos = self.pos
        stage = self.stages[pos]
        action = self.view._action
        buf = self.buffer
        jump: int | None = None
        aborted = False
        if action is None:
            result = buf
            stop_for_no_rows = not buf
        else:
            result = self.input if action.data_reuse else buf
            stop_for_no_rows = not result and not action.force_entry_next
            if action.jump_func is not None:
                jump = self._jump_target(action.jump_func)
                stop_for_no_rows = False
            aborted = action.abort
        self.layers[pos] = result
        self._calls[pos] += 1
        self._rows_in[pos] += len(self.input)
        self._rows_out[pos] += len(result)
        self._durations[pos] += duration
        self.output = result
        if aborted:
            self._stop(RunEnd.ABORTED, stage)
        elif stop_for_no_rows and pos + 1 < self.n:
            # KisFlow's rule: a stage that commits nothing stops the flow (no error). The
            # last stage committing nothing is a sink that finished: the run completed.
            self._stop(RunEnd.NO_ROWS, stage)
        else:
            self.pos = jump if jump is not None else pos + 1

    def _stop(self, why: RunEnd, stage: Stage) -> None:
        self.ended = why
        self.stopped_at = stage.name
        self.pos = self.n

    def result(self) -> RunResult:
        """Freeze the run's outcome; the layers are released with the run."""
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        self.view._stage = None
        return RunResult(
            flow=self.flow_name,
            output=self.output,
            ended=self.ended,
            stopped_at=self.stopped_at,
            steps=self.steps,
            duration=time.perf_counter() - self._started,
            figures=(self.stages, self._calls, self._rows_in, self._rows_out, self._durations),
        )

    # -- helpers -------------------------------------------------------------------------

    def label(self, pos: int) -> str:
        """The stage's name, with its id where the name repeats in the flow."""
        stage = self.stages[pos]
        if len(self.jump_index.get(stage.name, ())) > 1:
            return f"{stage.name!r} (stage {stage.id})"
        return repr(stage.name)

    def _jump_target(self, name: str) -> int:
        found = self.jump_index.get(name, ())
        if len(found) == 1:
            return found[0]
        stage = self.stages[self.pos].name
        if not found:
            known = ", ".join(repr(s.name) for s in self.stages)
            raise ActionError(
                f"flow {self.flow_name!r} stage {stage!r} asked to jump to {name!r}, which is "
                f"not in the flow; stages are {known}",
                flow=self.flow_name,
                stage=stage,
            )
        ids = ", ".join(self.stages[i].id for i in found)
        raise ActionError(
            f"flow {self.flow_name!r} stage {stage!r} asked to jump to {name!r}, which names "
            f"several stages ({ids}); jump to a stage id instead",
            flow=self.flow_name,
            stage=stage,
        )

    def _loop_error(self) -> FlowLoopError:
        trace = list(self.trace or ())
        cycle = trace
        for period in range(1, len(trace) // 2 + 1):
            if trace[-period:] == trace[-2 * period : -period]:
                cycle = trace[-period:]
                break
        start = cycle.index(min(cycle))  # name the cycle from its earliest stage
        cycle = cycle[start:] + cycle[:start]
        names = [self.stages[i].name for i in cycle]
        path = " -> ".join([*names, names[0]])
        stage = self.stages[self.pos].name
        return FlowLoopError(
            f"flow {self.flow_name!r} exceeded its step limit of {self.max_steps} steps; "
            f"stages repeat in a cycle: {path}; check the jump_func actions or raise "
            f"max_steps",
            flow=self.flow_name,
            stage=stage,
            cycle=names,
            steps=self.max_steps,
        )

    def where(self) -> str:
        """A note for errors that escape the current stage: flow and stage."""
        return f"in flow {self.flow_name!r}, stage {self.label(self.pos)}"

    def stage_error(self, exc: Exception) -> StageExecutionError:
        """Wrap a user's exception escaping the current stage's FaaS (chain it with ``from``)."""
        return StageExecutionError(
            f"flow {self.flow_name!r} stage {self.label(self.pos)} raised "
            f"{type(exc).__name__}: {exc}",
            flow=self.flow_name,
            stage=self.stages[self.pos].name,
        )

    def finish_sync(self, spec: FaaSSpec, out: Any) -> None:
        """Complete a FaaS call made from synchronous code (await, drain generators)."""
        kind = spec.signature.kind
        if kind is CallKind.GENERATOR or inspect.isgenerator(out):
            self.buffer.extend(out)
        elif kind is CallKind.ASYNC or inspect.isawaitable(out):
            self._await(out)
        elif kind is CallKind.ASYNC_GENERATOR or inspect.isasyncgen(out):
            self._await(_drain(out, self.buffer))
        else:
            raise TypeError(
                f"a FaaS must return None (commit rows with flow.commit_row), "
                f"got {type(out).__name__}"
            )

    def _await(self, awaitable: Any) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            raise RunError(
                f"flow {self.flow_name!r} stage {self.label(self.pos)} is async and "
                f"flow.run() was called inside a running event loop; use 'await flow.arun()'",
                flow=self.flow_name,
                stage=self.stages[self.pos].name,
            )
        if self._runner is None:
            self._runner = asyncio.Runner()
        self._runner.run(_as_coroutine(awaitable))


async def _drain(agen: Any, buf: list[Any]) -> None:
    async for row in agen:
        buf.append(row)


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable


def run_sync(run: Run) -> RunResult:
    """Carry out ``run`` in the calling thread; async stages run on a private loop."""
    try:
        clock = time.perf_counter
        started = clock()
        while run.pos < run.n:
            spec, args = run.begin()
            try:
                out = spec.fn(*args)
                if out is not None:
                    run.finish_sync(spec, out)
            except KisFlowError as exc:
                exc.add_note(run.where())
                raise
            except Exception as exc:
                raise run.stage_error(exc) from exc
            now = clock()
            run.end(now - started)
            started = now
        return run.result()
    finally:
        if run._runner is not None:
            run._runner.close()
            run._runner = None
