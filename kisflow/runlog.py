"""KisFlow's debug mode: run tracing in the logs, on when loguru would emit DEBUG for kisflow.

With ``logger.enable("kisflow")`` and a sink at DEBUG, a run logs one line per stage call
(flow, run, stage, mode, rows in and out, dead letters, ms, attempts, the action taken),
one per failed FaaS call and one when it ends; a stream logs one line per committed batch
(its position, rows committed, lag, batches in flight). At TRACE the rows themselves are
logged too: the source rows of each run and the rows each stage call passed on (KisFlow's
Go code dumps every layer's data after each call in its debug mode).

It costs nothing when off: ``watchers()`` asks loguru once per run (and once per stream
batch) whether a DEBUG record of this module would be emitted, and only then adds the
observer to the run. With kisflow's logger disabled, or every sink above DEBUG, a run
has no observer for it and its loop does no extra work. Records are bound with their
figures (``record["extra"]``: flow, run, stage, mode, rows_in, rows_out, ms, action...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, cast

from loguru import logger

from kisflow import _state
from kisflow.observers import Observer, StageCall, StreamStatus
from kisflow.rows import safe_repr, safe_str

if TYPE_CHECKING:
    from kisflow._context import RunInfo
    from kisflow.result import RunResult
    from kisflow.stage import Stage

__all__ = ["TRACE_ROWS", "RunLog", "level", "watchers"]

_DEBUG = 10
_TRACE = 5
_NAME = __name__
"""The module loguru sees as the caller of every record logged here."""

TRACE_ROWS = 100
"""Rows a TRACE line shows at most (each cut to ``_ROW_CHARS``); the rest are counted."""
_ROW_CHARS = 200


class _RunState(Protocol):
    """What the debug log reads from the engine's run besides ``RunInfo`` (kisflow._run)."""

    layers: list[list[Any] | None]
    source: list[Any]


def level() -> int | None:
    """The lowest level loguru would emit for this module (DEBUG 10, TRACE 5), or None.

    loguru has no public "would this be logged" call, so this reads what its own logging
    call reads first: the lowest level of all sinks and the enable/disable list.
    """
    try:
        core: Any = _CORE
        lowest = core.min_level
        if lowest > _DEBUG:
            return None
        enabled = core.enabled.get(_NAME)
        if enabled is None:
            enabled = True
            dotted = _NAME + "."
            for prefix, status in core.activation_list:
                if dotted[: len(prefix)] == prefix:
                    enabled = status
                    break
    except AttributeError:  # another loguru: log, and let the sinks decide
        return _TRACE
    if not enabled:
        return None
    return _TRACE if lowest <= _TRACE else _DEBUG


def watchers() -> tuple[Observer, ...]:
    """The debug-mode observer when loguru would emit its DEBUG records, else ``()``.

    Asked once per run: the answer is kept until loguru's state changes (a sink added or
    removed, a module enabled or disabled), which costs two attribute reads per run.
    """
    global _seen
    core = _CORE
    try:
        activations, lowest = core.activation_list, core.min_level
    except AttributeError:  # another loguru: ask every time
        activations = lowest = None
    seen = _seen
    if seen[0] is activations and seen[1] == lowest and activations is not None:
        return seen[2]
    found = level()
    answer: tuple[Observer, ...] = (
        () if found is None else (_ROWS,) if found <= _TRACE else (_FIGURES,)
    )
    _seen = (activations, lowest, answer)
    return answer


