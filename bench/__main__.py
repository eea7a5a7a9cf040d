"""``make bench``: the score-avg workload, kisflow against a pure-Python loop.

Every figure times its two sides interleaved, rep by rep (loop, flow, loop, flow, ...,
after a warm-up of each), and reports the ratio of their medians (1.0 = no overhead), so
a slow spell of a shared machine lands on both sides rather than on one. The figures are
the functions in ``FIGURES``, run in order; each prints its lines and returns its
entries for the tools line, the last line printed (``name=value`` pairs). Another bench
module adds its figures with one call: ``FIGURES.append(columnar.figures)``.

Peak memory of the ``big`` shape is measured in fresh subprocesses, one per side, as the
peak resident set size; the ``parallel`` shape (bench/parallel.py) reports the speed-up
of 2 processes over 1.
"""

from __future__ import annotations

import argparse
import asyncio
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
from bench import columnar, dashboard, parallel, stream, window, workload
from kisflow import metrics

BIG = 1_000_000
SMALL_RUNS = 10_000
SMALL_ROWS = 100
ARUN_RUNS = 1_000
"""Sequential runs in the ``arun`` figure."""
FIXED_RUNS = 20_000
"""Runs of the four trivial stages the fixed cost is measured on."""

Figure = Callable[[int], dict[str, float]]
"""A figure: given the reps per side, print its lines and return its tools-line entries."""


