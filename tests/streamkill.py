"""Kill tests for durable streams: run a child script, SIGKILL it at random moments, restart.

The generic part of every kill test (jsonl, Redis, Kafka sources): write the child's
script (``write_child``), then ``kill_loop`` starts it with this tree's ``kisflow`` on
its path, kills it with SIGKILL at seeded random moments (each one after the child has
printed ``ready`` text, so a kill lands mid-stream and not during interpreter start-up),
restarts it each time and finally lets it run to its end. The test then counts what the
child stored (``count_rows``) and asserts on the values.

A child script should print a line (``flush=True``) after each committed batch, e.g.
``print("batch", flush=True)``, and pass that text as ``ready`` so kills land while
batches run; it must exit 0 once its source is drained (an ``idle_timeout`` does it).
``start_child`` starts a child the same way for a test that kills it by hand, and
``end_child`` kills what is still running. ``ListSource`` is a durable source over a
fixed list, for engine tests and children (a child imports it from ``tests.streamkill``:
its start puts this tree's root on its path).
"""

from __future__ import annotations

import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import attrs

from kisflow.sources import BadRecord, Chunk, Source

ROOT = Path(__file__).resolve().parent.parent
"""The tree whose ``kisflow`` the child imports."""
TESTS = ROOT / "tests"

__all__ = [
    "ROOT",
    "TESTS",
    "KillReport",
    "ListSource",
    "count_rows",
    "end_child",
    "kill_loop",
    "start_child",
    "write_child",
]


def write_child(folder: Path, body: str, name: str = "child.py") -> Path:
    """Write ``body`` (dedented) as a script in ``folder``; returns its path."""
    path = folder / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


@attrs.define
class KillReport:
    """What ``kill_loop`` did: kills that landed while the child ran, starts, last output."""

    kills: int = 0
    starts: int = 0
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    outputs: list[str] = attrs.Factory(list)
    """The stdout of every start, in order (the killed ones included)."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_child(script: Path, args: Sequence[str] = ()) -> subprocess.Popen[str]:
    """Start ``script`` with ``args`` under this Python, this tree's ``kisflow`` on its path,
    unbuffered, its stdout and stderr piped as text, in the script's folder."""
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=script.parent,
    )


def end_child(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc`` if it still runs, wait for it and close its pipes (a test's cleanup)."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def _reader(stream: object, out: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        out.put(line)
    out.put(None)


def kill_loop(
    script: Path,
    *,
    args: Sequence[str] = (),
    kills: int = 5,
    seed: int = 0,
    ready: str = "batch",
    delay: tuple[float, float] = (0.0, 0.3),
    timeout: float = 60.0,
) -> KillReport:
    """Run ``script`` until it ends by itself, SIGKILLing it ``kills`` times on the way.

    Each start waits for the child's stdout to show a line holding ``ready``, then a
    seeded random ``delay`` (seconds, uniform), then kills it with SIGKILL and starts it
    again. A child that ends by itself ends the loop (``report.kills`` says how many kills
    landed, so a test asserts on it); once ``kills`` kills landed, the last start runs to
    its end (``report.returncode``). The whole loop is bounded by
    ``timeout`` seconds; past it the child is killed and ``AssertionError`` raised.
    """
    rng = random.Random(seed)
    report = KillReport()
    deadline = time.monotonic() + timeout
    while True:
        proc = start_child(script, args)
        report.starts += 1
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
        reader.start()
        errors: list[str] = []
        err_reader = threading.Thread(target=errors.extend, args=(proc.stderr or (),), daemon=True)
        err_reader.start()
        seen: list[str] = []
        killed = False
        want_kill = report.kills < kills
        pause = rng.uniform(*delay)
        armed_at: float | None = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.wait()
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
                raise AssertionError(
                    f"{script.name} did not finish within {timeout} s "
                    f"({report.kills} kills, {report.starts} starts); last output: "
                    f"{''.join(seen)[-2000:]} {''.join(errors)[-2000:]}"
                )
            wait = 0.05 if armed_at is not None else min(left, 0.5)
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                line = ""
            if line is None:
                break  # the child closed stdout: it ended
            if line:
                seen.append(line)
                if want_kill and armed_at is None and ready in line:
                    armed_at = time.monotonic()
            if armed_at is not None and time.monotonic() - armed_at >= pause:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
        proc.wait()
        reader.join(5)
        err_reader.join(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        report.outputs.append("".join(seen))
        report.stdout = "".join(seen)
        report.stderr = "".join(errors)
        report.returncode = proc.returncode
        if killed:
            report.kills += 1
            continue
        return report


def count_rows(db: Path, table: str, column: str) -> dict[object, int]:
    """How many times each value of ``column`` is stored in ``table`` of SQLite ``db``."""
    con = sqlite3.connect(db)
    try:
        counts: dict[object, int] = {}
        for (value,) in con.execute(f"SELECT {column} FROM {table}"):
            counts[value] = counts.get(value, 0) + 1
        return counts
    finally:
        con.close()


class ListSource(Source):
    """A durable source over a fixed list: the same list after a restart, spans ``[a, b]``.

    A record that is a ``str`` starting with ``"!"`` is a bad record (``BadRecord``).
    ``follow=True`` makes the end wait for more (empty chunks) instead of ending the
    stream. ``log`` records the calls the stream made, for assertions.
    """

    def __init__(self, records: Sequence[object], name: str = "list", follow: bool = False):
        self.records = list(records)
        self.name = name
        self.follow = follow
        self.at = 0
        self.log: list[tuple[str, object]] = []

    @property
    def key(self) -> str:
        return f"list:{self.name}"

    def open(self, position: object | None) -> None:
        self.log.append(("open", position))
        self.at = 0 if position is None else int(position)  # type: ignore[call-overload]

    def _chunk(self, a: int, b: int) -> Chunk:
        rows: list[object] = []
        bad: list[BadRecord] = []
        for i in range(a, b):
            record = self.records[i]
            if isinstance(record, str) and record.startswith("!"):
                where = f"{self.key} record {i}"
                bad.append(BadRecord(where, record, "is marked bad", i - a))
            else:
                rows.append(record)
        return Chunk(rows, [a, b], bad)

    def read(self, max_rows: int, timeout: float) -> Chunk | None:
        self.log.append(("read", self.at))
        if self.at >= len(self.records):
            if not self.follow:
                return None
            time.sleep(min(timeout, 0.01))
            return Chunk([], [self.at, self.at])
        a, b = self.at, min(self.at + max_rows, len(self.records))
        self.at = b
        return self._chunk(a, b)

    def join(self, chunks: Sequence[Chunk]) -> Chunk:
        joined = super().join(chunks)
        return attrs.evolve(joined, span=[chunks[0].span[0], chunks[-1].span[1]])

    def reread(self, span: object) -> Chunk:
        self.log.append(("reread", span))
        a, b = span  # type: ignore[misc]
        return self._chunk(int(a), int(b))

    def position(self, span: object) -> object:
        return span[1]  # type: ignore[index]

    def ack(self, span: object) -> None:
        self.log.append(("ack", span))
