"""What a run returns: the output rows, per-stage figures and why the run ended."""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from typing import Any

import attrs

from kisflow.modes import Mode

__all__ = ["RunEnd", "RunResult", "StageStats"]


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
    """Seconds spent in the stage, conversion included."""


@attrs.frozen
class RunResult:
    """The outcome of ``Flow.run``: ``output`` is what the last stage that ran committed."""

    flow: str
    output: list[Any] = attrs.field(repr=lambda rows: f"[{len(rows)} rows]")
    ended: RunEnd
    stopped_at: str | None
    """Name of the stage that stopped the run early (no rows, abort), else None."""
    steps: int
    duration: float
    _figures: tuple[Sequence[Any], ...] = attrs.field(default=(), repr=False, alias="figures")
    """Parallel sequences (stages, calls, rows in, rows out, seconds); ``stages`` is built
    from them on first use, which keeps many small runs cheap."""

    @functools.cached_property
    def stages(self) -> tuple[StageStats, ...]:
        """Per-stage figures, in flow order (stages that never ran have ``calls == 0``)."""
        if not self._figures:
            return ()
        return tuple(
            StageStats(
                stage_id=stage.id,
                name=stage.name,
                mode=stage.mode,
                calls=calls,
                rows_in=rows_in,
                rows_out=rows_out,
                duration=duration,
            )
            for stage, calls, rows_in, rows_out, duration in zip(*self._figures, strict=True)
        )

    def stage(self, name: str) -> StageStats:
        """The figures of the stage named ``name`` (or with that stage id)."""
        for s in self.stages:
            if name in (s.name, s.stage_id):
                return s
        raise KeyError(f"no stage {name!r} in flow {self.flow!r}")
