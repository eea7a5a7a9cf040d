"""Progress: a rows bar fed by run results, drawn on a terminal and silent elsewhere."""

from __future__ import annotations

import fcntl
import io
import os
import select
import struct
import termios

import kisflow as kf
from kisflow.progress import RunProgress


def _read_all(fd: int) -> str:
    """Everything written to the pty so far."""
    chunks = []
    while select.select([fd], [], [], 0.2)[0]:
        chunks.append(os.read(fd, 4096))
    return b"".join(chunks).decode("utf-8", "replace")


def _flow() -> kf.Flow:
    @kf.faas("Check")
    def check(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(r for r in rows if r >= 0)

    return kf.FlowBuilder("batches").verify("Check").build()


class TestRunProgress:
    """RunProgress counts rows, dead letters and retries over runs."""

    def test_counts_and_draws_when_enabled(self) -> None:
        flow = _flow()
        out = io.StringIO()
        with RunProgress(total=7, file=out, enabled=True) as progress:
            progress.add(flow.run([1, 2, -3]))
            progress.add(flow.run([4, "x", 5, 6], dead_letters=[]))
        assert (progress.rows, progress.runs, progress.dead_letters) == (7, 2, 1)
        text = out.getvalue()
        assert "100%" in text
        assert "7.00/7.00" in text
        assert "dead=1" in text
        assert "rows/s" in text

    def test_quiet_when_not_a_terminal(self) -> None:
        flow = _flow()
        out = io.StringIO()
        with RunProgress(file=out) as progress:
            progress.add(flow.run([1, 2]))
        assert progress.rows == 2
        assert out.getvalue() == ""

    def test_drawn_on_a_real_terminal(self) -> None:
        flow = _flow()
        leader, follower = os.openpty()
        # A new pty is 0 columns wide; give it a size as a terminal window would.
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        try:
            with (
                os.fdopen(follower, "w", encoding="utf-8", closefd=False) as tty,
                RunProgress(desc="scores", file=tty) as progress,
            ):
                assert tty.isatty()
                progress.add(flow.run(list(range(50))))
            drawn = _read_all(leader)
        finally:
            os.close(leader)
            os.close(follower)
        assert "scores" in drawn
        assert "50.0/" not in drawn  # no total given: a count, not a fraction
        assert "50.0rows" in drawn

    def test_disabled_flow_adds_nothing(self) -> None:
        flow = kf.Flow(kf.FlowConfig(flow_name="off", status=0))
        with RunProgress(enabled=False) as progress:
            progress.add(flow.run([1, 2]))
        assert (progress.rows, progress.runs) == (0, 1)
