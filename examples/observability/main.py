"""Observability: dead letters, retries, Prometheus metrics and a run report in one flow.

Scores arrive from an unreliable feed: some rows are not JSON, some have an impossible
score. The Verify stage's typed input sends unconvertible rows to a dead-letter file, its
validation rejects impossible scores with ``flow.dead_letter``, and the Save stage talks
to a "store" that fails twice before it works (``retry_times=3``). Metrics are served on
127.0.0.1 and scraped once the run is done.
"""

from __future__ import annotations

import tempfile
import urllib.request
from pathlib import Path

import attrs

import kisflow as kf
from kisflow import metrics, report
from kisflow.deadletter import JsonlSink


@attrs.define
class Score:
    """One student's score."""

    stu_id: int
    score: int


class FlakyStore:
    """A store that refuses the first ``failures`` writes, as a real one might on restart."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.rows: list[Score] = []

    def write(self, rows: list[Score]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("store is restarting")
        self.rows.extend(rows)


@kf.faas("CheckScore", output=Score)
def check_score(flow: kf.Flow, rows: list[Score]) -> None:
    """Verify: pass scores in 0..100 on, reject the rest as dead letters."""
    for r in rows:
        if 0 <= r.score <= 100:
            flow.commit_row(r)
        else:
            flow.dead_letter(r, f"score {r.score} is outside 0..100")


@kf.faas("SaveScore", output=Score)
def save_score(flow: kf.Flow, rows: list[Score]) -> None:
    """Save: write to the flaky store; a failed attempt's commits are discarded."""
    flow.commit_row_batch(rows)
    store: FlakyStore = flow.get_metadata("store")
    store.write(rows)


ROWS = [
    {"stu_id": 1, "score": 90},
    '{"stu_id": 2, "score": 75}',
    "not json at all",
    {"stu_id": 3, "score": 140},
    {"stu_id": 4, "score": "eighty"},
    Score(5, 60),
]


def main(out_dir: Path | None = None) -> kf.RunResult:
    """Run the flow once with metrics served on a free loopback port; print what happened.

    The dead letters go to ``out_dir/dead_letters.jsonl`` (a temporary folder by default).
    """
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="kisflow-observability-") as tmp:
            return main(Path(tmp))
    dead = JsonlSink(out_dir / "dead_letters.jsonl")
    flow = (
        kf.FlowBuilder("Scores")
        .verify("CheckScore")
        .save("SaveScore", option=kf.FuncOption(retry_times=3, return_duration=10))
        .dead_letters(dead)
        .build()
    )
    store = FlakyStore(failures=2)
    flow.set_metadata("store", store)
    server = metrics.enable(serve=True, address="127.0.0.1:0")
    assert server is not None
    try:
        result = flow.run(ROWS)
        with urllib.request.urlopen(server.url, timeout=5) as resp:
            scrape = resp.read().decode("utf-8")
    finally:
        metrics.disable()

    print(report.table(result))
    print()
    print("dead letters:")
    for letter in dead.read():
        print(f"  row {letter['row_index']}: {letter['reason']}: {letter['error']}")
    print()
    print(f"stored: {[r.stu_id for r in store.rows]}")
    print()
    print("scrape (kisflow's per-stage counters):")
    for line in scrape.splitlines():
        if line.startswith(("func_rows_", "func_retries_total", "flow_schedule_cnts")):
            print(f"  {line}")
    print()
    print(report.to_dot(flow, result))
    return result


if __name__ == "__main__":
    main()
