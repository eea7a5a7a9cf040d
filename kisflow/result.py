"""What a run returns: the output rows, per-stage figures and why the run ended."""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from typing import Any

import attrs

from kisflow.modes import Mode

__all__ = ["RunEnd", "RunResult", "StageFigures", "StageStats"]


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


class StageFigures(tuple[Sequence[Any], ...]):
    """Parallel per-stage sequences (stages, then one per StageStats figure), as a run
    keeps them; ``RunResult.stages`` turns them into StageStats only when first read."""

    __slots__ = ()


@attrs.frozen
class RunResult:
    """The outcome of ``Flow.run``: ``output`` is what the last stage that ran committed."""

    flow: str
    output: list[Any] = attrs.field(repr=lambda rows: f"[{len(rows)} rows]")
    ended: RunEnd
    stopped_at: str | None
    """Name of the stage that stopped the run early (no rows, abort), else None."""
    _stages: Sequence[StageStats] | StageFigures = attrs.field(alias="stages", repr=False)
    steps: int
    duration: float

    @functools.cached_property
    def stages(self) -> tuple[StageStats, ...]:
        """Per-stage figures, in flow order (stages that never ran have ``calls == 0``).

        Built on first use from the run's raw figures, which keeps many small runs cheap.
        """
        source = self._stages
        if not isinstance(source, StageFigures):
            return tuple(source)
        return tuple(
            StageStats(stage.id, stage.name, stage.mode, *figures)
            for stage, *figures in zip(*source, strict=True)
        )

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
