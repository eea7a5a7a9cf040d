"""Watch a stream in the browser: the live dashboard on an example order stream.

``python examples/dashboard/main.py [--seconds S] [--address HOST:PORT]`` serves the
dashboard (loopback, a free port unless given), prints its URL, then streams orders
through Verify -> Calculate -> Save for about ``S`` seconds (20 by default): some rows
are filtered, some dead-lettered, a flaky stage is retried now and then. A second flow
fails every few runs, so a failing stage shows its error. When the stream ends, the
page keeps its final figures for a moment, and the dashboard stops.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from typing import Any

import kisflow as kf

BATCH = 200


def orders(seconds: float, pause: float) -> Iterator[dict[str, Any]]:
    """An order source that runs for about ``seconds`` (a real one would be a queue)."""
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        yield {"id": i, "amount": (i * 37) % 500, "country": "FR" if i % 3 else "DE"}
        i += 1
        if i % BATCH == 0:
            time.sleep(pause)


def build() -> tuple[kf.Flow, kf.Flow]:
    """Register the FaaS and build the two flows."""
    calls = [0]

    @kf.faas("CheckOrder")
    def check_order(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row["amount"] == 0:
                flow.dead_letter(row, "an order of nothing")
            elif row["amount"] >= 20:  # small orders are dropped
                flow.commit_row(row)

    @kf.faas("AddTax")
    def add_tax(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        calls[0] += 1
        if calls[0] % 17 == 0:
            raise ConnectionError("tax service timed out")  # retried once
        rate = {"FR": 0.2, "DE": 0.19}
        flow.commit_row_batch({**r, "tax": r["amount"] * rate[r["country"]]} for r in rows)

    @kf.faas("SaveOrder")
    def save_order(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        time.sleep(0.002 * len(rows) / BATCH)  # a store's write
        flow.commit_row_batch(rows)

    @kf.faas("Refund")
    def refund(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        raise PermissionError(f"refunds are closed ({len(rows)} refused)")

    retry = kf.FuncOption(retry_times=1)
    stream_flow = (
        kf.FlowBuilder("orders")
        .verify("CheckOrder")
        .calculate("AddTax", option=retry)
        .save("SaveOrder")
        .build()
    )
    failing = kf.FlowBuilder("refunds").verify("CheckOrder").calculate("Refund").build()
    return stream_flow, failing


def main(argv: list[str] | None = None) -> dict[str, int]:
    """Serve the dashboard while the stream runs; returns the stream's totals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to stream")
    parser.add_argument("--address", default="127.0.0.1:0", help="where to serve the page")
    parser.add_argument("--linger", type=float, default=3.0, help="seconds to keep the page")
    args = parser.parse_args(argv)
    stream_flow, failing = build()
    totals = {"batches": 0, "rows_in": 0, "saved": 0, "dead_letters": 0, "refunds_failed": 0}
    letters: list[Any] = []
    with kf.dashboard.serve(args.address) as board:
        print(f"dashboard at {board.url} (for about {args.seconds:g} s)", file=sys.stderr)
        for result in stream_flow.stream(
            orders(args.seconds, pause=0.05), batch_size=BATCH, dead_letters=letters
        ):
            totals["batches"] += 1
            totals["rows_in"] += result.stages[0].rows_in
            totals["saved"] += result.stage("SaveOrder").rows_out
            if totals["batches"] % 10 == 0:
                try:
                    failing.run(result.output[:5])
                except kf.StageExecutionError:
                    totals["refunds_failed"] += 1
        totals["dead_letters"] = len(letters)
        time.sleep(args.linger)  # the page shows the stream as ended, with its figures
    print(
        "stream ended: {batches} batches, {rows_in} rows in, {saved} saved, "
        "{dead_letters} dead letters, {refunds_failed} refund runs failed".format(**totals)
    )
    return totals


if __name__ == "__main__":
    main()
