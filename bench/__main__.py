"""``make bench``: the score-avg workload, kisflow against a pure-Python loop.

Each shape times the loop and the flow side by side in this process (median of
``--repeat`` timed runs after a warm-up) and reports rows/s and their ratio (1.0 = no
overhead). The ``big`` and ``small`` shapes run again with Prometheus metrics on, and the
``parallel`` shape (bench/parallel.py) reports the speed-up of 2 processes over 1. Peak
memory of the ``big`` shape is measured in fresh subprocesses, one per side, as the peak
resident set size.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import kisflow as kf
from bench import columnar, parallel, stream, window, workload
from kisflow import metrics

BIG = 1_000_000
SMALL_RUNS = 10_000
SMALL_ROWS = 100


def _median_seconds(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _check(expected: dict[str, int], got: dict[str, int], what: str) -> None:
    if expected != got:
        raise SystemExit(f"{what}: grade counts differ: loop {expected} vs kisflow {got}")


def shape_big(variant: str, repeat: int) -> float:
    """One run over N rows; returns kisflow/loop throughput ratio."""
    rows = workload.make_rows(BIG)
    loop = workload.loop_typed if variant == "typed" else workload.loop
    flow = workload.build(variant, kf.Pool())
    _check(loop(rows), workload.run_flow(flow, rows), f"big/{variant}")
    t_loop = _median_seconds(lambda: loop(rows), repeat)
    t_flow = _median_seconds(lambda: workload.run_flow(flow, rows), repeat)
    _report(f"big/{variant}", BIG, t_loop, t_flow)
    return t_loop / t_flow


def with_metrics(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run with Prometheus metrics on (counted, not served)."""

    def call() -> Any:
        metrics.enable()
        try:
            return fn()
        finally:
            metrics.disable()

    return call


def shape_metrics(repeat: int) -> tuple[float, float]:
    """The big and small shapes (commit_row per row) with metrics on: ratios to the loop."""
    rows = workload.make_rows(BIG)
    flow = workload.build("row", kf.Pool())
    t_loop = _median_seconds(lambda: workload.loop(rows), repeat)
    t_flow = _median_seconds(with_metrics(lambda: workload.run_flow(flow, rows)), repeat)
    _report("big/metrics", BIG, t_loop, t_flow)
    loop_all, flow_all = _small_sides(flow)
    t_loop_small = _median_seconds(loop_all, repeat)
    t_flow_small = _median_seconds(with_metrics(flow_all), repeat)
    _report("small/metrics", SMALL_RUNS * SMALL_ROWS, t_loop_small, t_flow_small)
    return t_loop / t_flow, t_loop_small / t_flow_small


def _small_sides(flow: kf.Flow) -> tuple[Callable[[], None], Callable[[], None]]:
    """The small shape's two sides: the loop and ``flow`` over the same 100-row batches."""
    batches = [workload.make_rows(SMALL_ROWS) for _ in range(SMALL_RUNS)]

    def loop_all() -> None:
        for b in batches:
            workload.loop(b)

    def flow_all() -> None:
        for b in batches:
            flow.run(b)

    return loop_all, flow_all


def shape_small(variant: str, repeat: int) -> float:
    """Many runs of small batches (per-run scheduling overhead)."""
    flow = workload.build(variant, kf.Pool())
    batch = workload.make_rows(SMALL_ROWS)
    _check(workload.loop(batch), workload.run_flow(flow, batch), f"small/{variant}")
    loop_all, flow_all = _small_sides(flow)
    t_loop = _median_seconds(loop_all, repeat)
    t_flow = _median_seconds(flow_all, repeat)
    _report(f"small/{variant}", SMALL_RUNS * SMALL_ROWS, t_loop, t_flow)
    return t_loop / t_flow


def _report(name: str, rows: int, t_loop: float, t_flow: float) -> None:
    print(
        f"{name:<14} loop {rows / t_loop / 1e6:6.2f} M rows/s   kisflow "
        f"{rows / t_flow / 1e6:6.2f} M rows/s   ratio {t_loop / t_flow:5.2f}",
        flush=True,
    )


def peak_rss_mib(side: str) -> float:
    """Peak RSS of a fresh interpreter that runs the big shape once on ``side``."""
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--memory-child", side],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout)["peak_mib"])


def _memory_child(side: str) -> None:
    rows = workload.make_rows(BIG)
    if side == "loop":
        workload.loop(rows)
    else:
        flow = workload.build("row", kf.Pool())
        workload.run_flow(flow, rows)
    print(json.dumps({"peak_mib": _peak_rss_kib() / 1024}))


def _peak_rss_kib() -> int:
    """This process's peak RSS. VmHWM, unlike ru_maxrss, is not inherited across exec."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str] | None = None) -> None:
    """Run every shape and print the summary line tools read."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per side (median)")
    parser.add_argument(
        "--only",
        choices=["big", "small", "typed", "metrics"],
        help="run one shape (no summary line)",
    )
    parser.add_argument("--memory-child", choices=["loop", "kisflow"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(args.memory_child)
        return
    if args.only == "small":
        shape_small("row", args.repeat)
        shape_small("batch", args.repeat)
        return
    if args.only == "big":
        shape_big("row", args.repeat)
        shape_big("batch", args.repeat)
        return
    if args.only == "typed":
        shape_big("typed", args.repeat)
        return
    if args.only == "metrics":
        shape_metrics(args.repeat)
        return
    ratios = {
        "ratio_big": shape_big("row", args.repeat),
        "ratio_small": shape_small("row", args.repeat),
        "ratio_typed": shape_big("typed", args.repeat),
        "ratio_big_batch": shape_big("batch", args.repeat),
        "ratio_small_batch": shape_small("batch", args.repeat),
    }
    ratios["ratio_big_metrics"], ratios["ratio_small_metrics"] = shape_metrics(args.repeat)
    ratios["speedup_parallel"] = parallel.speedup()
    print(f"parallel       2 processes vs 1: speed-up {ratios['speedup_parallel']:.2f}x")
    loop_mib, flow_mib = peak_rss_mib("loop"), peak_rss_mib("kisflow")
    print(
        f"peak RSS, big shape: loop {loop_mib:.0f} MiB, kisflow {flow_mib:.0f} MiB "
        f"({flow_mib / loop_mib:.2f}x)"
    )
    ratios["mem_ratio_big"] = flow_mib / loop_mib
    ratios.update(columnar.figures(args.repeat))  # bench/columnar.py: the Polars stages
    ratios.update(stream.run(args.repeat))  # Redis Streams -> SQLite (bench/stream.py)
    ratios.update(window.figures(args.repeat))  # bench/window.py: keyed tumbling counts
    print(" ".join(f"{k}={v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
