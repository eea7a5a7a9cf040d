"""What a run returns: the output rows, per-stage figures and why the run ended."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from kisflow.modes import Mode

if TYPE_CHECKING:
    from kisflow.stage import Stage

__all__ = ["Log", "RunEnd", "RunResult", "StageStats", "stage_stats"]


class RunEnd(enum.Enum):
    """Why a run ended."""

    COMPLETED = "completed"
    """The last stage ran (its output may be empty: a sink that commits nothing)."""
    NO_ROWS = "no_rows"
    """A stage before the last committed no rows, which stops a flow (KisFlow's rule)."""
    ABORTED = "aborted"
    """A stage asked for ``actions.abort``."""
    DISABLED = "disabled"
    """The flow's status is 0: nothing ran."""


@attrs.frozen
class StageStats:
    """One stage's figures over a run (summed when jumps run it more than once)."""

    stage_id: str
    name: str
    mode: Mode
    calls: int
    rows_in: int
    rows_out: int
    duration: float
    """Seconds spent in the stage, conversion and retries included."""
    dead_letters: int = 0
    """Rows the stage's dead-letter sink accepted (counted from the sink, not derived)."""
    filtered: int = 0
    """Rows taken in but neither passed on nor dead-lettered, summed per call:
    ``max(0, in - out - dead)``."""
    added: int = 0
    """Rows passed on beyond those taken in, summed per call: ``max(0, out + dead - in)``
    (an Expand or Load stage that emits more rows than it takes)."""
    retries: int = 0
    """FaaS calls repeated after an error (``retry_times``); a retry never adds rows."""

    def balanced(self) -> bool:
        """Whether ``rows_in + added == rows_out + filtered + dead_letters`` (always true
        for a run kisflow made; for stages that only drop rows, ``added`` is 0)."""
        return self.rows_in + self.added == self.rows_out + self.filtered + self.dead_letters


Log = list[tuple[int, int, int, int, float]]
"""A run's raw record: one ``(position, rows_in, rows_out, dead_letters, seconds)`` entry
per stage call, which ``RunResult.stages`` sums into StageStats only when first read."""


def stage_stats(
    stages: Sequence[Stage], log: Log, retries: dict[int, int] | None
) -> tuple[StageStats, ...]:
    """Per-stage figures, summed over every call of each stage (``retries`` by position)."""
    n = len(stages)
    calls, rows_in, rows_out, dead, filtered, added = ([0] * n for _ in range(6))
    seconds = [0.0] * n
    for pos, got, out, dropped, took in log:
        calls[pos] += 1
        rows_in[pos] += got
        rows_out[pos] += out
        dead[pos] += dropped
        seconds[pos] += took
        left = got - out - dropped
        if left >= 0:
            filtered[pos] += left
        else:
            added[pos] -= left
    retried = retries or {}
    return tuple(
        StageStats(
            stage.id,
            stage.name,
            stage.mode,
            calls[i],
            rows_in[i],
            rows_out[i],
            seconds[i],
            dead[i],
            filtered[i],
            added[i],
            retried.get(i, 0),
        )
        for i, stage in enumerate(stages)
    )


@attrs.define(slots=True, unsafe_hash=True, repr=False)
class RunResult:
    """The outcome of ``Flow.run``: ``output`` is what the last stage that ran committed.

    Read-only: every field is a property over a private slot, which a run fills with
    plain slot stores (a frozen class's ``__setattr__`` made building one the biggest
    fixed cost of a small run).
    """

    _flow: str
    _output: list[Any]
    _ended: RunEnd
    _stopped_at: str | None
    _stages: Sequence[StageStats] | Log
    _steps: int
    _duration: float
    _stats: tuple[StageStats, ...] | None = attrs.field(
        default=None, init=False, eq=False, hash=False
    )
    _chain: Sequence[Stage] | None = attrs.field(default=None, init=False, eq=False, hash=False)
    """Set by the run that made it: ``_stages`` is then its raw ``Log``, summed on first
    read of ``stages`` (with ``_retries``), which keeps many small runs cheap."""
    _retries: dict[int, int] | None = attrs.field(default=None, init=False, eq=False, hash=False)

    @property
    def flow(self) -> str:
        """The flow's name."""
        return self._flow

    @property
    def output(self) -> list[Any]:
        """What the last stage that ran committed."""
        return self._output

    @property
    def ended(self) -> RunEnd:
        """Why the run ended."""
        return self._ended

    @property
    def stopped_at(self) -> str | None:
        """Name of the stage that stopped the run early (no rows, abort), else None."""
        return self._stopped_at

    @property
    def steps(self) -> int:
        """Stage calls the run made."""
        return self._steps

    @property
    def duration(self) -> float:
        """Seconds from the first stage call to the end of the last."""
        return self._duration

    def __repr__(self) -> str:
        return (
            f"RunResult(flow={self._flow!r}, output=[{len(self._output)} rows], "
            f"ended={self._ended!r}, stopped_at={self._stopped_at!r}, steps={self._steps!r}, "
            f"duration={self._duration!r})"
        )

    @property
    def stages(self) -> tuple[StageStats, ...]:
        """Per-stage figures, in flow order (stages that never ran have ``calls == 0``).

        Built on first use from the run's raw record, which keeps many small runs cheap.
        """
        stats = self._stats
        if stats is None:
            if self._chain is not None:
                stats = stage_stats(self._chain, self._stages, self._retries)  # type: ignore[arg-type]
            else:
                stats = tuple(self._stages)  # type: ignore[arg-type]
            self._stats = stats
        return stats

    @property
    def dead_letters(self) -> int:
        """Rows dead-lettered over the whole run."""
        return sum(s.dead_letters for s in self.stages)

    @property
    def retries(self) -> int:
        """FaaS calls retried over the whole run."""
        return sum(s.retries for s in self.stages)

    def stage(self, name: str) -> StageStats:
        """The figures of the stage named ``name`` (or with that stage id)."""
        for s in self.stages:
            if name in (s.name, s.stage_id):
                return s
        raise KeyError(f"no stage {name!r} in flow {self.flow!r}")
