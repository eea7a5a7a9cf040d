"""The columnar lines of ``make bench``: score-avg with Polars stages (kisflow[polars]).

Stages 1-3 (verify, average, grade) take and commit DataFrames; stage 4 takes the
DataFrame and commits the grade counts as one row, like the row variants. Three figures
compare it, in this process, with the same four stages written by hand in Polars and
with the pure-Python loop; each figure times its two sides interleaved, rep by rep, in
alternating order, so a slow spell of the shared machine lands on both sides.

- ``big/columnar``: one run of 1M rows handed over as a DataFrame (as a Parquet Load or
  a columnar source gives it), vs hand-written Polars (``ratio_columnar``) and vs the
  loop over dict rows (``speedup_columnar``);
- ``mid/columnar``: 100 runs of 10,000 rows, each a DataFrame, vs hand-written Polars;
- ``big/columnar-dicts``: the same flow fed 1M dict rows, conversion to a DataFrame
  included, vs the loop (``speedup_columnar_dicts``).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import polars as pl

import kisflow as kf
from bench import workload

BIG = 1_000_000
MID_RUNS = 100
MID_ROWS = 10_000

_AVG = ((pl.col("score_1") + pl.col("score_2") + pl.col("score_3")) / 3).alias("avg_score")
GRADES = pl.Enum(["A", "B", "C"])
"""The grade's type: a fixed set of labels is an Enum in Polars (one byte a row, grouped
without hashing strings), as the dict loop's grades are three constant strings; its
``to_list()`` gives the same ``str`` values. A String column costs about 4x on the grade
and 2x on the count (docs/benchmark.md)."""
_GRADE = (
    pl.when(pl.col("avg_score") >= 80)
    .then(pl.lit("A", dtype=GRADES))
    .when(pl.col("avg_score") >= 60)
    .then(pl.lit("B", dtype=GRADES))
    .otherwise(pl.lit("C", dtype=GRADES))
    .alias("grade")
)


def _counts(frame: pl.DataFrame) -> dict[str, int]:
    counts = frame.group_by("grade").len()
    return dict(zip(counts["grade"].to_list(), counts["len"].to_list(), strict=True))


# -- the same four stages by hand, in Polars ------------------------------------------


def by_hand(frame: pl.DataFrame) -> dict[str, int]:
    """The four stages written directly in Polars, one expression each."""
    kept = frame.filter(pl.col("stu_id") % 10 != 0)
    averaged = kept.select("stu_id", _AVG)
    graded = averaged.with_columns(_GRADE)
    return _counts(graded)


# -- the kisflow stages -----------------------------------------------------------------


def verify(flow: kf.Flow, rows: pl.DataFrame) -> None:
    """Stage 1: drop every tenth student."""
    flow.commit_row_batch(rows.filter(pl.col("stu_id") % 10 != 0))


def average(flow: kf.Flow, rows: pl.DataFrame) -> None:
    """Stage 2: the average score."""
    flow.commit_row_batch(rows.select("stu_id", _AVG))


def grade(flow: kf.Flow, rows: pl.DataFrame) -> None:
    """Stage 3: the grade."""
    flow.commit_row_batch(rows.with_columns(_GRADE))


def count(flow: kf.Flow, rows: pl.DataFrame) -> None:
    """Stage 4: rows per grade, committed as one row."""
    flow.commit_row(_counts(rows))


def build(pool: kf.Pool) -> kf.Flow:
    """The score-avg flow with columnar stages."""
    pool.faas("Verify", verify)
    pool.faas("Average", average)
    pool.faas("Grade", grade)
    pool.faas("Count", count)
    return (
        kf.FlowBuilder("score-avg-columnar", pool=pool)
        .verify("Verify")
        .calculate("Average")
        .calculate("Grade")
        .expand("Count")
        .build()
    )


def run_flow(flow: kf.Flow, rows: Any) -> dict[str, int]:
    """One run; the grade counts are the single output row."""
    counts: dict[str, int] = flow.run(rows).output[0]
    return counts


# -- timing ------------------------------------------------------------------------------


def interleaved(a: Callable[[], Any], b: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, timed rep by rep in alternating order."""
    a()
    b()  # warm-up
    times: tuple[list[float], list[float]] = ([], [])
    for rep in range(repeat):
        order = ((0, a), (1, b)) if rep % 2 == 0 else ((1, b), (0, a))
        for side, fn in order:
            gc.collect()
            started = time.perf_counter()
            fn()
            times[side].append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


def _check(expected: dict[str, int], got: dict[str, int], what: str) -> None:
    if expected != got:
        raise SystemExit(f"{what}: grade counts differ: {expected} vs kisflow {got}")


def _report(name: str, rows: int, other: str, t_other: float, t_flow: float) -> None:
    print(
        f"{name:<18} {other} {rows / t_other / 1e6:6.2f} M rows/s   kisflow "
        f"{rows / t_flow / 1e6:6.2f} M rows/s   ratio {t_other / t_flow:5.2f}",
        flush=True,
    )


def figures(repeat: int = 5) -> dict[str, float]:
    """Time the four columnar figures; print a line per comparison and return them."""
    flow = build(kf.Pool())
    rows = workload.make_rows(BIG)
    frame = pl.from_dicts(rows)
    expected = workload.loop(rows)
    _check(expected, run_flow(flow, frame), "big/columnar")
    _check(expected, run_flow(flow, rows), "big/columnar-dicts")
    _check(expected, by_hand(frame), "big/polars")

    t_hand, t_flow = interleaved(lambda: by_hand(frame), lambda: run_flow(flow, frame), repeat)
    _report("big/columnar", BIG, "polars", t_hand, t_flow)
    t_loop, t_flow_big = interleaved(
        lambda: workload.loop(rows), lambda: run_flow(flow, frame), repeat
    )
    _report("big/columnar", BIG, "loop  ", t_loop, t_flow_big)
    t_loop_d, t_dicts = interleaved(
        lambda: workload.loop(rows), lambda: run_flow(flow, rows), repeat
    )
    _report("big/columnar-dicts", BIG, "loop  ", t_loop_d, t_dicts)

    mids = [pl.from_dicts(workload.make_rows(MID_ROWS)) for _ in range(MID_RUNS)]

    def hand_mid() -> None:
        for m in mids:
            by_hand(m)

    def flow_mid() -> None:
        for m in mids:
            flow.run(m)

    t_hand_mid, t_flow_mid = interleaved(hand_mid, flow_mid, repeat)
    _report("mid/columnar", MID_RUNS * MID_ROWS, "polars", t_hand_mid, t_flow_mid)
    return {
        "ratio_columnar": t_hand / t_flow,
        "speedup_columnar": t_loop / t_flow_big,
        "speedup_columnar_dicts": t_loop_d / t_dicts,
        "ratio_mid_columnar": t_hand_mid / t_flow_mid,
    }


if __name__ == "__main__":
    print(" ".join(f"{k}={v:.2f}" for k, v in figures().items()))
