"""The dashboard's cost: the score-avg stream with and without the dashboard open.

``python -m bench.dashboard [--rows N] [--repeat R]`` streams N rows through the
score-avg flow (bench/workload.py, batch variant) in batches of 1,000 and of 100 rows
(the smaller the batches, the more stage calls per row, the more the observer costs).
Each repeat times the stream without the dashboard, then with it served and a client
reading its server-sent events (as an open page does), alternating so that the noise of
a shared machine falls on both sides alike. Each side is timed in wall-clock seconds and
in CPU seconds of the whole process (the server's threads included), which other
processes on a shared machine disturb less. It prints the medians and the slowdown of
the medians (the target is at most 5 %).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import kisflow as kf
from bench import workload


@contextmanager
def dashboard_open() -> Iterator[kf.dashboard.Dashboard]:
    """The dashboard served, with one client reading its events until the block ends."""
    with kf.dashboard.serve() as board:
        ready = threading.Event()

        def read() -> None:
            with urllib.request.urlopen(board.url + "events", timeout=30) as events:
                ready.set()
                while events.readline():
                    pass  # the server closes the stream when it stops

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        ready.wait(10)
        yield board
    reader.join(5)


def stream_seconds(flow: kf.Flow, rows: list[workload.Row], batch_size: int) -> tuple[float, float]:
    """(wall, CPU) seconds to stream ``rows`` through ``flow`` in batches of ``batch_size``."""
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    batches = 0
    for _ in flow.stream(rows, batch_size=batch_size, handle_sigint=False):
        batches += 1
    took, took_cpu = time.perf_counter() - started, time.process_time() - cpu
    assert batches == -(-len(rows) // batch_size)
    return took, took_cpu


def measure(rows: int, batch_size: int, repeat: int) -> dict[str, float]:
    """Median seconds without and with the dashboard open, interleaved, and the slowdown."""
    data = workload.make_rows(rows)
    flow = workload.build("batch", kf.Pool())
    stream_seconds(flow, data, batch_size)  # warm-up
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    for _ in range(repeat):
        off.append(stream_seconds(flow, data, batch_size))
        with dashboard_open() as board:
            on.append(stream_seconds(flow, data, batch_size))
            view = next(f for f in board.flows() if f["name"] == flow.name)
            assert view["stages"][0]["rows_in"] == rows  # it did watch the stream
    return {"rows": rows, "batch_size": batch_size, **_slowdowns(off, on)}


def measure_redis(n: int, repeat: int) -> dict[str, float]:
    """The stream bench's exactly-once side without and with the dashboard open."""
    import redis

    from bench import stream

    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="kisflow-bench-dashboard-") as tmp:
        workdir = Path(tmp)
        with stream.redis_server(workdir) as port:
            with closing(redis.Redis(port=port)) as client:
                stream.fill(client, n)
            for rep in range(repeat + 1):  # the first round is the warm-up
                for side in ("off", "on") if rep % 2 else ("on", "off"):
                    group = f"g{rep}-{side}"
                    db = workdir / f"{group}.db"
                    with dashboard_open() if side == "on" else contextlib.nullcontext():
                        gc.collect()
                        started, cpu = time.perf_counter(), time.process_time()
                        stream.kisflow_side(port, group, db, n, "exactly-once")
                        took = (time.perf_counter() - started, time.process_time() - cpu)
                    stream._check(port, group, db, n, f"dashboard {side}")
                    if rep:
                        (on if side == "on" else off).append(took)
                    with closing(redis.Redis(port=port)) as client:
                        client.xgroup_destroy(stream.STREAM, group)
    return {"rows": n, **_slowdowns(off, on)}


def _slowdowns(off: list[tuple[float, float]], on: list[tuple[float, float]]) -> dict[str, float]:
    """Median wall and CPU seconds of each side's ``(wall, cpu)`` reps, and the slowdowns."""
    t_off, t_on = (statistics.median(t for t, _ in side) for side in (off, on))
    c_off, c_on = (statistics.median(c for _, c in side) for side in (off, on))
    return {
        "off_s": t_off,
        "on_s": t_on,
        "slowdown": t_on / t_off - 1.0,
        "off_cpu_s": c_off,
        "on_cpu_s": c_on,
        "slowdown_cpu": c_on / c_off - 1.0,
    }


def figures(repeat: int) -> dict[str, float]:
    """``make bench``'s dashboard lines (the stream bench included) and their figures."""
    return main(["--repeat", str(repeat), "--redis"])


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--redis", action="store_true", help="also time the stream bench")
    parser.add_argument("--redis-rows", type=int, default=50_000)
    args = parser.parse_args(argv)
    out: dict[str, float] = {}
    if args.redis:
        f = measure_redis(args.redis_rows, args.repeat)
        print(
            f"dashboard/stream bench (redis, exactly-once): {f['rows']:,.0f} messages, "
            f"wall off {f['off_s']:.3f} s on {f['on_s']:.3f} s ({f['slowdown']:+.1%}), "
            f"CPU off {f['off_cpu_s']:.3f} s on {f['on_cpu_s']:.3f} s "
            f"({f['slowdown_cpu']:+.1%})"
        )
        out["slowdown_dashboard_redis_stream"] = f["slowdown"]
    for batch_size in (1000, 100):
        f = measure(args.rows, batch_size, args.repeat)
        print(
            f"dashboard/stream batch={batch_size}: {f['rows']:,.0f} rows, "
            f"wall off {f['off_s']:.3f} s on {f['on_s']:.3f} s ({f['slowdown']:+.1%}), "
            f"CPU off {f['off_cpu_s']:.3f} s on {f['on_cpu_s']:.3f} s "
            f"({f['slowdown_cpu']:+.1%})"
        )
        out[f"slowdown_dashboard_batch{batch_size}"] = f["slowdown"]
        out[f"slowdown_cpu_dashboard_batch{batch_size}"] = f["slowdown_cpu"]
    return out


if __name__ == "__main__":
    main()
