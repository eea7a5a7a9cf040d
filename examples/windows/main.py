"""Clicks per user and minute: keyed state and a tumbling window in one flow.

``RunningClicks`` keeps a running total per user in the stage's keyed state
(``flow.state()``); ``ClicksPerMinute`` is a window FaaS, called once per (user, minute)
window when event time has passed it (5 s of grace). The late click at t=50 arrives
after the watermark passed its window's end and becomes a dead letter with reason
``late``. Run: ``python examples/windows/main.py``.
"""

from __future__ import annotations

import attrs

import kisflow as kf
from kisflow import windows


@attrs.frozen
class Click:
    user: str
    ts: float
    """Event time, seconds."""
    page: str


@kf.faas("RunningClicks")
def running(flow: kf.Flow, rows: list[Click]) -> None:
    """Pass every click on, with the user's total so far (kept across runs)."""
    seen = flow.state()
    for r in rows:
        seen[r.user] = seen.get(r.user, 0) + 1
        flow.commit_row(r)


@kf.faas("ClicksPerMinute", window=windows.tumbling(60, time="ts", key="user", grace=5))
def per_minute(flow: kf.Flow, rows: list[Click]) -> None:
    """One row per (user, minute): the window's bounds and its clicks."""
    w = flow.window()
    flow.commit_row({"user": w.key, "start": w.start, "end": w.end, "clicks": len(rows)})


CLICKS = [
    {"user": "ann", "ts": 3, "page": "/"},
    {"user": "bob", "ts": 10, "page": "/"},
    {"user": "ann", "ts": 42, "page": "/pricing"},
    {"user": "ann", "ts": 61, "page": "/signup"},
    {"user": "bob", "ts": 70, "page": "/docs"},
    {"user": "bob", "ts": 50, "page": "/late"},  # the watermark is at 65: [0, 60) closed
    {"user": "ann", "ts": 130, "page": "/"},
]


def main() -> kf.RunResult:
    """Run the flow once over the clicks; print the windows, the late row and the totals."""
    letters: list[kf.DeadLetter] = []
    flow = (
        kf.FlowBuilder("Clicks")
        .calculate("RunningClicks")
        .calculate("ClicksPerMinute")
        .dead_letters(letters)
        .build()
    )
    result = flow.run(CLICKS)
    for row in result.output:
        print(f"{row['user']} [{row['start']}, {row['end']}): clicks={row['clicks']}")
    for letter in letters:
        print(f"dead letter ({letter.reason}): {letter.row.page} at t={letter.row.ts}")
    totals = dict(flow.state_store.keyed("0:RunningClicks"))
    print("totals:", ", ".join(f"{user}={n}" for user, n in sorted(totals.items())))
    return result


if __name__ == "__main__":
    main()
