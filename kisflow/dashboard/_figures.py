"""The dashboard's observer: per-flow and per-stage figures, kept cheap and thread-safe.

A run's thread notes its stage calls in the run's own record, without a lock (a dict
write, a list append); when the run ends, its calls are added to the plain counters of
their stages under one lock, and a read adds in the calls of the runs still under way.
Rates and percentiles are worked out only when the figures are read (``snapshot``),
which the page does twice a second. The figures are
those of ``StageStats`` and of the Prometheus endpoint: calls (stage calls that
succeeded, as ``StageStats.calls``; with the failed FaaS calls, ``func_schedule_cnts``),
rows in / out / filtered / dead-lettered and retries.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Any

from kisflow.observers import Observer, StageCall, StreamStatus
from kisflow.rows import safe_str

if TYPE_CHECKING:
    from kisflow._context import RunInfo
    from kisflow.result import RunEnd, RunResult
    from kisflow.stage import Stage

__all__ = ["ENDED_AFTER", "RATE_WINDOW", "RESERVOIR", "Figures"]

RATE_WINDOW = 10
"""Seconds over which rows/s is measured: rows taken in, counted in the second their run
ended (a run still under way counts now), divided by the window."""

RESERVOIR = 1024
"""Stage calls whose durations are kept per stage for p50/p99 (the most recent ones)."""

_LAST = RESERVOIR - 1

ENDED_AFTER = 2.0
"""Seconds with no run in progress after which a flow is shown as ended (a stream's
batches follow each other closely; no event says a stream is over)."""


def _error(error: BaseException, stage: str | None) -> dict[str, Any]:
    """An error as the page shows it: type, message (bounded), stage, when."""
    return {
        "type": type(error).__name__,
        "message": safe_str(error, 500),
        "stage": stage,
        "time": time.time(),
    }


class _Stage:
    """One stage's figures (one position of a flow's chain)."""

    __slots__ = (
        "calls",
        "dead",
        "durations",
        "error",
        "failed_calls",
        "failing",
        "filtered",
        "mode",
        "name",
        "next_duration",
        "position",
        "retries",
        "rows_in",
        "rows_out",
        "seconds",
        "stage_id",
    )

    def __init__(self, stage: Stage, position: int) -> None:
        self.stage_id = stage.id
        self.name = stage.name
        self.mode = stage.mode.value
        self.position = position
        self.calls = self.failed_calls = self.retries = 0
        self.rows_in = self.rows_out = self.filtered = self.dead = 0
        self.seconds = 0.0
        self.failing = False
        self.error: dict[str, Any] | None = None
        self.durations = [0.0] * RESERVOIR
        """A ring of the last calls' durations; the first ``min(calls, RESERVOIR)`` count."""
        self.next_duration = 0

    def state(self, running: bool) -> str:
        """``failing`` (its last call raised), ``running`` (a call under way) or ``idle``."""
        if self.failing:
            return "failing"
        return "running" if running else "idle"

    def view(self, since: int, running: bool, live: list[StageCall]) -> dict[str, Any]:
        """The figures as plain JSON data, with the calls of runs still under way (``live``);
        ``since``: the rows in counted before the rate's window. Called under the lock."""
        kept = min(self.calls, RESERVOIR)
        calls, rows_in, rows_out = self.calls, self.rows_in, self.rows_out
        filtered, dead, seconds = self.filtered, self.dead, self.seconds
        durations = self.durations[:kept]
        for call in live:
            rows_in += call[2]
            calls += 1
            rows_out += call[3]
            filtered += call[4]
            dead += call[5]
            seconds += call[6]
            durations.append(call[6])
        return {
            "position": self.position,
            "stage_id": self.stage_id,
            "name": self.name,
            "mode": self.mode,
            "state": self.state(running),
            "calls": calls,
            "failed_calls": self.failed_calls,
            "rows_in": rows_in,
            "rows_out": rows_out,
            "filtered": filtered,
            "dead_letters": dead,
            "retries": self.retries,
            "seconds": seconds,
            "rows_per_second": (rows_in - since) / RATE_WINDOW,
            "durations": durations,  # replaced by p50/p99 outside the lock
            "last_error": None if self.error is None else dict(self.error),
        }


