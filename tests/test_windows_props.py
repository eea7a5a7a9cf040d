"""Windows against an independent reference: shuffled, out-of-order events, all three kinds.

The reference below is written from the rules in docs/state.md, event by event in arrival
order, with no code shared with kisflow.windows: the watermark is the highest event time
seen minus grace; a window is closed once the watermark reaches its end; a row is late
when its window (for sliding windows: every window it belongs to) has closed; a session
takes an event within ``gap`` of it and closes ``gap`` after its last event; an event
before the end of a session of its key that closed is late.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

import kisflow as kf
from kisflow import windows

Event = dict[str, Any]


def _fixed_reference(
    events: list[Event], size: int, every: int, grace: int
) -> tuple[dict[tuple[Any, int], list[int]], set[int]]:
    """Tumbling (every == size) or sliding windows: {(key, start): ids in ts order}, late ids."""
    max_ts = -math.inf
    members: dict[tuple[Any, int], list[tuple[int, int, int]]] = defaultdict(list)
    late: set[int] = set()
    for arrival, e in enumerate(events):
        ts = e["ts"]
        max_ts = max(max_ts, ts)
        watermark = max_ts - grace
        first = ts - ts % every - (size // every + 1) * every  # a multiple of every
        starts = [s for s in range(first, ts + 1, every) if s <= ts < s + size]
        open_starts = [s for s in starts if s + size > watermark]
        if not open_starts:
            late.add(e["id"])
        for s in open_starts:
            members[(e["k"], s)].append((ts, arrival, e["id"]))
    return {w: [i for _, _, i in sorted(m)] for w, m in members.items()}, late


def _session_reference(
    events: list[Event], gap: int, grace: int
) -> tuple[dict[tuple[Any, int], list[int]], set[int]]:
    """Session windows: {(key, start): ids in ts order}, late ids."""
    max_ts = -math.inf
    open_sessions: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    done: dict[tuple[Any, int], list[int]] = {}
    late: set[int] = set()
    closed_end: dict[Any, float] = defaultdict(lambda: -math.inf)

    def close(watermark: float) -> None:
        for key, sessions in open_sessions.items():
            for s in [s for s in sessions if s["last"] + gap <= watermark]:
                sessions.remove(s)
                assert (key, s["start"]) not in done
                done[(key, s["start"])] = [i for _, _, i in sorted(s["members"])]
                closed_end[key] = max(closed_end[key], s["last"] + gap)

    for arrival, e in enumerate(events):
        ts, key = e["ts"], e["k"]
        max_ts = max(max_ts, ts)
        watermark = max_ts - grace
        close(watermark)
        if ts < closed_end[key]:  # within (or joining) a session that closed
            late.add(e["id"])
            continue
        sessions = open_sessions[key]
        hits = [s for s in sessions if s["start"] - gap < ts < s["last"] + gap]
        if not hits:
            if ts + gap <= watermark:
                late.add(e["id"])
                continue
            sessions.append({"start": ts, "last": ts, "members": [(ts, arrival, e["id"])]})
            continue
        merged = hits[0]
        for other in hits[1:]:
            sessions.remove(other)
            merged["members"] += other["members"]
            merged["start"] = min(merged["start"], other["start"])
            merged["last"] = max(merged["last"], other["last"])
        merged["members"].append((ts, arrival, e["id"]))
        merged["start"] = min(merged["start"], ts)
        merged["last"] = max(merged["last"], ts)
    close(math.inf)
    return done, late


def _run(spec: windows.WindowSpec, events: list[Event]) -> tuple[dict[Any, list[int]], set[int]]:
    """The windows kisflow closes, {(key, start): ids in the order the FaaS got them}, and
    the ids of the rows dead-lettered as late."""
    got: dict[Any, list[int]] = {}

    @kf.faas("Win", window=spec, replace=True)
    def per_window(flow: kf.Flow, rows: list[Event]) -> None:
        w = flow.window()
        assert (w.key, w.start) not in got, "a window was closed twice"
        got[(w.key, w.start)] = [r["id"] for r in rows]
        flow.commit_row({"key": w.key, "start": w.start, "end": w.end, "n": len(rows)})

    letters: list[kf.DeadLetter] = []
    flow = kf.FlowBuilder("W").calculate("Win").build()
    result = flow.run(events, dead_letters=letters)
    assert all(letter.reason == "late" for letter in letters)
    late = {letter.row["id"] for letter in letters}
    [stats] = result.stages
    assert stats.rows_in == len(events)
    assert stats.dead_letters == len(late)
    assert stats.rows_out == len(got)
    assert stats.balanced()
    return got, late


events_st = st.lists(
    st.tuples(st.integers(0, 120), st.sampled_from(["a", "b", "c"])), min_size=1, max_size=60
).map(lambda es: [{"id": i, "ts": ts, "k": k} for i, (ts, k) in enumerate(es)])


@settings(max_examples=150, deadline=None)
@given(events_st, st.integers(1, 30), st.integers(0, 25))
def test_tumbling_matches_the_reference(events: list[Event], size: int, grace: int) -> None:
    spec = windows.tumbling(size, time="ts", key="k", grace=grace)
    assert _run(spec, events) == _fixed_reference(events, size, size, grace)


@settings(max_examples=150, deadline=None)
@given(events_st, st.integers(1, 30), st.integers(1, 30), st.integers(0, 25))
def test_sliding_matches_the_reference(
    events: list[Event], size: int, every: int, grace: int
) -> None:
    every = min(every, size)
    spec = windows.sliding(size, every, time="ts", key="k", grace=grace)
    assert _run(spec, events) == _fixed_reference(events, size, every, grace)


def _es(*pairs: tuple[int, str]) -> list[Event]:
    return [{"id": i, "ts": ts, "k": k} for i, (ts, k) in enumerate(pairs)]


@settings(max_examples=200, deadline=None)
@given(events_st, st.integers(1, 30), st.integers(0, 25))
# Found by this test: an event inside a closed session, reached through an open one.
@example(_es((28, "a"), (32, "a"), (29, "a"), (28, "a")), 2, 2)
@example(_es((0, "b"), (60, "a"), (31, "b"), (2, "b")), 30, 0)
def test_session_matches_the_reference(events: list[Event], gap: int, grace: int) -> None:
    spec = windows.session(gap, time="ts", key="k", grace=grace)
    assert _run(spec, events) == _session_reference(events, gap, grace)


def test_the_reference_sees_late_rows() -> None:
    """The property tests are not vacuous: with grace 0, an old event after a new one is late."""
    events = [{"id": 0, "ts": 100, "k": "a"}, {"id": 1, "ts": 5, "k": "a"}]
    assert _fixed_reference(events, 10, 10, 0)[1] == {1}
    assert _session_reference(events, 10, 0)[1] == {1}
    assert _run(windows.tumbling(10, time="ts", key="k"), events)[1] == {1}
