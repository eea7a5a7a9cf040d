"""One run's state and the loop that carries it out.

A ``Run`` is created per ``Flow.run`` call and owns everything that changes during the
run (source and result layers, the current stage, the pending action, step count and
figures), so one Flow definition runs from many threads at once without cross-talk. It
is also the flow its FaaS receive (it derives from ``RunView``): one object per run.
``Run.calls(inline)`` is the loop itself, as a generator: it prepares each stage, calls
the FaaS the driver lets it call (``Plan.inline``: sync FaaS, so a run of sync stages
never leaves the generator), yields the others with their arguments, and applies the
data-layer rules and actions. Sync and async drivers share it and differ only in how
they call (``run_sync`` is the reference)::

    for spec, args, pending in run.calls(plan.inline):  # only what the driver must do
        while True:
            try:
                out = spec.fn(*args) if pending is None else pending.resume()
                ...                    # run.finish_sync(spec, out), or await it
                break
            except Exception as exc:   # an inline call that raised comes here too
                delay = run.retry(exc)  # None: no attempt left (or not retryable)
                if delay is None:
                    raise run.failure(exc)  # the error to raise, chained to exc
                sleep(delay)           # time.sleep / await asyncio.sleep
    return run.result()                # and run.close() however the run ended

``retry`` discards what the failed attempt committed (rows, actions, rejected rows),
so a retried stage never duplicates output. ``run_async`` is the same loop awaited: async
FaaS run on the caller's loop, and so do sync ones, unless registered ``blocking=True``
(those run in a worker thread). The run tells its observers what happens (nothing is
done for them when there are none).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import inspect
import itertools
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kisflow import _context, _state, columnar
from kisflow._aio import private_runner
from kisflow._api import RunView
from kisflow._pool import FaaSSpec
from kisflow._signature import CallKind
from kisflow.actions import data_reuse
from kisflow.deadletter import DeadLetter, DeadLetterSink
from kisflow.errors import (
    ActionError,
    CommitError,
    ConnectorError,
    DeadLetterError,
    FlowLoopError,
    KisFlowError,
    RowConversionError,
    RowRejectedError,
    RunError,
    StageExecutionError,
)
from kisflow.observers import Observer, StageCall, notify, observer_failed
from kisflow.result import RunEnd, RunResult
from kisflow.rows import RowConversionFailure, describe_type, safe_repr, safe_str
from kisflow.stage import Stage
from kisflow.windows import LateRow

if TYPE_CHECKING:
    from kisflow._definition import Definition
    from kisflow._plan import Plan
    from kisflow.actions import Action
    from kisflow.options import RunOptions

__all__ = ["MAX_RETRY_DELAY", "Run", "run_async", "run_sync"]

_clock = time.perf_counter
_COMPLETED = RunEnd.COMPLETED  # an enum member read per run is not free on Python 3.11
_run_ids = itertools.count(1)
_new_call = tuple.__new__  # a StageCall: no Python-level __new__
_REUSE = data_reuse
_RAISED: Any = object()
"""What an inline FaaS call "returned" when it raised (its exception is kept aside)."""
_ENDED: Any = object()
"""What ``Run._go_on`` returns once the run has ended."""
_GONE: Any = ()
"""What a closed run holds instead of its rows."""

MAX_RETRY_DELAY = 30.0
"""Seconds: the doubling retry delay stops growing here (or at ``return_duration``)."""

_SHOWN = 200
"""Characters of a row an error message shows (``safe_repr``: bounded, never raising)."""
_REASON = 2000
"""Characters of an error's text a message or a dead letter keeps."""


