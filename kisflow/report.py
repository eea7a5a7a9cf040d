"""Run reports: a ``RunResult`` as a short text table, and as DOT with figures on the nodes.

``table(result)`` shows, per stage, calls, rows in and out, rows filtered, added and
dead-lettered, retries and time, then a line saying how the run ended::

    stage       mode       calls  in  out  filtered  added  dead  retries   ms
    KeepEven    Verify         1   6    3         1      0     2        0  0.1
    ...
    run 'demo': completed after 2 steps, 3 rows out, 2 dead letters, 0 retries, 0.3 ms

``to_dot(flow, result)`` is ``flow.to_dot()`` with one more line per node, e.g.
``6 in, 3 out, 1 filtered, 2 dead``, so a rendered graph shows where rows went.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kisflow.dot import to_pydot_graph
from kisflow.errors import FlowDefinitionError
from kisflow.result import RunResult, StageStats

if TYPE_CHECKING:
    from kisflow.flow import Flow

__all__ = ["stage_label", "summary", "table", "to_dot"]

_HEADERS = ("stage", "mode", "calls", "in", "out", "filtered", "added", "dead", "retries", "ms")


def _ms(seconds: float) -> str:
    ms = seconds * 1000.0
    return f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def table(result: RunResult) -> str:
    """The run's figures per stage as an aligned text table, plus a summary line."""
    rows = [
        (
            s.name,
            s.mode.value,
            str(s.calls),
            str(s.rows_in),
            str(s.rows_out),
            str(s.filtered),
            str(s.added),
            str(s.dead_letters),
            str(s.retries),
            _ms(s.duration),
        )
        for s in result.stages
    ]
    widths = [max(len(r[i]) for r in [_HEADERS, *rows]) for i in range(len(_HEADERS))]
    lines = []
    for r in [_HEADERS, *rows]:
        cells = [
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append(summary(result))
    return "\n".join(lines)


def summary(result: RunResult) -> str:
    """One line: how the run ended, rows out, dead letters, retries and time."""
    ended = result.ended.value
    if result.stopped_at is not None:
        ended += f" at {result.stopped_at!r}"
    return (
        f"run {result.flow!r}: {ended} after {result.steps} steps, {len(result.output)} rows "
        f"out, {result.dead_letters} dead letters, {result.retries} retries, "
        f"{_ms(result.duration)} ms"
    )


def stage_label(stats: StageStats) -> str:
    """The figures line put on a stage's DOT node."""
    parts = [f"{stats.rows_in} in", f"{stats.rows_out} out"]
    if stats.filtered:
        parts.append(f"{stats.filtered} filtered")
    if stats.added:
        parts.append(f"{stats.added} added")
    if stats.dead_letters:
        parts.append(f"{stats.dead_letters} dead")
    if stats.retries:
        parts.append(f"{stats.retries} retries")
    if stats.calls != 1:
        parts.append(f"{stats.calls} calls")
    return ", ".join(parts)


def to_dot(flow: Flow, result: RunResult) -> str:
    """``flow`` as DOT text with ``result``'s figures on each stage's node.

    Raises:
        FlowDefinitionError: ``result`` is not a run of ``flow`` (stage ids differ).
    """
    by_id = {s.stage_id: s for s in result.stages}
    labels = []
    for stage in flow.stages:
        stats = by_id.get(stage.id)
        if stats is None:
            if result.stages:
                raise FlowDefinitionError(
                    f"run result of flow {result.flow!r} has no figures for stage "
                    f"{stage.name!r} ({stage.id}) of flow {flow.name!r}; pass the result "
                    f"of a run of this flow",
                    flow=flow.name,
                )
            labels.append("not run")
        else:
            labels.append(stage_label(stats))
    return str(to_pydot_graph(flow, extra_labels=labels).to_string())