class RunLog(Observer):
    """Logs runs and streams at DEBUG, and with ``rows`` their rows at TRACE."""

    def __init__(self, rows: bool = False) -> None:
        self.rows = rows
        # run id -> its last stage call and the rows it passed on, until the run moves on.
        self._held: dict[int, tuple[StageCall, list[Any] | None]] = {}

    def run_started(self, run: RunInfo, rows: int) -> None:
        """At TRACE, the run's source rows."""
        if self.rows:
            source = cast("_RunState", run).source
            logger.bind(flow=run.flow_name, run=run.run_id).trace(
                "flow {!r} run {}: source rows {}", run.flow_name, run.run_id, _shown(source)
            )

    def stage_started(self, run: RunInfo, stage: Stage, position: int) -> None:
        """The previous stage call's line, now that where the run went is known."""
        held = self._held.pop(run.run_id, None)
        if held is not None:
            call, rows = held
            moved = "next" if position == call.position + 1 else f"jump to {stage.name!r}"
            _stage_line(run, call, rows, moved)

    def stage_done(self, run: RunInfo, call: StageCall) -> None:
        """Hold the call until the run moves on (the next stage, or its end)."""
        rows = cast("_RunState", run).layers[call.position] if self.rows else None
        self._held[run.run_id] = (call, rows)

    def call_failed(self, run: RunInfo, stage: Stage, attempt: int, error: BaseException) -> None:
        """One line per failed FaaS call (retried or not)."""
        logger.bind(flow=run.flow_name, run=run.run_id, stage=stage.name, attempt=attempt).debug(
            "flow {!r} run {} stage {!r} ({}): attempt {} raised {}: {}",
            run.flow_name,
            run.run_id,
            stage.name,
            stage.mode.value,
            attempt,
            type(error).__name__,
            safe_str(error, 500),
        )

    def run_done(self, run: RunInfo, result: RunResult | None, error: BaseException | None) -> None:
        """One line when the run ends: how, after how many stage calls, in how long."""
        held = self._held.pop(run.run_id, None)
        if held is not None:
            ended = "failed" if result is None else _ENDS.get(result.ended.value, "end")
            _stage_line(run, *held, ended)
        bound = logger.bind(flow=run.flow_name, run=run.run_id)
        if result is None:
            bound.debug(
                "flow {!r} run {}: failed after {} step(s): {}: {}",
                run.flow_name,
                run.run_id,
                run.steps,
                type(error).__name__,
                safe_str(error, 500),
            )
            return
        stopped = "" if result.stopped_at is None else f" at {result.stopped_at!r}"
        bound.debug(
            "flow {!r} run {}: {}{} after {} step(s), {} rows out, {:.3f} ms",
            run.flow_name,
            run.run_id,
            result.ended.value,
            stopped,
            result.steps,
            len(result.output),
            result.duration * 1000.0,
        )

    def stream_committed(self, flow: str, status: StreamStatus) -> None:
        """One line per committed stream batch: position, rows committed, lag, in flight."""
        batch, position, committed, lag, in_flight, _ = status
        logger.bind(
            flow=flow,
            batch=batch,
            position=position,
            committed=committed,
            lag=lag,
            in_flight=in_flight,
        ).debug(
            "stream {!r} batch {} committed: position {}, {} rows committed, lag {}, {} in flight",
            flow,
            batch,
            safe_repr(position, _ROW_CHARS),
            committed,
            "unknown" if lag is None else lag,
            in_flight,
        )


_ENDS = {"completed": "end", "no_rows": "stop (no rows)", "aborted": "abort"}
"""The action taken by a run's last stage call, by how the run ended (``RunEnd``)."""


def _stage_line(run: RunInfo, call: StageCall, rows: list[Any] | None, action: str) -> None:
    """Log one stage call: its figures and the action taken (and its rows at TRACE)."""
    stage, position, rows_in, rows_out, _, dead, seconds, attempts = call
    ms = seconds * 1000.0
    mode = stage.mode.value
    bound = logger.bind(
        flow=run.flow_name,
        run=run.run_id,
        stage=stage.name,
        position=position,
        mode=mode,
        rows_in=rows_in,
        rows_out=rows_out,
        dead=dead,
        ms=ms,
        attempts=attempts,
        action=action,
    )
    bound.debug(
        "flow {!r} run {} stage {!r} ({}): {} rows in, {} out, {} dead, {:.3f} ms, "
        "{} attempt(s) -> {}",
        run.flow_name,
        run.run_id,
        stage.name,
        mode,
        rows_in,
        rows_out,
        dead,
        ms,
        attempts,
        action,
    )
    if rows is not None:
        bound.trace(
            "flow {!r} run {} stage {!r}: rows out {}",
            run.flow_name,
            run.run_id,
            stage.name,
            _shown(rows),
        )


def _shown(rows: list[Any]) -> str:
    """Rows for a TRACE line: the first ``TRACE_ROWS``, each cut, and how many more."""
    shown = ", ".join(safe_repr(row, _ROW_CHARS) for row in rows[:TRACE_ROWS])
    more = len(rows) - TRACE_ROWS
    return f"[{shown}{', ...' if more > 0 else ''}]" + (f" and {more} more" if more > 0 else "")


_FIGURES = RunLog()
_ROWS = RunLog(rows=True)
_CORE: Any = getattr(logger, "_core", None)  # loguru's one core, shared by bound loggers
_seen: tuple[Any, Any, tuple[Observer, ...]] = (None, None, ())
"""(activation list, lowest sink level, answer) of the last ``watchers()`` call."""

# The observers' registry asks for these once per run (kisflow.observers.active).
_state.debug_observers = watchers
