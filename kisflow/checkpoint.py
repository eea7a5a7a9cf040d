"""The checkpoint store of durable streams: one SQLite file of positions and intents.

A stream records each batch's span as an *intent* before running it (``begin``), and
once the batch's effects are stored, drops the intent and stores the position after it,
the rows committed so far and the stages' state in one transaction (``commit``). After
a crash ``load`` gives the last committed position and ``intents`` the batches that may
be half stored: the stream reruns exactly those records under the same batch keys, and
the Saves (which record each key with their rows) store them once.

The file is in WAL mode with a busy timeout, so the consumers of one group (several
processes, one key each) can share it. ``Batch`` is what a running batch is, as a FaaS
sees it through ``kisflow.current_batch()``: its idempotency key, seq and span.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from kisflow import _context
from kisflow.errors import CheckpointError

__all__ = ["FORMAT", "Batch", "Checkpoint", "Intent", "Saved", "current_batch"]

FORMAT = 1
"""The checkpoint file's format version (table ``kisflow_checkpoint_meta``)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kisflow_checkpoint_meta (name TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS kisflow_checkpoints (
    key TEXT PRIMARY KEY, position TEXT, seq INTEGER NOT NULL, committed INTEGER NOT NULL,
    updated REAL NOT NULL, state TEXT);
CREATE TABLE IF NOT EXISTS kisflow_intents (
    key TEXT NOT NULL, seq INTEGER NOT NULL, span TEXT NOT NULL, began REAL NOT NULL,
    taken INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (key, seq));
"""


@attrs.frozen
class Saved:
    """What a stream committed last under one key."""

    position: Any
    """The source position after the last committed batch (JSON value)."""
    seq: int
    """The last committed batch's number (from 1)."""
    committed: int
    """Source records committed under this key, all runs together."""
    updated: float
    """When (``time.time()``) it was committed."""
    state: Any = None
    """The stages' state committed with the position (None until stages keep state)."""


@attrs.frozen
class Intent:
    """A batch begun and not committed: its number and the span of records it holds."""

    seq: int
    span: Any
    taken: bool = False
    """Records taken over from a dead consumer, outside the source's own order: a
    restart replays them but does not resume after them."""


@attrs.frozen
class Batch:
    """The stream batch a run belongs to (``kisflow.current_batch()`` in a FaaS).

    ``key`` (``f"{source}#{seq}"``) is the batch's idempotency key: the same records run
    again after a crash get the same key. A Save of your own joins the commit by
    recording ``key`` in its own transaction with its rows and writing nothing when the
    key is already there (docs/streaming.md, "Your own Save").
    """

    source: str
    """The source's checkpoint key (``jsonl:/data/orders.jsonl``)."""
    seq: int
    """The batch's number under that key, from 1."""
    span: Any = attrs.field(eq=False)
    """The records the batch holds, as the source spells them (JSON value)."""
    checkpoint: str | None = None
    """The checkpoint file's path, or None for a stream without one."""

    @property
    def key(self) -> str:
        """The idempotency key the built-in Saves record: ``f"{source}#{seq}"``."""
        return f"{self.source}#{self.seq}"


