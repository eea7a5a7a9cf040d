"""Quickstart: the student-score flow, built with the FlowBuilder and run on mixed rows.

Rows arrive as dicts, JSON strings or ScoreIn instances; the AvgStuScore stage declares
``rows: list[ScoreIn]`` so kisflow converts every row on entry.
"""

from __future__ import annotations

import attrs

import kisflow as kf


@attrs.define
class ScoreIn:
    """A student's three scores."""

    stu_id: int
    score_1: int = 0
    score_2: int = 0
    score_3: int = 0


@attrs.define
class ScoreOut:
    """A student's average score."""

    stu_id: int
    avg_score: float


@kf.faas("AvgStuScore", output=ScoreOut)
def avg_stu_score(flow: kf.Flow, rows: list[ScoreIn]) -> None:
    """Calculate: the average of the three scores."""
    for r in rows:
        flow.commit_row(ScoreOut(r.stu_id, (r.score_1 + r.score_2 + r.score_3) / 3))


@kf.faas("PrintStuAvgScore")
def print_avg(flow: kf.Flow, rows: list[ScoreOut]) -> None:
    """Expand: print each average and pass the rows on."""
    for r in rows:
        print(f"stu_id={r.stu_id} avg_score={r.avg_score:.2f}")
        flow.commit_row(r)


def main() -> kf.RunResult:
    """Build the flow, run it on three rows of three kinds, print the graph."""
    flow = (
        kf.FlowBuilder("CalStuAvgScore").calculate("AvgStuScore").expand("PrintStuAvgScore").build()
    )
    result = flow.run(
        [
            {"stu_id": 101, "score_1": 100, "score_2": 90, "score_3": 80},
            '{"stu_id": 102, "score_1": 100, "score_2": 70, "score_3": 60}',
            ScoreIn(103, 1, 2, 3),
        ]
    )
    assert [r.stu_id for r in result.output] == [101, 102, 103]
    print(f"run ended: {result.ended.value}, {len(result.output)} rows out")
    print(flow.to_dot())
    return result


if __name__ == "__main__":
    main()
