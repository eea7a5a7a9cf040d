"""The ``score-avg`` workload: data, the pure-Python loop, and the same stages in kisflow.

The loop is the hand-written equivalent of the flow: four stages, each a plain ``for``
loop building the next list, the previous list dropped as soon as the next exists. The
kisflow stages are written the KisFlow way (``commit_row`` per row) and, as a second
variant, committing whole lists: new lists handed over with ``commit_row_batch(rows,
copy=False)``, and rows updated in place passed on with ``actions.data_reuse``.
"""

from __future__ import annotations

from typing import Any

import attrs

import kisflow as kf

Row = dict[str, Any]


def make_rows(n: int) -> list[Row]:
    """Row i is {stu_id: i, score_1: i % 100, score_2: 7i % 100, score_3: 13i % 100}."""
    return [
        {"stu_id": i, "score_1": i % 100, "score_2": (i * 7) % 100, "score_3": (i * 13) % 100}
        for i in range(n)
    ]


@attrs.define
class ScoreIn:
    """The typed input of stage 2 in the ``typed`` shape."""

    stu_id: int
    score_1: int
    score_2: int
    score_3: int


# -- the pure-Python loop ------------------------------------------------------------------


def loop(rows: list[Row]) -> dict[str, int]:
    """The four stages by hand, each building the next list."""
    kept = []
    for row in rows:
        if row["stu_id"] % 10 != 0:
            kept.append(row)
    averaged = []
    for row in kept:
        averaged.append(
            {
                "stu_id": row["stu_id"],
                "avg_score": (row["score_1"] + row["score_2"] + row["score_3"]) / 3,
            }
        )
    del kept
    return _grade_and_count(averaged)


def loop_typed(rows: list[Row]) -> dict[str, int]:
    """The loop of the ``typed`` shape: stage 2 builds ScoreIn objects by hand first."""
    kept = []
    for row in rows:
        if row["stu_id"] % 10 != 0:
            kept.append(row)
    typed = [ScoreIn(r["stu_id"], r["score_1"], r["score_2"], r["score_3"]) for r in kept]
    del kept
    averaged = []
    for s in typed:
        averaged.append({"stu_id": s.stu_id, "avg_score": (s.score_1 + s.score_2 + s.score_3) / 3})
    del typed
    return _grade_and_count(averaged)


def _grade_and_count(averaged: list[Row]) -> dict[str, int]:
    """Stages 3 and 4 of both loops: grade each row, then count rows per grade."""
    graded = []
    for row in averaged:
        avg = row["avg_score"]
        row["grade"] = "A" if avg >= 80 else "B" if avg >= 60 else "C"
        graded.append(row)
    del averaged
    counts: dict[str, int] = {}
    for row in graded:
        counts[row["grade"]] = counts.get(row["grade"], 0) + 1
    return counts


# -- kisflow stages, KisFlow style (commit_row per row) ---------------------------------


def verify(flow: kf.Flow) -> None:
    """Stage 1: drop every tenth student."""
    for row in flow.input():
        if row["stu_id"] % 10 != 0:
            flow.commit_row(row)


def average(flow: kf.Flow) -> None:
    """Stage 2: the average score."""
    for row in flow.input():
        flow.commit_row(
            {
                "stu_id": row["stu_id"],
                "avg_score": (row["score_1"] + row["score_2"] + row["score_3"]) / 3,
            }
        )


def average_typed(flow: kf.Flow, rows: list[ScoreIn]) -> None:
    """Stage 2 of the ``typed`` shape: rows arrive converted to ScoreIn."""
    for s in rows:
        flow.commit_row({"stu_id": s.stu_id, "avg_score": (s.score_1 + s.score_2 + s.score_3) / 3})


def grade(flow: kf.Flow) -> None:
    """Stage 3: the grade."""
    for row in flow.input():
        avg = row["avg_score"]
        row["grade"] = "A" if avg >= 80 else "B" if avg >= 60 else "C"
        flow.commit_row(row)


def count(flow: kf.Flow) -> None:
    """Stage 4: rows per grade, committed as one row."""
    counts: dict[str, int] = {}
    for row in flow.input():
        counts[row["grade"]] = counts.get(row["grade"], 0) + 1
    flow.commit_row(counts)


# -- kisflow stages committing whole lists ---------------------------------------------


def verify_batch(flow: kf.Flow) -> None:
    """Stage 1, one commit; the new list is handed over (``copy=False``), not copied."""
    flow.commit_row_batch([row for row in flow.input() if row["stu_id"] % 10 != 0], copy=False)


def average_batch(flow: kf.Flow) -> None:
    """Stage 2, one commit of a new list, handed over."""
    flow.commit_row_batch(
        [
            {"stu_id": r["stu_id"], "avg_score": (r["score_1"] + r["score_2"] + r["score_3"]) / 3}
            for r in flow.input()
        ],
        copy=False,
    )


def grade_batch(flow: kf.Flow) -> None:
    """Stage 3: grades its rows in place and passes its input on (``data_reuse``)."""
    for row in flow.input():
        avg = row["avg_score"]
        row["grade"] = "A" if avg >= 80 else "B" if avg >= 60 else "C"
    flow.next(kf.actions.data_reuse)


def build(variant: str, pool: kf.Pool) -> kf.Flow:
    """The score-avg flow; ``variant`` is ``row``, ``batch`` or ``typed``."""
    stage2 = {"row": average, "batch": average_batch, "typed": average_typed}[variant]
    pool.faas("Verify", verify_batch if variant == "batch" else verify)
    pool.faas("Average", stage2)
    pool.faas("Grade", grade_batch if variant == "batch" else grade)
    pool.faas("Count", count)
    return (
        kf.FlowBuilder(f"score-avg-{variant}", pool=pool)
        .verify("Verify")
        .calculate("Average")
        .calculate("Grade")
        .expand("Count")
        .build()
    )


def run_flow(flow: kf.Flow, rows: list[Row]) -> dict[str, int]:
    """One run; the grade counts are the single output row."""
    result = flow.run(rows)
    counts: dict[str, int] = result.output[0]
    return counts