def current_batch() -> Batch | None:
    """The stream batch this run belongs to, or None (no stream, or no checkpoint).

    A Save FaaS of your own joins a stream's commit with it: store ``batch.key`` with
    the rows in one transaction of your store, store nothing when the key is already
    there, and register the FaaS with ``joins_commit=True`` (docs/streaming.md).
    """
    part = _context.PARTITION.get()
    return part if isinstance(part, Batch) else None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Checkpoint:
    """A stream's checkpoint store: one SQLite file, safe for several processes.

    ``path`` is created when missing. Every method is one transaction; ``commit`` stores
    the position and drops the intent atomically. Errors are ``CheckpointError`` naming
    the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(Path(path))
        self._lock = threading.Lock()
        try:
            con = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA busy_timeout=30000")
            con.executescript(_SCHEMA)
            row = con.execute(
                "SELECT value FROM kisflow_checkpoint_meta WHERE name='format'"
            ).fetchone()
            if row is None:
                con.execute(
                    "INSERT OR IGNORE INTO kisflow_checkpoint_meta VALUES ('format', ?)",
                    (str(FORMAT),),
                )
            elif row[0] != str(FORMAT):
                raise CheckpointError(
                    f"checkpoint {self.path!r} has format {row[0]}, this kisflow reads "
                    f"format {FORMAT}",
                    path=self.path,
                )
        except sqlite3.Error as exc:
            raise CheckpointError(
                f"checkpoint {self.path!r} cannot be opened as a SQLite checkpoint store: "
                f"{type(exc).__name__}: {exc}",
                path=self.path,
            ) from exc
        self._con = con

    def __repr__(self) -> str:
        return f"Checkpoint({self.path!r})"

    @contextmanager
    def _tx(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            con = self._con
            try:
                con.execute("BEGIN IMMEDIATE")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            except sqlite3.Error as exc:
                raise CheckpointError(
                    f"checkpoint {self.path!r} failed to {what}: {type(exc).__name__}: {exc}",
                    path=self.path,
                ) from exc

    def _read(self, what: str, sql: str, args: tuple[Any, ...]) -> list[Any]:
        with self._lock:
            try:
                return self._con.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise CheckpointError(
                    f"checkpoint {self.path!r} failed to {what}: {type(exc).__name__}: {exc}",
                    path=self.path,
                ) from exc

    def _loads(self, text: str | None, what: str) -> Any:
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise CheckpointError(
                f"checkpoint {self.path!r} holds a {what} that is not JSON: {text[:80]!r}",
                path=self.path,
            ) from exc

    def load(self, key: str) -> Saved | None:
        """What was last committed under ``key``, or None when nothing was."""
        rows = self._read(
            f"load {key!r}",
            "SELECT position, seq, committed, updated, state FROM kisflow_checkpoints WHERE key=?",
            (key,),
        )
        if not rows:
            return None
        position, seq, committed, updated, state = rows[0]
        return Saved(
            position=self._loads(position, "position"),
            seq=seq,
            committed=committed,
            updated=updated,
            state=self._loads(state, "state"),
        )

    def intents(self, key: str) -> list[Intent]:
        """The batches begun under ``key`` and not committed, in seq order."""
        rows = self._read(
            f"read the intents of {key!r}",
            "SELECT seq, span, taken FROM kisflow_intents WHERE key=? ORDER BY seq",
            (key,),
        )
        return [Intent(seq, self._loads(span, "span"), bool(t)) for seq, span, t in rows]

    def begin(self, key: str, seq: int, span: Any, *, taken: bool = False) -> None:
        """Record that batch ``seq`` of ``key`` covering ``span`` is about to run
        (``taken``: records taken over from another consumer, see ``Intent``)."""
        text = self._span_text(key, seq, span)
        with self._tx(f"begin batch {seq} of {key!r}") as con:
            con.execute(
                "INSERT OR REPLACE INTO kisflow_intents VALUES (?, ?, ?, ?, ?)",
                (key, seq, text, time.time(), int(taken)),
            )

    def _span_text(self, key: str, seq: int, value: Any, what: str = "span") -> str:
        try:
            return _dumps(value)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint {self.path!r}: batch {seq} of {key!r} has a {what} that is not "
                f"JSON ({type(exc).__name__}: {exc}): {value!r:.80}",
                path=self.path,
            ) from exc

    def commit(self, key: str, seq: int, position: Any, rows: int, state: Any = None) -> None:
        """Batch ``seq`` of ``key`` is stored: drop its intent, store ``position``, add
        ``rows`` to the committed count and store ``state``, in one transaction."""
        position_text = self._span_text(key, seq, position, "position")
        state_text = None if state is None else self._span_text(key, seq, state, "state")
        with self._tx(f"commit batch {seq} of {key!r}") as con:
            con.execute("DELETE FROM kisflow_intents WHERE key=? AND seq=?", (key, seq))
            con.execute(
                "INSERT INTO kisflow_checkpoints VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET position=excluded.position, "
                "seq=max(seq, excluded.seq), committed=committed + excluded.committed, "
                "updated=excluded.updated, state=excluded.state",
                (key, position_text, seq, rows, time.time(), state_text),
            )

    def keys(self, prefix: str = "") -> list[str]:
        """The keys with a committed position or an intent that start with ``prefix``."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._read(
            f"list keys {prefix!r}",
            "SELECT key FROM kisflow_checkpoints WHERE key LIKE ? ESCAPE '\\' UNION "
            "SELECT key FROM kisflow_intents WHERE key LIKE ? ESCAPE '\\' ORDER BY 1",
            (escaped + "%", escaped + "%"),
        )
        return [k for (k,) in rows]

    def next_seq(self, key: str) -> int:
        """The number the next batch of ``key`` gets: past every committed and begun one."""
        rows = self._read(
            f"number the next batch of {key!r}",
            "SELECT max(s) FROM (SELECT seq AS s FROM kisflow_checkpoints WHERE key=? "
            "UNION ALL SELECT seq FROM kisflow_intents WHERE key=?)",
            (key, key),
        )
        last = rows[0][0]
        return 1 if last is None else int(last) + 1

    def close(self) -> None:
        """Close the file (the store cannot be used after)."""
        with self._lock:
            self._con.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
