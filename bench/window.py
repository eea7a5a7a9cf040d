"""The window line of ``make bench``: a keyed tumbling count, kisflow against a dict loop.

1,000,000 events over 10,000 keys, 1,000 events per second of event time (1,000 s), in
60 s tumbling windows per key with no grace: about 170,000 windows. The loop is what a
careful engineer writes by hand for the same result: a count per (key, window start),
closed when the highest event time reaches the window's end, emitted as the same dicts
in the same order. Both sides are timed interleaved, rep by rep.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from typing import Any

import kisflow as kf
from kisflow import windows

EVENTS = 1_000_000
KEYS = 10_000
SIZE = 60
PER_SECOND = 1_000


def make_events(n: int = EVENTS) -> list[dict[str, Any]]:
    """Event i: key ``(i * 7919) % KEYS``, event time ``i / PER_SECOND`` seconds."""
    return [{"key": (i * 7919) % KEYS, "ts": i / PER_SECOND} for i in range(n)]


def loop(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tumbling counts by hand: the reference kisflow is measured against."""
    size = SIZE
    counts: dict[tuple[int, float], int] = {}
    by_end: dict[float, list[tuple[int, float]]] = {}
    out: list[dict[str, Any]] = []
    max_ts = -math.inf
    next_end = math.inf
    for e in events:
        ts = e["ts"]
        if ts > max_ts:
            max_ts = ts
        start = math.floor(ts / size) * size
        end = start + size
        if end <= max_ts:
            continue  # late (none in this workload)
        wk = (e["key"], start)
        c = counts.get(wk)
        if c is None:
            counts[wk] = 1
            by_end.setdefault(end, []).append(wk)
            if end < next_end:
                next_end = end
        else:
            counts[wk] = c + 1
        if next_end <= max_ts:
            for closing in sorted(x for x in by_end if x <= max_ts):
                for key, st in by_end.pop(closing):
                    out.append({"key": key, "start": st, "count": counts.pop((key, st))})
            next_end = min(by_end, default=math.inf)
    for closing in sorted(by_end):
        for key, st in by_end.pop(closing):
            out.append({"key": key, "start": st, "count": counts.pop((key, st))})
    return out


def build(pool: kf.Pool) -> kf.Flow:
    """One window stage counting each window's rows."""

    def count(flow: kf.Flow, rows: list[Any]) -> None:
        w = flow.window()
        flow.commit_row({"key": w.key, "start": w.start, "count": len(rows)})

    pool.faas("CountPerMinute", count, window=windows.tumbling(SIZE, time="ts", key="key"))
    return kf.FlowBuilder("Windows", pool=pool).calculate("CountPerMinute").build()


def figures(repeat: int = 5) -> dict[str, float]:
    """``window_events_per_s`` and ``ratio_window`` (loop time / kisflow time), medians."""
    events = make_events()
    flow = build(kf.Pool())
    expected = loop(events)
    got = flow.run(events).output
    if sorted(got, key=lambda r: (r["start"], r["key"])) != sorted(
        expected, key=lambda r: (r["start"], r["key"])
    ):
        raise SystemExit("window: kisflow's windows differ from the loop's")
    t_loop: list[float] = []
    t_flow: list[float] = []
    for _ in range(repeat):
        for side, times in ((lambda: loop(events), t_loop), (lambda: flow.run(events), t_flow)):
            gc.collect()
            started = time.perf_counter()
            side()
            times.append(time.perf_counter() - started)
    loop_s, flow_s = statistics.median(t_loop), statistics.median(t_flow)
    print(
        f"window         loop {EVENTS / loop_s / 1e6:6.2f} M events/s   kisflow "
        f"{EVENTS / flow_s / 1e6:6.2f} M events/s   ratio {loop_s / flow_s:5.2f}   "
        f"({len(expected)} windows)",
        flush=True,
    )
    return {"window_events_per_s": EVENTS / flow_s, "ratio_window": loop_s / flow_s}


if __name__ == "__main__":
    print(" ".join(f"{k}={v:.2f}" for k, v in figures().items()))
