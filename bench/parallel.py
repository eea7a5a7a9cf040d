"""Benchmark shape ``parallel``: the score-avg workload split into partitions on processes.

The *big* shape (1,000,000 rows, bench/WORKLOAD.md) runs once in this process and once
as partitions on a warm local process pool (``kisflow.executors.run_partitions``), each
worker loading its own rows from a partition description. Both sides load the rows and
run the same flow, ``bench.workload.build("row")`` (a FaaS loops over ``flow.input()``
and commits row by row); the grade counts must agree. Prints ``speedup_parallel=...``.

Run alone with ``python -m bench.parallel [--rows N] [--workers W] [--executor dask]``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import kisflow as kf
from bench import workload
from kisflow.executors import PartitionResult, process_pool, run_partitions

__all__ = ["ParallelFigures", "measure_parallel", "speedup"]


def load_rows(span: tuple[int, int]) -> list[dict[str, int]]:
    """Rows ``span[0]..span[1]-1`` of the workload (``workload.make_rows``), made on the
    worker that uses them."""
    return [
        {"stu_id": i, "score_1": i % 100, "score_2": (i * 7) % 100, "score_3": (i * 13) % 100}
        for i in range(*span)
    ]


def _spans(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def _merge(outputs: list[list[dict[str, int]]]) -> dict[str, int]:
    """Sum the per-partition grade counts (the Count stage's single output row)."""
    total: collections.Counter[str] = collections.Counter()
    for rows in outputs:
        for counts in rows:
            total.update(counts)
    return dict(sorted(total.items()))


class ParallelFigures(dict[str, Any]):
    """The measured figures: seconds each way (medians), rows/s, speed-ups, grade counts.

    ``speedup`` is the ratio of medians (WORKLOAD.md); ``speedup_best`` the ratio of the
    fastest runs, steadier when other processes share the cores.
    """


@contextlib.contextmanager
def _executor(kind: str, workers: int) -> Iterator[Callable[..., list[PartitionResult]]]:
    """A warm-able ``run(flow, spans, keep_output)`` on local processes or a LocalCluster."""
    if kind == "processes":
        with process_pool(workers) as pool:
            yield lambda flow, spans, **kw: run_partitions(
                flow, spans, load=load_rows, executor=pool, **kw
            )
    elif kind == "dask":
        import dask
        from distributed import Client, LocalCluster

        with (
            dask.config.set(kf.dask.SATURATION_CONFIG),
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                host="127.0.0.1",
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            ) as cluster,
            Client(cluster) as client,
        ):
            yield lambda flow, spans, **kw: kf.dask.run_partitions(
                client, flow, spans, load=load_rows, **kw
            )
    else:
        raise ValueError(f"executor must be 'processes' or 'dask', got {kind!r}")


def measure_parallel(
    rows: int = 1_000_000,
    workers: int = 2,
    partitions: int = 8,
    repeats: int = 5,
    executor: str = "processes",
) -> ParallelFigures:
    """Time the big shape in one process and on ``workers`` processes (median of runs).

    ``executor`` is ``"processes"`` (a local process pool) or ``"dask"`` (a LocalCluster
    of ``workers`` single-threaded worker processes).
    """
    flow = workload.build("row", kf.Pool())
    spans = _spans(rows, partitions)
    single_times: list[float] = []
    parallel_times: list[float] = []
    single_counts: dict[str, int] = {}
    parallel_counts: dict[str, int] = {}
    with _executor(executor, workers) as run:
        # Warm up: start every worker, import kisflow there and rebuild the flow once.
        flow.run(load_rows((0, 1000)))
        run(flow, _spans(1000 * workers, workers * 4))
        # Alternate the two sides so load from other processes hits both alike.
        for _ in range(repeats):
            gc.collect()
            started = time.perf_counter()
            result = flow.run(load_rows((0, rows)))
            single_times.append(time.perf_counter() - started)
            single_counts = _merge([result.output])
            del result
            gc.collect()  # a run's layers are freed by the cyclic GC: not in the other timing
            started = time.perf_counter()
            results = run(flow, spans, keep_output=True)
            parallel_times.append(time.perf_counter() - started)
            parallel_counts = _merge([r.output or [] for r in results])
    if parallel_counts != single_counts:
        raise AssertionError(f"grade counts differ: {parallel_counts} != {single_counts}")
    single = statistics.median(single_times)
    parallel = statistics.median(parallel_times)
    best = min(single_times) / min(parallel_times)
    return ParallelFigures(
        rows=rows,
        workers=workers,
        partitions=len(spans),
        single_s=single,
        parallel_s=parallel,
        single_rows_per_s=rows / single,
        parallel_rows_per_s=rows / parallel,
        speedup=single / parallel,
        speedup_best=best,
        grades=single_counts,
        cores=os.cpu_count(),
        executor=executor,
    )


def speedup(rows: int = 1_000_000, workers: int = 2, executor: str = "processes") -> float:
    """The ``parallel`` shape's speed-up of ``workers`` processes over one (for make bench)."""
    return float(measure_parallel(rows=rows, workers=workers, executor=executor)["speedup"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--executor", choices=["processes", "dask"], default="processes")
    args = parser.parse_args()
    f = measure_parallel(args.rows, args.workers, args.partitions, args.repeats, args.executor)
    print(
        f"parallel: {f['rows']:,} rows, {f['partitions']} partitions on {f['workers']} "
        f"processes ({f['executor']}, {f['cores']} cores)"
    )
    print(f"  one process : {f['single_s']:.3f} s  {f['single_rows_per_s']:,.0f} rows/s")
    many = f"{f['workers']} processes"
    print(f"  {many:<11} : {f['parallel_s']:.3f} s  {f['parallel_rows_per_s']:,.0f} rows/s")
    print(f"  grades: {f['grades']}")
    print(f"  speed-up of medians {f['speedup']:.2f}x, of best runs {f['speedup_best']:.2f}x")
    print(f"speedup_parallel={f['speedup']:.2f}")


if __name__ == "__main__":
    main()