# A run under way, as its own thread alone writes it (a list: made once per run, cheaply):
# [its flow's figures, its source rows, the position of the stage being called (or None),
# its finished calls (StageCall)], counted into the stages' figures when it ends.
_FLOW, _ROWS, _AT, _CALLS = range(4)
_Run = list[Any]


class _Flow:
    """One flow's figures: its runs, its chain's stages and, for a stream, its status."""

    __slots__ = (
        "batches",
        "chain_of",
        "completed",
        "error",
        "failed",
        "last_active",
        "marks",
        "name",
        "outcome",
        "rows",
        "runs",
        "stages",
        "started",
        "stream",
        "streaming",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.stages: list[_Stage] = []
        self.runs = self.completed = self.failed = self.rows = 0
        self.chain_of: tuple[Stage, ...] | None = None
        """The chain ``stages`` was last made from (a plan's tuple: compared by identity)."""
        self.started = time.time()
        self.last_active = time.monotonic()
        self.outcome: RunEnd | str | None = None
        self.error: dict[str, Any] | None = None
        self.batches = 0
        self.streaming = False
        """Whether a stream runs the flow (it handed out a batch)."""
        self.stream: StreamStatus | None = None
        """The stream's last ``stream_committed`` report."""
        self.marks: collections.deque[tuple[int, list[int]]] = collections.deque(
            [(int(time.monotonic()), [])], maxlen=RATE_WINDOW + 2
        )
        """(second, each stage's rows in before it): taken when the first run of a second
        ends, so rows/s over the window needs no clock reading per stage call."""

    def chain(self, stages: tuple[Stage, ...]) -> None:
        """Take the run's chain; a different chain under the same name starts afresh."""
        mine = self.stages
        if len(mine) == len(stages) and all(
            s.name == stage.name and s.mode == stage.mode.value
            for s, stage in zip(mine, stages, strict=True)
        ):
            return
        self.stages = [_Stage(stage, i) for i, stage in enumerate(stages)]
        self.marks.clear()
        self.marks.append((int(time.monotonic()), []))

    def mark(self, second: int) -> None:
        """Note each stage's rows in before the first run that ends in ``second``."""
        if self.marks[-1][0] != second:
            self.marks.append((second, [figures.rows_in for figures in self.stages]))

    def rows_before(self, now_second: int) -> list[int]:
        """Each stage's rows in counted before the rate's window (0 past the known)."""
        for second, rows in self.marks:
            if second > now_second - RATE_WINDOW:
                return rows
        return [figures.rows_in for figures in self.stages]  # nothing ended in the window

    def placed(self, stage: Stage, position: int) -> _Stage:
        """The figures of ``stage`` at ``position``: at its place when its id matches."""
        stages = self.stages
        if position < len(stages):
            figures = stages[position]
            if figures.stage_id is stage.id:
                return figures
        return self.stage(stage, position)

    def find(self, stage: Stage) -> _Stage:
        """The figures of ``stage`` by id (then by name), added at the end if unknown."""
        for figures in self.stages:
            if figures.stage_id == stage.id:
                return figures
        for figures in self.stages:
            if figures.name == stage.name:
                return figures
        return self.stage(stage, len(self.stages))

    def stage(self, stage: Stage, position: int) -> _Stage:
        """The figures of the stage at ``position`` (made when a run did not tell it)."""
        stages = self.stages
        if position < len(stages):
            got = stages[position]
            if got.name == stage.name:
                got.stage_id = stage.id  # the same chain, maybe another Flow of it
                return got
            stages[position] = got = _Stage(stage, position)
            return got
        while len(stages) < position:  # positions unknown so far: filled in later
            stages.append(_Stage(stage, len(stages)))
        got = _Stage(stage, position)
        stages.append(got)
        return got


class Figures(Observer):
    """An observer that keeps the dashboard's figures for every flow it sees.

    ``snapshot()`` returns them as JSON-able data: what ``/api/flows`` serves and the
    page shows. Flows stay, with their final figures, until the observer is dropped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flows: dict[str, _Flow] = {}
        # The runs under way, by run id: added, read and written by their own thread
        # without the lock (one dict operation or list append each, atomic in CPython);
        # counted and removed under the lock when they end, read under it as copies.
        self._runs: dict[int, _Run] = {}
        self.created = time.time()

    def _flow(self, name: str) -> _Flow:
        flow = self._flows.get(name)
        if flow is None:
            flow = self._flows[name] = _Flow(name)
        return flow

    # -- observer events (called in the threads running the runs) -----------------------

    def run_started(self, run: RunInfo, rows: int) -> None:
        """A run starts: note it (no lock); learn the flow's chain once per plan."""
        stages: tuple[Stage, ...] | None = getattr(run, "stages", None)
        flow = self._flows.get(run.flow_name)
        if flow is None or (stages is not None and stages is not flow.chain_of):
            with self._lock:
                flow = self._flow(run.flow_name)
                if stages is not None and stages is not flow.chain_of:
                    flow.chain(stages)
                    flow.chain_of = stages
        self._runs[run.run_id] = [flow, rows, None, []]

    def _live(self, run: RunInfo) -> _Run:
        """The record of a run that began before this observer was added."""
        with self._lock:
            live = self._runs[run.run_id] = [self._flow(run.flow_name), 0, None, []]
        return live

    def stage_started(self, run: RunInfo, stage: Stage, position: int) -> None:
        """Note the stage being called in the run's record (no lock)."""
        (self._runs.get(run.run_id) or self._live(run))[_AT] = position

    def stage_done(self, run: RunInfo, call: StageCall) -> None:
        """Note a finished stage call in its run's record (no lock)."""
        live = self._runs.get(run.run_id) or self._live(run)
        live[_AT] = None
        live[_CALLS].append(call)

    def call_failed(self, run: RunInfo, stage: Stage, attempt: int, error: BaseException) -> None:
        """Count a failed FaaS call and keep its error; the stage is failing."""
        failure = _error(error, stage.name)
        live = self._runs.get(run.run_id)
        with self._lock:
            figures = _at(self._flow(run.flow_name), stage, live)
            figures.failed_calls += 1
            figures.failing = True
            figures.error = failure

    def retried(self, run: RunInfo, stage: Stage, attempt: int, error: BaseException) -> None:
        """Count a retry."""
        live = self._runs.get(run.run_id)
        with self._lock:
            figures = _at(self._flow(run.flow_name), stage, live)
            figures.retries += 1

    def run_done(self, run: RunInfo, result: RunResult | None, error: BaseException | None) -> None:
        """The run ended: its outcome, and its error when it failed."""
        failure = None if error is None else _error(error, getattr(error, "stage", None))
        now = time.monotonic()
        with self._lock:
            live = self._runs.pop(run.run_id, None)
            if live is None:
                flow = self._flow(run.flow_name)
            else:  # its calls (those of a failed run too) join the figures
                flow = live[_FLOW]
                flow.runs += 1
                flow.rows += live[_ROWS]
                flow.mark(int(now))
                _count(flow, live[_CALLS])
            flow.last_active = now
            if result is not None:
                flow.completed += 1
                flow.outcome = result.ended
            else:
                flow.failed += 1
                flow.outcome = "failed"
                flow.error = failure

    def batch_done(self, flow: str, batch: int, result: RunResult) -> None:
        """A stream handed out a batch: the flow is a stream (batches come in order: no lock)."""
        figures = self._flows.get(flow)
        if figures is not None:
            if batch > figures.batches:
                figures.batches = batch
            figures.streaming = True

    def stream_committed(self, flow: str, status: StreamStatus) -> None:
        """A stream committed a batch: keep its report (one assignment, no lock)."""
        figures = self._flows.get(flow)
        if figures is None:
            with self._lock:
                figures = self._flow(flow)
        figures.streaming = True
        figures.stream = status
        if status.batch > figures.batches:
            figures.batches = status.batch

    # -- reading ------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Every flow's figures as JSON-able data, in the order the flows were first seen."""
        now = time.monotonic()
        wall = time.time()
        with self._lock:
            running: set[int] = set()
            live: dict[int, list[StageCall]] = {}
            busy: dict[int, list[int]] = {}  # per flow: runs under way, their source rows
            for record in list(self._runs.values()):
                flow = record[_FLOW]
                at = record[_AT]
                if at is not None and at < len(flow.stages):
                    running.add(id(flow.stages[at]))
                for call in list(record[_CALLS]):
                    live.setdefault(id(flow.placed(call[0], call[1])), []).append(call)
                counts = busy.setdefault(id(record[_FLOW]), [0, 0])
                counts[0] += 1
                counts[1] += record[_ROWS]
            flows: list[dict[str, Any]] = [
                {
                    "name": flow.name,
                    "status": (
                        "running"
                        if id(flow) in busy or now - flow.last_active < ENDED_AFTER
                        else "ended"
                    ),
                    "outcome": getattr(flow.outcome, "value", flow.outcome),
                    "kind": "stream" if flow.streaming else "run",
                    "runs": flow.runs + busy.get(id(flow), (0, 0))[0],
                    "runs_in_progress": busy.get(id(flow), (0, 0))[0],
                    "runs_completed": flow.completed,
                    "runs_failed": flow.failed,
                    "source_rows": flow.rows + busy.get(id(flow), (0, 0))[1],
                    "batches": flow.batches,
                    "started": flow.started,
                    "last_error": None if flow.error is None else dict(flow.error),
                    "stream": (
                        None
                        if not flow.streaming
                        else {}
                        if flow.stream is None
                        else flow.stream._asdict()
                    ),
                    "stages": [
                        stage.view(
                            before[i] if i < len(before) else 0,
                            id(stage) in running,
                            live.get(id(stage), []),
                        )
                        for i, stage in enumerate(flow.stages)
                    ],
                }
                for flow, before in (
                    (flow, flow.rows_before(int(now))) for flow in self._flows.values()
                )
            ]
        for flow_view in flows:  # the slow part, outside the lock
            for stage_view in flow_view["stages"]:
                durations = sorted(stage_view.pop("durations"))
                stage_view["p50_ms"] = _percentile(durations, 0.50)
                stage_view["p99_ms"] = _percentile(durations, 0.99)
            stream = flow_view["stream"]
            if stream:
                checkpoint = stream.get("checkpoint_time")
                stream["checkpoint_age"] = None if checkpoint is None else wall - checkpoint
        return flows


def _count(flow: _Flow, calls: list[StageCall]) -> None:
    """Add a run's finished calls to their stages' figures (under the lock; inlined: this
    is the observer's one loop per run)."""
    stages = flow.stages
    for call in calls:
        stage, position, rows_in, rows_out, filtered, dead, seconds, _ = call
        figures = stages[position] if position < len(stages) else None
        if figures is None or figures.stage_id is not stage.id:
            figures = flow.stage(stage, position)
            stages = flow.stages
        figures.calls += 1
        figures.rows_in += rows_in
        figures.rows_out += rows_out
        figures.filtered += filtered
        figures.dead += dead
        figures.seconds += seconds
        figures.failing = False  # a call of it succeeded since it failed
        at = figures.next_duration
        figures.durations[at] = seconds
        figures.next_duration = 0 if at == _LAST else at + 1


def _at(flow: _Flow, stage: Stage, live: _Run | None) -> _Stage:
    """The figures of the stage a run is calling (under the lock)."""
    if live is not None and live[_AT] is not None:
        return flow.placed(stage, live[_AT])
    return flow.find(stage)


def _percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile of sorted seconds, in ms (None with no data)."""
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))
    return ordered[rank] * 1000.0
