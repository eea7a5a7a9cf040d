"""The ``jsonl`` connector: ``addrs`` is a JSON-lines file; Save appends, Load reads.

Each row is one line of JSON (attrs and dataclass instances as objects). Load returns
the rows in file order, optionally filtered by ``params.where`` and cut by
``params.limit``; a line that is not JSON is an error naming the file and line.

Run by an executor (process pool, Dask), Save keeps a sidecar ledger
``<file>.kisflow_partitions`` (JSON lines) and, holding an exclusive ``flock`` on it:
writes ``begin`` with the data file's size, appends the rows, writes ``done``, fsyncing
each step. A writer that finds a ``begin`` without ``done`` (its writer crashed) first
truncates the data file back to the recorded size, so a replayed partition's rows are
stored once. See docs/connectors.md for what this guarantees.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kisflow.connectors._base import (
    LEDGER,
    SaveMark,
    Store,
    matches,
    to_json_text,
)

__all__ = ["JSONLConnector"]


class JSONLConnector(Store):
    """Rows as lines of JSON in a file (no server, no extra)."""

    type_name = "jsonl"

    def check(self) -> None:
        super().check()
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The file, from ``addrs``."""
        return Path(self.config.addrs).expanduser()

    @property
    def ledger_path(self) -> Path:
        """The sidecar ledger of partitions saved: ``<file>.kisflow_partitions``."""
        return self.path.with_name(f"{self.path.name}.{LEDGER}")

    def save(
        self, rows: Sequence[Any], params: Mapping[str, Any], mark: SaveMark | None = None
    ) -> int:
        lines = []
        for i, row in enumerate(rows):
            try:
                lines.append(to_json_text(row) + "\n")
            except (TypeError, ValueError) as exc:
                raise self.error(f"cannot store row {i} as JSON: {exc}") from exc
        if not lines:
            return 0
        data = "".join(lines).encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One append per batch, one batch at a time: lines of batches never interleave.
            with self._lock:
                if mark is None and not self.ledger_path.exists():
                    _append(self.path, data)
                    return len(lines)
                with self._ledger() as ledger:
                    done = _recover(ledger, self.path)
                    if mark is None:
                        _append(self.path, data)
                        return len(lines)
                    key = json.loads(mark.as_json())
                    if key in done:
                        return 0
                    size = self.path.stat().st_size if self.path.exists() else 0
                    _write(ledger, {"begin": key, "size": size})
                    _append(self.path, data)
                    _write(ledger, {"done": key})
        except OSError as exc:
            raise self.unreachable(exc) from exc
        except (_BadLedger, UnicodeDecodeError) as exc:
            raise self.error(
                f"cannot use its partition ledger {str(self.ledger_path)!r}: {exc}; it is "
                f"kisflow's own file (remove it to forget which partitions were saved)"
            ) from exc
        return len(lines)

    @contextmanager
    def _ledger(self) -> Iterator[int]:
        """The ledger file, open for read and append, under an exclusive ``flock``."""
        import fcntl  # POSIX only: the ledger (only used under an executor) needs flock

        fd = os.open(self.ledger_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)

    def load(self, params: Mapping[str, Any]) -> list[Any]:
        where, limit = self.where_limit(params)
        try:
            with self.path.open(encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError as exc:
            raise self.error(f"has no file {str(self.path)!r} to load from") from exc
        except UnicodeDecodeError as exc:
            raise self.error(f"file {str(self.path)!r} is not UTF-8 text: {exc}") from exc
        except OSError as exc:
            raise self.unreachable(exc) from exc
        out: list[Any] = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if limit is not None and len(out) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise self.error(
                    f"file {str(self.path)!r} line {lineno} is not JSON: {exc}"
                ) from exc
            if matches(row, where):
                out.append(row)
        return out


class _BadLedger(Exception):
    """The sidecar ledger holds something kisflow did not write."""


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` and fsync it."""
    with path.open("ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write(fd: int, entry: dict[str, Any]) -> None:
    """Append one ledger entry and fsync it."""
    os.write(fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))
    os.fsync(fd)


def _recover(fd: int, data: Path) -> list[Any]:
    """Undo a crashed writer's half-done save; return the marks recorded as done.

    Only the last entry can be a ``begin`` without ``done`` (writers hold the lock from
    ``begin`` to ``done``): the data file is cut back to the size it had then, and an
    ``abort`` entry is written. A torn last line (a crash mid-write) is cut off first.
    """
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    text = b"".join(chunks)
    whole = text.rfind(b"\n") + 1
    if whole < len(text):
        os.ftruncate(fd, whole)
        os.fsync(fd)
    done: list[Any] = []
    pending: dict[str, Any] | None = None
    for lineno, line in enumerate(text[:whole].decode("utf-8").splitlines(), start=1):
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise _BadLedger(f"line {lineno} is not a ledger entry: {exc}") from exc
        if "begin" in entry:
            pending = entry
        elif "done" in entry:
            done.append(entry["done"])
            pending = None
        else:
            pending = None
    if pending is not None:
        if data.exists() and data.stat().st_size > pending["size"]:
            os.truncate(data, pending["size"])
            with data.open("rb") as f:
                os.fsync(f.fileno())
        _write(fd, {"abort": pending["begin"]})
    return done