def paired(loop: Callable[[], Any], flow: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median seconds of ``loop`` and of ``flow``, timed interleaved rep by rep.

    Each side is warmed up once; then every rep times one call of each, the side that
    goes first alternating, with a garbage collection before each call.
    """
    loop()
    flow()
    loops: list[float] = []
    flows: list[float] = []
    for rep in range(repeat):
        order = ((loop, loops), (flow, flows)) if rep % 2 == 0 else ((flow, flows), (loop, loops))
        for fn, times in order:
            gc.collect()
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    return statistics.median(loops), statistics.median(flows)


def _check(expected: dict[str, int], got: dict[str, int], what: str) -> None:
    if expected != got:
        raise SystemExit(f"{what}: grade counts differ: loop {expected} vs kisflow {got}")


def _report(name: str, rows: int, t_loop: float, t_flow: float) -> float:
    print(
        f"{name:<18} loop {rows / t_loop / 1e6:6.2f} M rows/s   kisflow "
        f"{rows / t_flow / 1e6:6.2f} M rows/s   ratio {t_loop / t_flow:5.2f}",
        flush=True,
    )
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


# -- the shapes ----------------------------------------------------------------------------


def shape_big(variant: str, repeat: int, *, metered: bool = False) -> float:
    """One run over 1M rows; returns the kisflow/loop throughput ratio."""
    rows = workload.make_rows(BIG)
    loop = workload.loop_typed if variant == "typed" else workload.loop
    flow = workload.build(variant, kf.Pool())
    _check(loop(rows), workload.run_flow(flow, rows), f"big/{variant}")

    def flow_side() -> None:
        workload.run_flow(flow, rows)

    side = with_metrics(flow_side) if metered else flow_side
    t_loop, t_flow = paired(lambda: loop(rows), side, repeat)
    return _report("big/metrics" if metered else f"big/{variant}", BIG, t_loop, t_flow)


def _small_batches() -> list[list[workload.Row]]:
    return [workload.make_rows(SMALL_ROWS) for _ in range(SMALL_RUNS)]


def _loop_all(batches: list[list[workload.Row]]) -> Callable[[], None]:
    def loop_all() -> None:
        for b in batches:
            workload.loop(b)

    return loop_all


def shape_small(variant: str, repeat: int, *, metered: bool = False) -> float:
    """10,000 runs of 100 rows (per-run scheduling overhead)."""
    flow = workload.build(variant, kf.Pool())
    batch = workload.make_rows(SMALL_ROWS)
    _check(workload.loop(batch), workload.run_flow(flow, batch), f"small/{variant}")
    batches = _small_batches()

    def flow_all() -> None:
        run = flow.run
        for b in batches:
            run(b)

    side = with_metrics(flow_all) if metered else flow_all
    t_loop, t_flow = paired(_loop_all(batches), side, repeat)
    name = "small/metrics" if metered else f"small/{variant}"
    return _report(name, SMALL_RUNS * SMALL_ROWS, t_loop, t_flow)


def shape_stream_small(repeat: int) -> float:
    """``flow.stream(rows, batch_size=100)`` over the small shape's rows vs the loop."""
    flow = workload.build("row", kf.Pool())
    batches = _small_batches()
    rows = [row for b in batches for row in b]
    expected: dict[str, int] = {}
    for b in batches:
        for grade, n in workload.loop(b).items():
            expected[grade] = expected.get(grade, 0) + n
    got: dict[str, int] = {}
    for result in flow.stream(rows, batch_size=SMALL_ROWS, progress=False):
        for grade, n in result.output[0].items():
            got[grade] = got.get(grade, 0) + n
    _check(expected, got, "stream/small")

    def stream_all() -> None:
        for _ in flow.stream(rows, batch_size=SMALL_ROWS, progress=False):
            pass

    t_loop, t_flow = paired(_loop_all(batches), stream_all, repeat)
    return _report("stream/small", len(rows), t_loop, t_flow)


def stream_cost_us(repeat: int) -> float:
    """Microseconds a stream of 100-row batches adds per batch to the runs it makes.

    The other side cuts the same batches from the same list the way the stream does (a
    slice per batch) and calls ``flow.run`` on each: what is left is the stream's own
    work per batch.
    """
    flow = workload.build("row", kf.Pool())
    rows = [row for b in _small_batches() for row in b]
    n_batches = len(rows) // SMALL_ROWS

    def runs_all() -> None:
        run = flow.run
        for at in range(0, len(rows), SMALL_ROWS):
            run(rows[at : at + SMALL_ROWS])

    def stream_all() -> None:
        for _ in flow.stream(rows, batch_size=SMALL_ROWS, progress=False):
            pass

    t_runs, t_stream = paired(runs_all, stream_all, repeat)
    return _cost_line(
        "stream cost",
        "a 100-row batch streamed",
        "cut and run by hand",
        t_stream,
        t_runs,
        n_batches,
    )


def _cost_line(name: str, flow: str, hand: str, t_flow: float, t_hand: float, n: int) -> float:
    """Print what kisflow adds per unit (µs) over the hand-written side, and return it."""
    cost = (t_flow - t_hand) / n * 1e6
    print(
        f"{name:<18} {flow} {t_flow / n * 1e6:5.2f} us, {hand} {t_hand / n * 1e6:5.2f} us: "
        f"{cost:4.2f} us",
        flush=True,
    )
    return cost


def shape_arun(repeat: int) -> float:
    """1,000 sequential ``await flow.arun(batch)`` of sync stages vs sequential ``run``."""
    flow = workload.build("row", kf.Pool())
    batch = workload.make_rows(SMALL_ROWS)
    expected = workload.run_flow(flow, batch)
    _check(expected, asyncio.run(flow.arun(batch)).output[0], "arun/small")

    def run_all() -> None:
        run = flow.run
        for _ in range(ARUN_RUNS):
            run(batch)

    async def arun_all() -> None:
        arun = flow.arun
        for _ in range(ARUN_RUNS):
            await arun(batch)

    t_run, t_arun = paired(run_all, lambda: asyncio.run(arun_all()), repeat)
    print(
        f"{'arun/small':<18} run {ARUN_RUNS / t_run / 1e3:6.1f} k runs/s    arun "
        f"{ARUN_RUNS / t_arun / 1e3:6.1f} k runs/s   ratio {t_run / t_arun:5.2f}",
        flush=True,
    )
    return t_run / t_arun


def _touch(flow: Any) -> None:
    """A trivial stage: commits one row."""
    flow.commit_row(0)


class _HandFlow:
    """What a hand-written chain gives its stage functions: a ``commit_row``."""

    commit_row: Callable[[Any], None]


def fixed_cost_us(repeat: int) -> float:
    """Microseconds a 4-stage run costs beyond calling its four FaaS by hand.

    Each stage commits one row, so the stage code is next to nothing; the hand side
    makes the same four calls with a fresh result list each.
    """
    pool = kf.Pool()
    for name in ("V", "C1", "C2", "E"):
        pool.faas(name, _touch)
    flow = (
        kf.FlowBuilder("fixed-cost", pool=pool)
        .verify("V")
        .calculate("C1")
        .calculate("C2")
        .expand("E")
        .build()
    )
    source = [0]
    runs = range(FIXED_RUNS)

    def flow_side() -> None:
        run = flow.run
        for _ in runs:
            run(source)

    def hand_side() -> None:
        for _ in runs:
            view = _HandFlow()
            for _stage in range(4):
                out: list[Any] = []
                view.commit_row = out.append
                _touch(view)

    t_hand, t_flow = paired(hand_side, flow_side, repeat)
    return _cost_line(
        "fixed cost", "a 4-stage run", "its four calls by hand", t_flow, t_hand, FIXED_RUNS
    )


# -- figures: each prints its lines and returns its tools-line entries ------------------------


def rows_figures(repeat: int) -> dict[str, float]:
    """The big, small and typed shapes, commit_row per row and whole lists."""
    return {
        "ratio_big": shape_big("row", repeat),
        "ratio_small": shape_small("row", repeat),
        "ratio_typed": shape_big("typed", repeat),
        "ratio_big_batch": shape_big("batch", repeat),
        "ratio_small_batch": shape_small("batch", repeat),
    }


def metrics_figures(repeat: int) -> dict[str, float]:
    """The big and small shapes (commit_row per row) with Prometheus metrics on."""
    return {
        "ratio_big_metrics": shape_big("row", repeat, metered=True),
        "ratio_small_metrics": shape_small("row", repeat, metered=True),
    }


def stream_arun_figures(repeat: int) -> dict[str, float]:
    """A stream of 100-row batches, sequential arun, and the fixed cost of a run."""
    return {
        "ratio_stream_small": shape_stream_small(repeat),
        "stream_cost_us": stream_cost_us(repeat),
        "ratio_arun": shape_arun(repeat),
        "fixed_cost_us": fixed_cost_us(repeat),
    }


def parallel_figures(_repeat: int) -> dict[str, float]:
    """The big shape on 2 worker processes against one."""
    speedup = parallel.speedup()
    print(f"parallel           2 processes vs 1: speed-up {speedup:.2f}x", flush=True)
    return {"speedup_parallel": speedup}


def memory_figures(_repeat: int) -> dict[str, float]:
    """Peak RSS of the big shape, each side in a fresh interpreter."""
    loop_mib, flow_mib = peak_rss_mib("loop"), peak_rss_mib("kisflow")
    print(
        f"peak RSS, big shape: loop {loop_mib:.0f} MiB, kisflow {flow_mib:.0f} MiB "
        f"({flow_mib / loop_mib:.2f}x)",
        flush=True,
    )
    return {"mem_ratio_big": flow_mib / loop_mib}


FIGURES: list[Figure] = [
    rows_figures,
    metrics_figures,
    stream_arun_figures,
    parallel_figures,
    memory_figures,
    columnar.figures,  # bench/columnar.py: the Polars stages
    stream.run,  # bench/stream.py: Redis Streams -> SQLite
    window.figures,  # bench/window.py: keyed tumbling counts
    dashboard.figures,  # bench/dashboard.py: streams with and without the dashboard open
]
"""The figures ``make bench`` prints, in order; bench modules append theirs."""

ONLY: dict[str, Callable[[int], Any]] = {
    "big": lambda r: (shape_big("row", r), shape_big("batch", r)),
    "small": lambda r: (shape_small("row", r), shape_small("batch", r)),
    "typed": lambda r: shape_big("typed", r),
    "metrics": metrics_figures,
    "stream": shape_stream_small,
    "stream-cost": stream_cost_us,
    "arun": shape_arun,
    "fixed": fixed_cost_us,
}
"""``--only NAME``: one shape, without the tools line."""


# -- peak memory ---------------------------------------------------------------------------


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


def tools_line(entries: dict[str, float]) -> str:
    """The last line ``make bench`` prints: ``name=value`` pairs, two decimals."""
    return " ".join(f"{k}={v:.2f}" for k, v in entries.items())


def main(argv: list[str] | None = None) -> None:
    """Run every figure and print the summary line tools read."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="timed reps per side (median)")
    parser.add_argument("--only", choices=sorted(ONLY), help="run one shape (no summary line)")
    parser.add_argument("--memory-child", choices=["loop", "kisflow"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(args.memory_child)
        return
    if args.only:
        ONLY[args.only](args.repeat)
        return
    entries: dict[str, float] = {}
    for figure in FIGURES:
        entries.update(figure(args.repeat))
    print(tools_line(entries))


if __name__ == "__main__":
    main()
