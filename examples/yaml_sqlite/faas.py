"""The FaaS of the YAML-defined flows in conf/: verify, average and summarise scores.

The Save and Load stages need none: their connector (type sqlite) is built in. Running
this file registers the callbacks in the current pool; the CLI does that with
``kisflow run conf --faas faas.py``.
"""

from __future__ import annotations

import attrs

import kisflow as kf


@attrs.define
class Scores:
    """A student's three scores."""

    stu_id: int
    score_1: int
    score_2: int
    score_3: int


@attrs.define
class Average:
    """A student's average, as saved to and loaded from SQLite."""

    stu_id: int
    avg_score: float


@kf.faas("VerifyScores", output=Scores)
def verify_scores(flow: kf.Flow, rows: list[Scores]) -> None:
    """Verify: keep students whose scores are all within 0..max_score."""
    top = int(flow.get_func_param("max_score"))
    for r in rows:
        if all(0 <= s <= top for s in (r.score_1, r.score_2, r.score_3)):
            flow.commit_row(r)


@kf.faas("AvgScore", output=Average)
def avg_score(flow: kf.Flow, rows: list[Scores]) -> None:
    """Calculate: each student's average, rounded to two places."""
    for r in rows:
        flow.commit_row(Average(r.stu_id, round((r.score_1 + r.score_2 + r.score_3) / 3, 2)))


@kf.faas("PrintSummary")
def print_summary(flow: kf.Flow, rows: list[Average]) -> None:
    """Expand: print each average and a summary line; commit the summary."""
    mark = float(flow.get_func_param("pass_mark"))
    for r in rows:
        verdict = "pass" if r.avg_score >= mark else "fail"
        print(f"stu_id={r.stu_id} avg_score={r.avg_score:.2f} {verdict}")
    passed = sum(r.avg_score >= mark for r in rows)
    mean = sum(r.avg_score for r in rows) / len(rows)
    print(f"summary: {len(rows)} students, {passed} passed, class average {mean:.2f}")
    flow.commit_row({"students": len(rows), "passed": passed, "class_average": round(mean, 2)})
