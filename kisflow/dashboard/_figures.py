"""The dashboard's observer: per-flow and per-stage figures, kept cheap and thread-safe.

Runs add plain integers under one lock, once per stage call (which stage a run is in is
one dict write, without the lock); rates and percentiles are worked out only when the
figures are read (``snapshot``), which the page does twice a second. The figures are
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

RATE_WINDOW = 10.0
"""Seconds over which rows/s is measured (rows taken in, per second), from the figures
as earlier reads saw them: a stage call costs no clock reading for it."""

RESERVOIR = 1024
"""Stage calls whose durations are kept per stage for p50/p99 (the most recent ones)."""

_LAST = RESERVOIR - 1

ENDED_AFTER = 2.0
"""Seconds with no run in progress after which a flow is shown as ended (a stream's
batches follow each other closely; no event says a stream is over)."""

_SAMPLE_EVERY = 0.25
"""Seconds between two samples kept for the rate (however many pages read)."""


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
        "samples",
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
        self.samples: collections.deque[tuple[float, int]] = collections.deque()
        """(time, rows_in) as reads saw them, the oldest at most one before the window."""

    def state(self, running: bool) -> str:
        """``failing`` (its last call raised), ``running`` (a call under way) or ``idle``."""
        if self.failing:
            return "failing"
        return "running" if running else "idle"

    def rate(self, now: float) -> float | None:
        """Rows in per second since the oldest sample in the window (None on a first read)."""
        samples = self.samples
        while len(samples) > 1 and samples[1][0] <= now - RATE_WINDOW:
            samples.popleft()
        rate = None
        if samples:
            then, rows = samples[0]
            if now > then:
                rate = (self.rows_in - rows) / (now - then)
        if not samples or now - samples[-1][0] >= _SAMPLE_EVERY:
            samples.append((now, self.rows_in))
        return rate

    def view(self, now: float, running: bool) -> dict[str, Any]:
        """The figures as plain JSON data (called under the lock: copies only)."""
        kept = min(self.calls, RESERVOIR)
        return {
            "position": self.position,
            "stage_id": self.stage_id,
            "name": self.name,
            "mode": self.mode,
            "state": self.state(running),
            "calls": self.calls,
            "failed_calls": self.failed_calls,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "filtered": self.filtered,
            "dead_letters": self.dead,
            "retries": self.retries,
            "seconds": self.seconds,
            "rows_per_second": self.rate(now),
            "durations": self.durations[:kept],  # replaced by p50/p99 outside the lock
            "last_error": None if self.error is None else dict(self.error),
        }


class _Flow:
    """One flow's figures: its runs, its chain's stages and, for a stream, its status."""

    __slots__ = (
        "active",
        "batches",
        "chain_of",
        "completed",
        "error",
        "failed",
        "last_active",
        "name",
        "outcome",
        "rows",
        "runs",
        "stages",
        "started",
        "stream",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.stages: list[_Stage] = []
        self.runs = self.completed = self.failed = self.rows = 0
        self.active = 0
        self.chain_of: tuple[Stage, ...] | None = None
        """The chain ``stages`` was last made from (a plan's tuple: compared by identity)."""
        self.started = time.time()
        self.last_active = time.monotonic()
        self.outcome: RunEnd | str | None = None
        self.error: dict[str, Any] | None = None
        self.batches = 0
        self.stream: dict[str, Any] | None = None

    def chain(self, stages: tuple[Stage, ...]) -> None:
        """Take the run's chain; a different chain under the same name starts afresh."""
        mine = self.stages
        if len(mine) == len(stages) and all(
            s.name == stage.name and s.mode == stage.mode.value
            for s, stage in zip(mine, stages, strict=True)
        ):
            return
        self.stages = [_Stage(stage, i) for i, stage in enumerate(stages)]

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
        # The stage each run in progress is calling, by run id: set and popped without
        # the lock (one dict operation each, atomic in CPython), read as a copy.
        self._at: dict[int, _Stage] = {}
        self.created = time.time()

    def _flow(self, name: str) -> _Flow:
        flow = self._flows.get(name)
        if flow is None:
            flow = self._flows[name] = _Flow(name)
        return flow

    # -- observer events (called in the threads running the runs) -----------------------

    def run_started(self, run: RunInfo, rows: int) -> None:
        """Count a run and its source rows; learn the flow's chain (once per plan)."""
        stages: tuple[Stage, ...] | None = getattr(run, "stages", None)
        with self._lock:
            flow = self._flows.get(run.flow_name) or self._flow(run.flow_name)
            if stages is not None and stages is not flow.chain_of:
                flow.chain(stages)
                flow.chain_of = stages
            flow.runs += 1
            flow.rows += rows
            flow.active += 1

    def _slow_stage(self, run: RunInfo, stage: Stage, position: int) -> _Stage:
        """The figures of a stage not found at its place (another flow of the same name)."""
        with self._lock:
            return self._flow(run.flow_name).stage(stage, position)

    def stage_started(self, run: RunInfo, stage: Stage, position: int) -> None:
        """Mark the stage running: which stage each run is in (a dict write, no lock)."""
        flow = self._flows.get(run.flow_name)
        figures = None
        if flow is not None:
            stages = flow.stages
            if position < len(stages):
                figures = stages[position]
        if figures is None or figures.stage_id is not stage.id:
            figures = self._slow_stage(run, stage, position)
        self._at[run.run_id] = figures

    def stage_done(self, run: RunInfo, call: StageCall) -> None:
        """Count a finished stage call: rows, duration, rate."""
        stage, position, rows_in, rows_out, filtered, dead, seconds, _ = call
        figures = self._at.pop(run.run_id, None)
        if figures is None or figures.stage_id is not stage.id:
            figures = self._slow_stage(run, stage, position)
        with self._lock:
            figures.calls += 1
            figures.rows_in += rows_in
            figures.rows_out += rows_out
            figures.filtered += filtered
            figures.dead += dead
            figures.seconds += seconds
            figures.failing = False
            at = figures.next_duration
            figures.durations[at] = seconds
            figures.next_duration = 0 if at == _LAST else at + 1

    def call_failed(self, run: RunInfo, stage: Stage, attempt: int, error: BaseException) -> None:
        """Count a failed FaaS call and keep its error; the stage is failing."""
        failure = _error(error, stage.name)
        with self._lock:
            flow = self._flow(run.flow_name)
            figures = self._at.get(run.run_id) or flow.find(stage)
            figures.failed_calls += 1
            figures.failing = True
            figures.error = failure

    def retried(self, run: RunInfo, stage: Stage, attempt: int, error: BaseException) -> None:
        """Count a retry."""
        with self._lock:
            flow = self._flow(run.flow_name)
            figures = self._at.get(run.run_id) or flow.find(stage)
            figures.retries += 1

    def run_done(self, run: RunInfo, result: RunResult | None, error: BaseException | None) -> None:
        """The run ended: its outcome, and its error when it failed."""
        failure = None if error is None else _error(error, getattr(error, "stage", None))
        self._at.pop(run.run_id, None)  # failed inside a stage: it gets no stage_done
        with self._lock:
            flow = self._flow(run.flow_name)
            flow.active = max(0, flow.active - 1)
            flow.last_active = time.monotonic()
            if result is not None:
                flow.completed += 1
                flow.outcome = result.ended
            else:
                flow.failed += 1
                flow.outcome = "failed"
                flow.error = failure

    def batch_done(self, flow: str, batch: int, result: RunResult) -> None:
        """A stream handed out a batch: the flow is a stream."""
        with self._lock:
            figures = self._flow(flow)
            figures.batches = max(figures.batches, batch)
            if figures.stream is None:
                figures.stream = {}

    def stream_committed(self, flow: str, status: StreamStatus) -> None:
        """A stream committed a batch: keep where it stands."""
        with self._lock:
            figures = self._flow(flow)
            figures.stream = status._asdict()
            figures.batches = max(figures.batches, status.batch)

    # -- reading ------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Every flow's figures as JSON-able data, in the order the flows were first seen."""
        now = time.monotonic()
        wall = time.time()
        with self._lock:
            running = {id(figures) for figures in list(self._at.values())}
            flows: list[dict[str, Any]] = [
                {
                    "name": flow.name,
                    "status": (
                        "running"
                        if flow.active or now - flow.last_active < ENDED_AFTER
                        else "ended"
                    ),
                    "outcome": getattr(flow.outcome, "value", flow.outcome),
                    "kind": "stream" if flow.stream is not None else "run",
                    "runs": flow.runs,
                    "runs_in_progress": flow.active,
                    "runs_completed": flow.completed,
                    "runs_failed": flow.failed,
                    "source_rows": flow.rows,
                    "batches": flow.batches,
                    "started": flow.started,
                    "last_error": None if flow.error is None else dict(flow.error),
                    "stream": None if flow.stream is None else dict(flow.stream),
                    "stages": [stage.view(now, id(stage) in running) for stage in flow.stages],
                }
                for flow in self._flows.values()
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


def _percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile of sorted seconds, in ms (None with no data)."""
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))
    return ordered[rank] * 1000.0
