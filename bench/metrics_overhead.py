"""What Prometheus metrics cost: the score-avg flow with metrics off vs on, against a loop.

Standalone (``python bench/metrics_overhead.py [--rows N] [--runs R] [--repeat K]``), to be
folded into ``make bench``. It times the canonical score-avg workload
(/work/shared/bench/WORKLOAD.md), written the KisFlow way (``commit_row`` per row), in two
shapes: *big* (one run of N rows) and *small* (R runs of 100 rows, where per-run and
per-stage costs show). Each figure is the median of K timed passes after a warm-up;
ratios are loop time / flow time (1.0 = no overhead, higher is better). The last line is
``big_off=... big_on=... small_off=... small_on=... on_vs_off_big=... on_vs_off_small=...``
where ``on_vs_off`` is flow time with metrics on / off (1.0 = metrics cost nothing).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import kisflow as kf
from kisflow import metrics
from kisflow.testing import isolated_pool


def make_rows(n: int) -> list[dict[str, int]]:
    """Row i of the canonical workload."""
    return [
        {"stu_id": i, "score_1": i % 100, "score_2": (i * 7) % 100, "score_3": (i * 13) % 100}
        for i in range(n)
    ]


def plain_loop(rows: list[dict[str, int]]) -> dict[str, int]:
    """The same four stages as one hand-written loop."""
    kept = [r for r in rows if r["stu_id"] % 10 != 0]
    avg = [
        {"stu_id": r["stu_id"], "avg_score": (r["score_1"] + r["score_2"] + r["score_3"]) / 3}
        for r in kept
    ]
    graded = []
    for r in avg:
        a = r["avg_score"]
        graded.append({**r, "grade": "A" if a >= 80 else "B" if a >= 60 else "C"})
    counts: dict[str, int] = {}
    for r in graded:
        counts[r["grade"]] = counts.get(r["grade"], 0) + 1
    return counts


def build_flow(counts: dict[str, int]) -> kf.Flow:
    """The score-avg flow; the Expand stage counts grades into ``counts``."""

    @kf.faas("VerifyStu")
    def verify(flow: kf.Flow) -> None:
        for r in flow.input():
            if r["stu_id"] % 10 != 0:
                flow.commit_row(r)

    @kf.faas("AvgScore")
    def avg(flow: kf.Flow) -> None:
        for r in flow.input():
            flow.commit_row(
                {
                    "stu_id": r["stu_id"],
                    "avg_score": (r["score_1"] + r["score_2"] + r["score_3"]) / 3,
                }
            )

    @kf.faas("Grade")
    def grade(flow: kf.Flow) -> None:
        for r in flow.input():
            a = r["avg_score"]
            flow.commit_row({**r, "grade": "A" if a >= 80 else "B" if a >= 60 else "C"})

    @kf.faas("CountGrades")
    def count(flow: kf.Flow) -> None:
        for r in flow.input():
            counts[r["grade"]] = counts.get(r["grade"], 0) + 1
            flow.commit_row(r)

    return (
        kf.FlowBuilder("score-avg")
        .verify("VerifyStu")
        .calculate("AvgScore")
        .calculate("Grade")
        .expand("CountGrades")
        .build()
    )


def timed(fn: Callable[[], Any]) -> float:
    """Wall time of one call."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(cases: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median time per case; cases alternate within each pass so drift hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():
        fn()  # warm-up
    for _ in range(repeat):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def with_metrics(on: bool, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run with metrics on (a fresh registry each pass) or off."""

    def call() -> Any:
        if on:
            metrics.enable()
        try:
            return fn()
        finally:
            metrics.disable()

    return call


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the measurement, print a table and the final key=value line; return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the big shape")
    parser.add_argument("--runs", type=int, default=2_000, help="100-row runs of the small shape")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes per figure")
    args = parser.parse_args(argv)

    big = make_rows(args.rows)
    small = make_rows(100)
    expected = plain_loop(big)
    figures: dict[str, float] = {}
    metrics.disable()
    with isolated_pool():
        counts: dict[str, int] = {}
        flow = build_flow(counts)
        flow.run(big)
        if counts != expected:
            raise SystemExit(f"grade counts differ: flow {counts} vs loop {expected}")

        def small_loop() -> None:
            for _ in range(args.runs):
                plain_loop(small)

        def small_flow() -> None:
            for _ in range(args.runs):
                flow.run(small)

        for shape, loop_fn, flow_fn in (
            ("big", lambda: plain_loop(big), lambda: flow.run(big)),
            ("small", small_loop, small_flow),
        ):
            got = interleaved(
                {
                    "loop": loop_fn,
                    "off": with_metrics(False, flow_fn),
                    "on": with_metrics(True, flow_fn),
                },
                args.repeat,
            )
            figures[f"time_{shape}_loop"] = got["loop"]
            figures[f"time_{shape}_off"] = got["off"]
            figures[f"time_{shape}_on"] = got["on"]

    for shape in ("big", "small"):
        loop_time = figures[f"time_{shape}_loop"]
        for state in ("off", "on"):
            figures[f"{shape}_{state}"] = loop_time / figures[f"time_{shape}_{state}"]
        figures[f"on_vs_off_{shape}"] = figures[f"time_{shape}_on"] / figures[f"time_{shape}_off"]

    print(f"score-avg, big: {args.rows} rows x 1 run; small: 100 rows x {args.runs} runs")
    print(f"{'shape':6} {'loop s':>8} {'off s':>8} {'on s':>8} {'ratio off':>10} {'ratio on':>9}")
    for shape in ("big", "small"):
        print(
            f"{shape:6} {figures[f'time_{shape}_loop']:8.3f} {figures[f'time_{shape}_off']:8.3f} "
            f"{figures[f'time_{shape}_on']:8.3f} {figures[f'{shape}_off']:10.3f} "
            f"{figures[f'{shape}_on']:9.3f}"
        )
    keys = ("big_off", "big_on", "small_off", "small_on", "on_vs_off_big", "on_vs_off_small")
    print(" ".join(f"{k}={figures[k]:.3f}" for k in keys))
    return figures


if __name__ == "__main__":
    main()