class Run(RunView, list[Any]):
    """The private state of one run of a flow, and the flow its FaaS receive.

    A run is its own ``RunView``: one object per run, not two. It is also the current
    stage's result buffer: a ``list`` whose class attribute ``commit_row`` is
    ``list.append``, so ``flow.commit_row(row)`` in a FaaS is a specialised C call on the
    run, as cheap as ``rows.append(row)`` in a hand-written loop. Between stages the list
    is empty: the loop takes each stage's rows out (``self.copy()``, a pointer copy). A list
    handed over with ``commit_row_batch(rows, copy=False)`` becomes ``buffer`` instead, and
    rows committed after it are moved onto it. ``close`` ends the view and drops the
    run's rows, so a FaaS that kept its flow keeps no layer alive; its commits then raise.
    A run compares and hashes by identity and is always true, like the object it was.
    """

    commit_row = list.append
    converted: Any
    """The current stage's rows as its FaaS got them (converted when typed); None in
    ``run_plain`` (no stage converts), else the stage's input when nothing converts."""
    __hash__ = object.__hash__  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return self is other  # never a list's comparison of contents, either way round

    def __ne__(self, other: object) -> bool:
        return self is not other

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<kisflow run {self.run_id} of flow {self.flow_name!r}>"

    __slots__ = (
        "_attempt",
        "_call_dead",
        "_ctx_token",
        "_d",
        "_ended_at",
        "_extra",
        "_held",
        "_log",
        "_rejects",
        "_retries",
        "_run",
        "_runner",
        "_started",
        "action",
        "buffer",
        "chain",
        "converted",
        "ctx",
        "ended",
        "flow_name",
        "gate",
        "kept",
        "layers",
        "max_steps",
        "observers",
        "output",
        "plan",
        "pos",
        "run_id",
        "sinks",
        "source",
        "stage_input",
        "steps",
        "stopped_at",
        "trace",
        "trace_from",
    )

    def __init__(
        self,
        d: Definition,
        plan: Plan,
        source: list[Any],
        options: RunOptions,
        max_steps: int,
    ) -> None:
        # Only what every run needs is set here; the loop sets the stage's input, buffer
        # and figures as it goes, and the rare paths (retries, dead letters, conversion
        # failures) raise ``_extra`` so one test per stage covers them all.
        n = plan.n
        self._d = d
        self._run = self  # the view's link to its run, cut by close()
        self.buffer: Any = self  # the stage's result: the run's own list, until a hand-over
        self.run_id = next(_run_ids)
        self.flow_name = plan.flow_name
        self.plan = plan
        self.chain = plan.stages
        self.source = source
        self.ctx = options.ctx
        self.max_steps = max_steps
        self.layers: list[list[Any] | None] = [None] * n
        self.pos = self.steps = 0
        # Positions are only recorded near the step limit, to name the cycle if it is hit.
        self.trace: collections.deque[int] | None = None
        self.trace_from = max_steps - (4 * n + 4)
        self.ended = _COMPLETED
        self.stopped_at: str | None = None
        # One entry per stage call; RunResult sums them only if the figures are read.
        self._log: list[tuple[int, int, int, int, float]] = []
        self._retries: dict[int, int] | None = None
        self._attempt = 1
        self._held: list[Any] | None = None
        self._call_dead = 0
        self._rejects: list[DeadLetter] | None = None
        self._extra = False
        self.kept: list[int] | None = None
        self.action: Action | None = None
        self._runner: asyncio.Runner | None = None
        run_sink = options.dead_letters
        self.sinks = plan.sinks if run_sink is None else plan.sinks_with(run_sink)
        # A stream's ordered commits: Save stages wait for the batch before (else None).
        self.gate = _context.GATE.get()
        # Connectors read the run from the context (Save idempotency marks).
        self._ctx_token: contextvars.Token[Any] | None = (
            _context.RUN.set(self) if plan.connectors else None
        )
        # Read once per run: with no observer, a stage call costs one truth test.
        extra = options.observers
        observers: tuple[Observer, ...] = _state.observers  # ``observers.active()``, inline:
        debug = _state.debug_observers()  # the debug-mode log while loguru would emit it
        if debug:
            observers = observers + debug
        if extra:
            observers = observers + extra
        self.observers = observers
        if observers:
            rows = len(source)
            for observer in observers:
                try:
                    observer.run_started(self, rows)
                except Exception as exc:
                    observer_failed(observer, "run_started", exc)

    @property
    def attempt(self) -> int:
        """The current stage call's attempt number, from 1."""
        return self._attempt

    # -- what the FaaS's view asks (kisflow._api.RunControl) ----------------------------

    def current_stage(self) -> Stage:
        """The stage being called."""
        return self.chain[self.pos]

    def position(self) -> int:
        """The index of the stage being called."""
        return self.pos

    def hold(self, lock: Any) -> None:
        """Take ``lock`` (a stage's state) until the current stage call returns.

        In a stream running batches concurrently the call first waits for the batch
        before to commit (its gate), so each commit saves the state of its batches only.
        """
        held = self._held
        if held is None:
            held = self._held = []
            self._extra = True  # released once the call returns (``_after_call``)
        elif any(h is lock for h in held):
            return
        if self.gate is not None:
            self.gate.wait()
        if not lock.acquire(blocking=False):
            if _on_event_loop():
                # Waiting would block the loop, and the holder may be a task on it.
                stage = self.chain[self.pos]
                raise RunError(
                    f"flow {self.flow_name!r} stage {stage.name!r}: flow.state() is held by "
                    f"another run on this event loop; an async FaaS must not await while it "
                    f"holds its stage's state (see docs/state.md)",
                    flow=self.flow_name,
                    stage=stage.name,
                )
            lock.acquire()
        held.append(lock)

    def _release_held(self) -> None:
        held = self._held
        self._held = None
        for lock in held or ():
            lock.release()

    def ask(self, action: Action) -> None:
        """Record an action of the current call; actions are frozen values that combine."""
        pending = self.action
        self.action = action if pending is None else pending | action

    # -- the run loop --------------------------------------------------------------------

    def calls(self, inline: Sequence[int] = ()) -> Iterator[Call]:
        """The run, one stage call at a time: yields what the driver must call or finish.

        Before each call the stage is prepared (its input, rows converted or
        dead-lettered); once the call is made (with any retries), KisFlow's data-layer
        rules and the pending action are applied and the stage's figures recorded. A
        stage marked in ``inline`` (a sync FaaS the driver lets the loop call, see
        ``Plan.inline``) is called here and yields nothing unless its call raised or
        returned something to finish (``Pending``); any other stage is yielded with
        ``None`` for the driver to call. Run state lives in locals between stages: a
        generator with no round trip per stage keeps the per-stage cost of a run small.
        The common stage (a plain call, no action, retry, dead letter or held state)
        takes the short branches; everything else is handled by ``_after_call``.
        """
        clock = _clock
        plan = self.plan
        stages, specs, fns, layers, log, n, observers = (
            plan.stages,
            plan.specs,
            plan.fns,
            self.layers,
            self._log,
            plan.n,
            self.observers,
        )
        view_args = (self,)  # the run is the flow its FaaS receive
        inline = inline or (0,) * n
        if self.gate is not None:  # a stream's Save and window stages wait: the driver's
            inline = tuple(0 if g else how for how, g in zip(inline, plan.gated, strict=True))
        pos = self.pos
        inp = self.source if pos == 0 else self._input_of(pos)
        if type(inp) is not list:
            inp = self._input_for(pos, inp)
        steps = self.steps
        trace_from = self.trace_from
        self._started = started = clock()
        while True:
            # -- prepare the stage: the run's list (its buffer) is empty -------------------
            self.steps = steps = steps + 1  # read by the stores' idempotency marks
            if steps > trace_from:
                self._near_step_limit(pos)
            self.stage_input = self.converted = inp
            rows_in = len(inp)
            if observers:
                for observer in observers:
                    try:
                        observer.stage_started(self, stages[pos], pos)
                    except Exception as exc:
                        observer_failed(observer, "stage_started", exc)
            how = inline[pos]
            if how == 2:  # a plain call lets the interpreter inline the FaaS's frame
                out = _RAISED
                try:
                    out = fns[pos](self)
                except Exception as exc:
                    failed = exc
                if out is not None:  # rare: it raised, or returned something to finish
                    if out is _RAISED:
                        yield specs[pos], view_args, Pending(failed, None)
                    else:
                        yield specs[pos], view_args, Pending(None, out)
            else:
                spec = specs[pos]
                args = view_args if plan.plain[pos] else self._arguments(pos, spec, inp)
                if how:
                    out = _RAISED
                    try:
                        out = fns[pos](*args)
                    except Exception as exc:
                        failed = exc
                    if out is _RAISED:
                        yield spec, args, Pending(failed, None)
                    elif out is not None:
                        yield spec, args, Pending(None, out)
                else:
                    yield spec, args, None
            # -- apply the data-layer rules and the action ---------------------------------
            action = self.action
            if (action is None or action is _REUSE) and not self._extra:  # the common stage
                if action is None:
                    result = self.buffer
                    if result is self:
                        result = self.copy()
                        self.clear()
                    elif len(self) or type(self) is not Run:
                        result = self._handed_over()
                    else:
                        self.buffer = self  # a list handed over, and nothing after it
                else:  # data_reuse alone: the input passes on, what it committed is dropped
                    self.action = None
                    result = self.stage_input
                    if len(self) or self.buffer is not self:
                        self._taken()
                rows_out = len(result)  # a DataFrame has a length, not a truth value
                layers[pos] = result
                now = clock()
                log.append((pos, rows_in, rows_out, 0, now - started))
                if observers:
                    self._stage_done(pos, rows_in, rows_out, 0, now - started, 1)
                started = now
                pos += 1
                if pos < n and rows_out:
                    if type(result) is not list:
                        result = self._input_for(pos, result)
                    self.pos = pos
                    inp = result
                    continue
                self._end_after(pos, result, now)
                return
            result, following, stop, dead, attempts = self._after_call(pos)
            rows_out = len(result)
            layers[pos] = result
            now = clock()
            duration = now - started
            started = now
            log.append((pos, rows_in, rows_out, dead, duration))
            if observers:
                self._stage_done(pos, rows_in, rows_out, dead, duration, attempts)
            inp = self._go_on(pos, result, following, stop, now)
            if inp is _ENDED:
                return
            pos = following

    def _stage_done(
        self, pos: int, rows_in: int, rows_out: int, dead: int, duration: float, attempts: int
    ) -> None:
        """Tell the observers a stage call is done (called only when there are some)."""
        call = _new_call(
            StageCall,
            (
                self.chain[pos],
                pos,
                rows_in,
                rows_out,
                max(rows_in - rows_out - dead, 0),
                dead,
                duration,
                attempts,
            ),
        )
        for observer in self.observers:  # per stage call: no generic dispatch
            try:
                observer.stage_done(self, call)
            except Exception as exc:
                observer_failed(observer, "stage_done", exc)

    def run_plain(self) -> None:
        """``calls`` for the common sync run, with no generator: every stage a plain sync
        FaaS (it takes the flow alone), no observer, no stream gate. ``run_sync`` uses it;
        it makes the driver's retries itself and hands everything else a call asks for
        (actions, dead letters, held state, generators) to the helpers ``calls`` uses."""
        clock = _clock
        plan = self.plan
        fns, specs, layers, log, n = plan.fns, plan.specs, self.layers, self._log, plan.n
        pos = self.pos
        inp = self.source if pos == 0 else self._input_of(pos)
        if type(inp) is not list:
            inp = self._input_for(pos, inp)
        steps = self.steps
        trace_from = self.trace_from
        self.converted = None
        self._started = started = clock()
        while True:
            self.steps = steps = steps + 1
            if steps > trace_from:
                self._near_step_limit(pos)
            self.stage_input = inp  # (``converted`` stays None: no stage converts rows)
            rows_in = len(inp)
            try:
                out = fns[pos](self)
                if out is not None:
                    self.finish_sync(specs[pos], out)
            except Exception as exc:
                self._call_again(specs[pos], exc)
            action = self.action
            if (action is None or action is _REUSE) and not self._extra:  # as in ``calls``
                if action is None:
                    result = self.buffer
                    if result is self:
                        result = self.copy()
                        self.clear()
                    elif len(self) or type(self) is not Run:
                        result = self._handed_over()
                    else:
                        self.buffer = self
                else:
                    self.action = None
                    result = self.stage_input
                    if len(self) or self.buffer is not self:
                        self._taken()
                rows_out = len(result)
                layers[pos] = result
                now = clock()
                log.append((pos, rows_in, rows_out, 0, now - started))
                started = now
                pos += 1
                if pos < n and rows_out:
                    if type(result) is not list:
                        result = self._input_for(pos, result)
                    self.pos = pos
                    inp = result
                    continue
                self.output = result  # ``_end_after``, inline: once per run, on the hot path
                self._ended_at = now
                if pos < n:
                    self._stop(RunEnd.NO_ROWS, plan.stages[pos - 1])
                else:
                    self.pos = n
                return
            result, following, stop, dead, _attempts = self._after_call(pos)
            layers[pos] = result
            now = clock()
            log.append((pos, rows_in, len(result), dead, now - started))
            started = now
            inp = self._go_on(pos, result, following, stop, now)
            if inp is _ENDED:
                return
            pos = following

    def _end_after(self, following: int, result: Any, now: float) -> None:
        """End the run after a common stage: its result is the output. KisFlow's rule: a
        stage that commits nothing stops the flow (no error); the last stage committing
        nothing is a sink that finished, so the run completed."""
        self.output = result
        self._ended_at = now
        n = self.plan.n
        if following < n:
            self._stop(RunEnd.NO_ROWS, self.chain[following - 1])
        else:
            self.pos = n

    def _go_on(self, pos: int, result: Any, following: int, stop: RunEnd | None, now: float) -> Any:
        """After ``_after_call``: the next stage's input (and ``pos`` set to it), or
        ``_ENDED`` once the run ended (an action stopped it, or it passed the last stage)."""
        if stop is not None:
            self.output = result
            self._stop(stop, self.chain[pos])
            self._ended_at = now
            return _ENDED
        n = self.plan.n
        if following >= n:
            self.output = result
            self.pos = n
            self._ended_at = now
            return _ENDED
        if following != pos + 1:
            result = self._input_of(following)
        if type(result) is not list:
            result = self._input_for(following, result)
        self.pos = following
        return result

    def _call_again(self, spec: FaaSSpec, exc: Exception) -> None:
        """``run_plain``'s retries of a failed call (as ``run_sync`` makes them): call the
        FaaS again after the stage's delay until it succeeds or its retries are used up."""
        while True:
            delay = self.retry(exc)
            if delay is None:
                raise self.failure(exc)
            if delay > 0:
                time.sleep(delay)
            try:
                out = spec.fn(self)
                if out is not None:
                    self.finish_sync(spec, out)
                return
            except Exception as again:
                exc = again

    def _after_call(self, pos: int) -> tuple[Any, int, RunEnd | None, int, int]:
        """After a call that asked for an action, retried, dead-lettered, dropped rows or
        held its state: the stage's result, the next position, why the run stops (or
        None), and the call's dead letters and attempts."""
        if self._held is not None:
            self._release_held()
        action = self.action
        if action is None:
            result: Any = self._taken()
            following = pos + 1
            stop = RunEnd.NO_ROWS if not len(result) and following < self.plan.n else None
        else:
            self.action = None
            result, following, stop = self._apply(action, pos)
        if self._extra:
            dead, attempts = self._settle(pos)
        else:
            dead = 0
            attempts = 1
        return result, following, stop, dead, attempts

    def _input_for(self, pos: int, inp: Any) -> Any:
        """``inp`` as the stage at ``pos`` takes it: a DataFrame's rows for a row stage."""
        if type(inp) is not list and not self.plan.specs[pos].signature.frames:
            return columnar.rows_of(inp)  # a DataFrame, for a row stage: its rows
        return inp

    def _input_of(self, pos: int) -> list[Any]:
        """The input of the stage at ``pos``: the source, or the layer before it."""
        if pos == 0:
            return self.source
        prev = self.layers[pos - 1]
        return prev if prev is not None else []

    def _settle(self, pos: int) -> tuple[int, int]:
        """After a call that retried, dead-lettered or dropped rows: hand the rejected
        rows to the sink, and return the call's dead letters and attempts (then reset)."""
        if self._rejects:
            for letter in self._rejects:
                self._put(pos, letter)
        dead, attempts = self._call_dead, self._attempt
        self._rejects = None
        self._call_dead = 0
        self._attempt = 1
        self.kept = None
        self._extra = False
        return dead, attempts

    def _near_step_limit(self, pos: int) -> None:
        """Past ``trace_from``: record positions, to name the cycle if the limit is hit."""
        if self.steps > self.max_steps:
            raise self._loop_error()
        if self.trace is None:
            self.trace = collections.deque(maxlen=4 * self.plan.n + 4)
        self.trace.append(pos)

    def _arguments(self, pos: int, spec: FaaSSpec, inp: list[Any]) -> tuple[Any, ...]:
        """A FaaS's call arguments when it takes a context or rows (converted if typed)."""
        sig = spec.signature
        if not sig.takes_rows:
            return (self.ctx, self)
        rows: Any = inp
        if sig.rows is not None:
            try:
                rows = sig.rows.convert(inp)
            except RowConversionFailure as bad:
                if self.sink(pos) is None:
                    raise RowConversionError(
                        f"flow {self.flow_name!r} stage {self.label(pos)}: row {bad.index} "
                        f"cannot be converted to {describe_type(sig.rows_type)}: {bad.reason}; "
                        f"row was {safe_repr(bad.row, _SHOWN)}",
                        flow=self.flow_name,
                        stage=self.chain[pos].name,
                        row_index=bad.index,
                        row=bad.row,
                    ) from bad.cause
                rows = self._dead_letter_unconvertible(pos, inp)
            self.converted = rows
        return (self.ctx, self, rows) if sig.takes_ctx else (self, rows)

    def sink(self, pos: int) -> DeadLetterSink | None:
        """The dead-letter sink of the stage at ``pos``, or None."""
        sinks = self.sinks
        return None if sinks is None else sinks[pos]

    def _fresh_buffer(self) -> None:
        """Drop what the stage committed (a retried attempt): the run's list is empty."""
        self.clear()
        self.buffer = self
        self.action = None
        if type(self) is not Run:
            self.__class__ = Run  # a DataFrame had been committed (``_FrameRun``)

    def _handed_over(self) -> Any:
        """Take out the stage's result when it is not the run's own list: a list handed
        over (``copy=False``) with any rows committed after it, or a DataFrame."""
        result = self.buffer
        self.buffer = self
        if type(self) is not Run:
            self.__class__ = Run
        if len(self):
            result.extend(self)  # commit_row calls after the hand-over
            self.clear()
        return result

    def _taken(self) -> Any:
        """Take the stage's committed rows out of the run (which is empty again)."""
        if self.buffer is self:
            rows = self.copy()
            self.clear()
            return rows
        return self._handed_over()

    def target(self) -> list[Any]:
        """The list to add committed rows to in bulk (a generator's yields): the run, or
        the list handed over, with the rows committed after it moved onto it first."""
        buf = self.buffer
        if buf is not self and len(self):
            buf.extend(self)
            self.clear()
        return buf  # type: ignore[no-any-return]

    def commit_batch(self, rows: Iterable[Any], copy: bool = True) -> None:
        """The stage's ``commit_row_batch``: add ``rows`` to its result.

        With ``copy=False`` a list is handed over instead of copied when nothing was
        committed yet: it becomes the stage's buffer (later ``commit_row`` calls append to
        it), so the FaaS must not touch it again. The stage's own input is never adopted.
        """
        buf = self.buffer
        if type(rows) is not list:
            if columnar.is_frame(rows):
                self._commit_frame(rows)
                return
            check_batch(rows, self.flow_name, self.chain[self.pos].name)
        elif (
            not copy
            and buf is self
            and not len(self)
            and rows is not self.stage_input  # the view's input() is this list too
            and rows is not self.converted
        ):
            self.buffer = rows
            return
        if buf is self:
            self.extend(rows)
        elif type(buf) is list:
            self.target().extend(rows)
        else:
            self._commit_frame(rows)  # rows after a DataFrame join it

    commit_row_batch = commit_batch  # a method: no bound copy per run

    def _commit_frame(self, rows: Iterable[Any]) -> None:
        """A DataFrame committed (or rows after one): the stage's result is a DataFrame."""
        current = self.buffer
        if current is self:
            current = self.copy()
            self.clear()
        elif type(current) is list:
            current = self.target()
        self.buffer = columnar.merge_commit(current, rows)
        self.__class__ = _FrameRun  # its commit_row refuses: commit frames or batches now

    def _dead_letter_unconvertible(self, pos: int, inp: list[Any]) -> list[Any]:
        """Send rows that fail conversion to the stage's sink; return the converted rest."""
        sig = self.plan.specs[pos].signature
        assert sig.rows is not None
        good, bad = sig.rows.convert_each(inp)
        stage = self.chain[pos]
        for failure in bad:
            cause = failure.cause
            self._put(
                pos,
                DeadLetter(
                    flow=self.flow_name,
                    stage=stage.name,
                    stage_id=stage.id,
                    row_index=failure.index,
                    row=failure.row,
                    reason="conversion",
                    error=f"cannot be converted to {describe_type(sig.rows_type)}: "
                    f"{failure.reason}",
                    error_type=type(cause).__name__,
                ),
            )
        dropped = {f.index for f in bad}
        # The stage's input, as flow.input() and data_reuse see it, loses the same rows;
        # ``kept`` maps a converted row's position back to its index in the batch.
        self._extra = True
        self.kept = [i for i in range(len(inp)) if i not in dropped]
        self.stage_input = [inp[i] for i in self.kept]
        return good

    def _put(self, pos: int, letter: DeadLetter) -> None:
        """Hand one letter to the stage's sink and count it once the sink took it."""
        sink = self.sink(pos)
        assert sink is not None
        try:
            sink.put(letter)
        except Exception as exc:
            raise DeadLetterError(
                f"flow {self.flow_name!r} stage {self.label(pos)}: the dead-letter sink "
                f"{safe_repr(sink)} failed to store row {letter.row_index}: "
                f"{type(exc).__name__}: {safe_str(exc)}",
                flow=self.flow_name,
                stage=letter.stage,
            ) from exc
        self._call_dead += 1
        self._extra = True

    def _reused_input(self, pos: int) -> list[Any]:
        """The stage's input without the rows it rejected (``data_reuse`` passes it on)."""
        rejected = {letter.row_index for letter in self._rejects or ()}
        if -1 in rejected and self.plan.specs[pos].signature.frames:
            raise ActionError(
                f"flow {self.flow_name!r} stage {self.label(pos)} dead-lettered a DataFrame "
                f"and asked for data_reuse, which would pass the rejected rows on; commit "
                f"the rows it keeps with commit_row_batch instead",
                flow=self.flow_name,
                stage=self.chain[pos].name,
            )
        rows = self.stage_input
        positions = self.kept if self.kept is not None else range(len(rows))
        return [row for i, row in zip(positions, rows, strict=True) if i not in rejected]

    def reject(self, row: Any, reason: str | BaseException) -> None:
        """A FaaS rejects ``row`` (``flow.dead_letter``): kept until the stage succeeds."""
        if columnar.is_frame(row):
            for one, why in columnar.rejected_rows(row, safe_str(reason, _REASON)):
                self._reject(one, why, -1)
            return
        self._reject(row, reason, None)

    def _reject(self, row: Any, reason: str | BaseException, index: int | None) -> None:
        """``reject`` of one row; ``index`` None: found in the stage's input."""
        pos = self.pos
        stage = self.chain[pos]
        if isinstance(reason, BaseException):
            error, error_type = safe_str(reason, _REASON), type(reason).__name__
        else:
            error, error_type = safe_str(reason, _REASON), "RowRejected"
        if self.sink(pos) is None:
            raise RowRejectedError(
                f"flow {self.flow_name!r} stage {self.label(pos)} rejected row "
                f"{safe_repr(row, _SHOWN)}: {safe_str(error)}; give the flow a dead-letter "
                f"sink to keep such rows and go on",
                flow=self.flow_name,
                stage=stage.name,
                row=row,
            )
        if index is None:
            converted = self.converted
            index = -1 if converted is None else _index_of(row, converted)
            if index < 0:
                index = _index_of(row, self.stage_input)
            if index >= 0 and self.kept is not None:
                index = self.kept[index]
        if self._rejects is None:
            self._rejects = []
        self._extra = True
        self._rejects.append(
            DeadLetter(
                flow=self.flow_name,
                stage=stage.name,
                stage_id=stage.id,
                row_index=index,
                row=row,
                reason="late" if type(reason) is LateRow else "rejected",
                error=error,
                error_type=error_type,
            )
        )

    def retry(self, exc: Exception) -> float | None:
        """After a failed FaaS call: seconds to wait before calling it again, or None.

        Observers get ``call_failed`` for every failed call, retried or not.

        None when ``exc`` is not retryable (kisflow's own run errors; connector errors
        and the user's exceptions are) or the stage's ``retry_times`` are used up.
        Otherwise the failed attempt's commits, actions and rejected rows are discarded.
        The wait is ``return_duration`` ms, doubling on each retry up to
        ``MAX_RETRY_DELAY`` s (or ``return_duration`` if that is longer).
        """
        if self.observers:  # every failed FaaS call passes here first: tell it once
            notify(self.observers, "call_failed", self, self.chain[self.pos], self._attempt, exc)
        if not _retryable(exc):
            return None
        pos = self.pos
        option = self.chain[pos].config.option
        if self._attempt > option.retry_times:
            return None
        base = option.return_duration / 1000.0
        delay: float = min(base * (1 << (self._attempt - 1)), max(MAX_RETRY_DELAY, base))
        self._attempt += 1
        self._extra = True
        if self._retries is None:
            self._retries = {}
        self._retries[pos] = self._retries.get(pos, 0) + 1
        if self.observers:
            notify(self.observers, "retried", self, self.chain[pos], self._attempt, exc)
        self._rejects = None
        self._fresh_buffer()
        return delay

    def failure(self, exc: Exception) -> Exception:
        """The error to raise for ``exc`` escaping the current stage (after any retries).

        kisflow's own errors are returned as they are, with a note naming flow and stage;
        a ``ConnectorError`` is made anew with the flow, stage and attempts (saying how
        many attempts it took), chained to the connector's; other exceptions, and kisflow
        errors after retries, become ``StageExecutionError`` with ``.attempts``, chained
        to ``exc``.
        """
        attempts = self._attempt
        if isinstance(exc, ConnectorError):
            tries = f" (after {attempts} attempts)" if attempts > 1 else ""
            err = ConnectorError(
                f"{exc}{tries}",
                connector=exc.connector,
                type=exc.type,
                address=exc.address,
                retryable=exc.retryable,
                flow=self.flow_name,
                stage=self.chain[self.pos].name,
                attempts=attempts,
            )
            err.add_note(self.where())
            err.__cause__ = exc
            err.__suppress_context__ = True
            return err
        if isinstance(exc, KisFlowError) and (attempts == 1 or not _retryable(exc)):
            exc.add_note(self.where())
            return exc
        error = self.stage_error(exc)
        error.__cause__ = exc
        error.__suppress_context__ = True
        return error

    def _apply(self, action: Action, pos: int) -> tuple[list[Any], int, RunEnd | None]:
        """The stage's result, the next position and why the run stops (or None), given
        the action it asked for."""
        committed = self._taken()
        if action.data_reuse:  # the stage's input passes on; what it committed is dropped
            result = self._reused_input(pos) if self._rejects else self.stage_input
        else:
            result = committed
        # A jump is checked even when the stage also aborts: a bad target is an error.
        jump = None if action.jump_func is None else self._jump_target(action.jump_func)
        if action.abort:
            return result, pos + 1, RunEnd.ABORTED
        if jump is not None:
            return result, jump, None
        if len(result) == 0 and not action.force_entry_next and pos + 1 < self.plan.n:
            return result, pos + 1, RunEnd.NO_ROWS
        return result, pos + 1, None

    def _stop(self, why: RunEnd, stage: Stage) -> None:
        self.ended = why
        self.stopped_at = stage.name
        self.pos = self.plan.n

    def failed(self, exc: BaseException) -> None:
        """Tell the observers the run ended with ``exc`` (drivers call it as it leaves)."""
        if self.observers:
            notify(self.observers, "run_done", self, None, exc)

    def close(self) -> None:
        """Release what the run holds; every driver calls it when the run ends, however.

        Cutting the view's link back to the run (itself) lets reference counting free the
        run and its layers at once, instead of waiting for the cycle collector; the rows it
        holds are dropped too, so a FaaS that kept its flow does not keep a layer alive.
        Later calls of the FaaS API on it refuse, and commits raise.
        """
        if self._held is not None:
            self._release_held()
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        if self._ctx_token is not None:
            try:
                _context.RUN.reset(self._ctx_token)
            except ValueError:  # closed from another context than the one that started it
                _context.RUN.set(None)
            self._ctx_token = None
        self._run = None
        self.__class__ = _EndedRun  # its commit_row and commit_row_batch refuse
        self.clear()
        self.layers = self.source = self.stage_input = self.converted = _GONE
        self.buffer = self.output = _GONE
        self.ctx = None

    def result(self) -> RunResult:
        """Freeze the run's outcome; the layers are released with the run."""
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        output = self.output
        if output is self.source:
            output = output[:]  # data_reuse passed the source through: not the caller's list
        result = RunResult(
            self.flow_name,
            output,
            self.ended,
            self.stopped_at,
            self._log,
            self.steps,
            self._ended_at - self._started,
        )
        result._chain = self.chain  # ``_log`` is the raw record: summed on first read
        result._retries = self._retries
        if self.observers:
            for observer in self.observers:
                try:
                    observer.run_done(self, result, None)
                except Exception as exc:
                    observer_failed(observer, "run_done", exc)
        return result

    # -- helpers -------------------------------------------------------------------------

    def label(self, pos: int) -> str:
        """The stage's name, with its id where the name repeats in the flow."""
        stage = self.chain[pos]
        if len(self.plan.jump_index.get(stage.name, ())) > 1:
            return f"{stage.name!r} (stage {stage.id})"
        return repr(stage.name)

    def _jump_target(self, name: str) -> int:
        found = self.plan.jump_index.get(name, ())
        if len(found) == 1:
            return found[0]
        stage = self.chain[self.pos].name
        if not found:
            known = ", ".join(repr(s.name) for s in self.chain)
            raise ActionError(
                f"flow {self.flow_name!r} stage {stage!r} asked to jump to {name!r}, which is "
                f"not in the flow; stages are {known}",
                flow=self.flow_name,
                stage=stage,
            )
        ids = ", ".join(self.chain[i].id for i in found)
        raise ActionError(
            f"flow {self.flow_name!r} stage {stage!r} asked to jump to {name!r}, which names "
            f"several stages ({ids}); jump to a stage id instead",
            flow=self.flow_name,
            stage=stage,
        )

    def _loop_error(self) -> FlowLoopError:
        stage = self.chain[self.pos].name
        trace = list(self.trace or ())
        cycle: list[int] = []
        for period in range(1, len(trace) // 2 + 1):
            if trace[-period:] == trace[-2 * period : -period]:
                cycle = trace[-period:]
                break
        if not cycle:
            # No stage repeated: the flow is simply longer than the limit allows.
            return FlowLoopError(
                f"flow {self.flow_name!r} reached its step limit of {self.max_steps} steps at "
                f"stage {stage!r} without repeating a stage; raise max_steps (the flow has "
                f"{self.plan.n} stages)",
                flow=self.flow_name,
                stage=stage,
                cycle=(),
                steps=self.max_steps,
            )
        start = cycle.index(min(cycle))  # name the cycle from its earliest stage
        cycle = cycle[start:] + cycle[:start]
        names = [self.chain[i].name for i in cycle]
        path = " -> ".join([*names, names[0]])
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
        attempts = self._attempt
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        return StageExecutionError(
            f"flow {self.flow_name!r} stage {self.label(self.pos)} raised "
            f"{type(exc).__name__}: {safe_str(exc, _REASON)}{tries}",
            flow=self.flow_name,
            stage=self.chain[self.pos].name,
            attempts=attempts,
        )

    def finish_sync(self, spec: FaaSSpec, out: Any) -> None:
        """Complete a FaaS call made from synchronous code (await, drain generators)."""
        kind = spec.signature.kind
        if kind is CallKind.GENERATOR or inspect.isgenerator(out):
            self.target().extend(out)
        elif kind is CallKind.ASYNC or inspect.isawaitable(out):
            self._await(out)
        elif kind is CallKind.ASYNC_GENERATOR or inspect.isasyncgen(out):
            self._await(_drain(out, self.target()))
        else:
            raise _not_none(out)

    def _await(self, awaitable: Any) -> None:
        if self._runner is None:
            try:
                self._runner = private_runner(
                    f"flow {self.flow_name!r} stage {self.label(self.pos)} is async and "
                    f"flow.run() was called inside a running event loop; use "
                    f"'await flow.arun()'",
                    flow=self.flow_name,
                    stage=self.chain[self.pos].name,
                )
            except RunError:
                if inspect.iscoroutine(awaitable):
                    awaitable.close()
                raise
        self._runner.run(_as_coroutine(awaitable))


class _FrameRun(Run):
    """A run whose current stage committed a DataFrame: ``commit_row`` refuses (commit
    frames or batches instead) until the stage's result is taken out."""

    __slots__ = ()

    def commit_row(self, row: Any, /) -> None:
        """Refuse: the stage's result is a DataFrame."""
        raise columnar.row_after_frame(self.flow_name, self.chain[self.pos].name)


class _EndedRun(Run):
    """A run that has ended: a FaaS that kept its flow cannot commit to it any more."""

    __slots__ = ()

    def commit_row(self, row: Any, /) -> None:
        """Refuse: the run has ended."""
        self._d.after_run(row)

    def commit_batch(self, rows: Iterable[Any], copy: bool = True) -> None:
        """Refuse: the run has ended."""
        self._d.after_run(rows)

    commit_row_batch = commit_batch


class Pending:
    """A FaaS call the run loop made itself that its driver must finish: it raised
    ``error`` (retried by the driver), or returned ``out`` (a generator to drain, an
    awaitable, or a value that is an error). Made only then, never per call."""

    __slots__ = ("error", "out")

    def __init__(self, error: Exception | None, out: Any) -> None:
        self.error = error
        self.out = out

    def resume(self) -> Any:
        """What the call returned, or raise what it raised (the driver retries it)."""
        if self.error is not None:
            raise self.error
        return self.out


Call = tuple[FaaSSpec, tuple[Any, ...], Pending | None]
"""What ``Run.calls`` yields: the FaaS, its arguments, and the call to finish (or None
when the driver must make it)."""


def _retryable(exc: Exception) -> bool:
    """User errors and unreachable stores are retried; kisflow's own errors are not."""
    if isinstance(exc, ConnectorError):
        return exc.retryable
    return not isinstance(exc, KisFlowError)


def _index_of(row: Any, rows: list[Any]) -> int:
    for i, candidate in enumerate(rows):
        if candidate is row:
            return i
    return -1


def check_batch(rows: Any, flow: str, stage: str | None) -> None:
    """Refuse what iterates but is not a batch of rows: a ``str``, ``bytes``, a mapping.

    Raises:
        CommitError: naming the flow and stage (KisFlow: "Commit Data is not a slice").
    """
    if isinstance(rows, str | bytes | bytearray | memoryview | Mapping):
        where = f"flow {flow!r}" + (f" stage {stage!r}" if stage is not None else "")
        raise CommitError(
            f"{where}: commit_row_batch takes a batch of rows (a list or another iterable "
            f"of rows), got {type(rows).__name__}; commit one row with commit_row",
            flow=flow,
            stage=stage,
        )


def _not_none(out: Any) -> TypeError:
    """The error for a FaaS that returned a value (it must commit rows instead)."""
    return TypeError(
        f"a FaaS must return None (commit rows with flow.commit_row), got {type(out).__name__}"
    )


async def _drain(agen: Any, buf: list[Any]) -> None:
    async for row in agen:
        buf.append(row)


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable


def _on_event_loop() -> bool:
    """Whether this thread is running an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(run: Run) -> RunResult:
    """Carry out ``run`` in the calling thread; async stages run on a private loop.

    Sync FaaS are called by the run loop itself (``Plan.inline``); this driver calls the
    others (a stream's Save and window stages first wait for their gate), finishes what a
    call returned, and retries failed calls.
    """
    gate = run.gate
    try:
        if run.plan.plain_sync and gate is None and not run.observers:
            run.run_plain()
            return run.result()
        for spec, args, pending in run.calls(run.plan.inline):
            if pending is None and gate is not None and run.plan.gated[run.pos]:
                gate.wait()
            while True:
                try:
                    if pending is None:
                        out = spec.fn(*args)
                    else:
                        done, pending = pending, None
                        out = done.resume()
                    if out is not None:
                        run.finish_sync(spec, out)
                    break
                except Exception as exc:
                    delay = run.retry(exc)
                    if delay is None:
                        raise run.failure(exc)  # noqa: B904 - failure() chains exc itself
                    if delay > 0:
                        time.sleep(delay)
        return run.result()
    except BaseException as exc:
        run.failed(exc)
        raise
    finally:
        run.close()


async def run_async(run: Run) -> RunResult:
    """Carry out ``run`` on the running event loop; mirrors ``run_sync``.

    Async FaaS are awaited on the loop. Sync FaaS run on the loop too, called by the run
    loop itself, unless registered ``blocking=True``: those run in a worker thread. Retries
    wait with ``asyncio.sleep``, so a stage backing off never blocks the loop.
    """
    gate = run.gate
    try:
        for spec, args, pending in run.calls(run.plan.inline_async):
            if pending is None and gate is not None and run.plan.gated[run.pos]:
                await gate.await_()
            while True:
                try:
                    if pending is None:
                        await _call_async(run, spec, args)
                    else:
                        done, pending = pending, None
                        out = done.resume()
                        await _finish_async(run, spec, out)
                    break
                except Exception as exc:
                    delay = run.retry(exc)
                    if delay is None:
                        raise run.failure(exc)  # noqa: B904 - failure() chains exc itself
                    if delay > 0:
                        await asyncio.sleep(delay)
        return run.result()
    except BaseException as exc:
        run.failed(exc)
        raise
    finally:
        run.close()


async def _call_async(run: Run, spec: FaaSSpec, args: tuple[Any, ...]) -> None:
    """Call one FaaS without blocking the loop and collect what it commits or yields.

    Async FaaS are awaited on the loop and async generators drained there; sync FaaS
    (plain or generators) are called on the loop, or in a worker thread when registered
    ``blocking=True``. Only one thread touches the run's buffer at a time: the loop
    waits for the thread.
    """
    kind = spec.signature.kind
    if kind is CallKind.ASYNC:
        await spec.fn(*args)
        return
    if kind is CallKind.ASYNC_GENERATOR or not spec.blocking:
        out = spec.fn(*args)
    elif kind is CallKind.GENERATOR:
        buf = run.target()
        await asyncio.to_thread(lambda: buf.extend(spec.fn(*args)))
        return
    else:
        out = await asyncio.to_thread(spec.fn, *args)
    await _finish_async(run, spec, out)


async def _finish_async(run: Run, spec: FaaSSpec, out: Any) -> None:
    """Collect what a FaaS call returned: nothing, rows to drain, or something to await."""
    if out is None:
        return
    # An unannotated callable may still hand back a coroutine or a generator.
    if inspect.isasyncgen(out):
        await _drain(out, run.target())
    elif inspect.isawaitable(out):
        await out
    elif inspect.isgenerator(out):
        buf = run.target()
        gen = out
        if spec.blocking:
            await asyncio.to_thread(lambda: buf.extend(gen))
        else:
            buf.extend(gen)
    else:
        raise _not_none(out)
