"""The ``sqlite`` connector: ``addrs`` is the database file, ``key`` the table.

Save inserts a batch in one transaction, creating the table from the first row's fields
(adding columns for new fields later); Load reads rows in insertion order as dicts,
optionally filtered by ``params.where`` (field: value) and cut by ``params.limit``.

Run by an executor (process pool, Dask), Save records (flow, stage, partition key) in
the ``kisflow_partitions`` table in the same transaction as the rows, and writes nothing
for a partition already recorded there.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from kisflow.connectors._base import LEDGER, SaveMark, Store
from kisflow.connectors._table import fit_value, kind_of, kind_of_decltype

__all__ = ["SQLiteConnector", "quote_ident"]


def quote_ident(name: str) -> str:
    """An SQL identifier in double quotes (embedded quotes doubled)."""
    if "\x00" in name:
        raise ValueError("identifiers cannot contain NUL")
    return '"' + name.replace('"', '""') + '"'


class SQLiteConnector(Store):
    """Rows in a table of an SQLite file (Python's own sqlite3: no server, no extra)."""

    type_name = "sqlite"

    def check(self) -> None:
        super().check()
        if self.config.addrs == ":memory:" or self.config.addrs.startswith("file:"):
            raise self.error("needs a database file path in addrs (not :memory: or a URI)")
        if not self.config.key:
            raise self.error("has no key; set it to the table name")

    def _open(self, *, read_only: bool) -> sqlite3.Connection:
        path = Path(self.config.addrs).expanduser()
        try:
            if read_only:
                uri = path.resolve().as_uri() + "?mode=ro"
                return sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)
            path.parent.mkdir(parents=True, exist_ok=True)
            return sqlite3.connect(path, timeout=5.0, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise self.unreachable(exc) from exc

    def _columns(self, db: sqlite3.Connection) -> dict[str, str]:
        table = quote_ident(self.config.key)
        info = db.execute(f"PRAGMA table_info({table})").fetchall()
        return {row[1]: kind_of_decltype(row[2] or "") for row in info}

    def save(
        self, rows: Sequence[Any], params: Mapping[str, Any], mark: SaveMark | None = None
    ) -> int:
        records = [self.to_record(row, i) for i, row in enumerate(rows)]
        if not records:
            return 0
        try:
            with closing(self._open(read_only=False)) as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    if mark is not None and not self._record(db, mark):
                        db.execute("ROLLBACK")
                        return 0
                    self._insert(db, records)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise self.unreachable(exc) from exc
        except (sqlite3.Error, ValueError) as exc:
            raise self.error(f"failed to save to table {self.config.key!r}: {exc}") from exc
        return len(records)

    @staticmethod
    def _record(db: sqlite3.Connection, mark: SaveMark) -> bool:
        """Record ``mark`` in the ledger (caller's transaction); False if already there."""
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {LEDGER} (flow TEXT NOT NULL, stage TEXT NOT NULL, "
            f'"partition" TEXT NOT NULL, PRIMARY KEY (flow, stage, "partition"))'
        )
        cur = db.execute(
            f'INSERT OR IGNORE INTO {LEDGER} (flow, stage, "partition") VALUES (?, ?, ?)',
            (mark.flow, mark.stage, mark.partition),
        )
        return cur.rowcount == 1

    def _insert(self, db: sqlite3.Connection, records: list[dict[str, Any]]) -> None:
        """Insert ``records`` inside the caller's transaction, adding columns as needed."""
        table = quote_ident(self.config.key)
        columns = self._columns(db)
        for i, record in enumerate(records):
            for name in [k for k in record if k not in columns]:
                kind = kind_of(record[name])
                if not columns:
                    db.execute(f"CREATE TABLE {table} ({quote_ident(name)} {kind})")
                else:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {quote_ident(name)} {kind}")
                columns[name] = kind
            names = list(record)
            if not names:
                db.execute(f"INSERT INTO {table} DEFAULT VALUES")
                continue
            values = [self._encode(columns[n], n, record[n], i) for n in names]
            cols = ", ".join(quote_ident(n) for n in names)
            marks = ", ".join("?" * len(names))
            db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", values)

    def _encode(self, kind: str, name: str, value: Any, index: int) -> Any:
        value, problem = fit_value(kind, value)
        if problem is not None:
            raise self.error(
                f"cannot store row {index} field {name!r} in table {self.config.key!r}: {problem}"
            )
        if value is None:
            return None
        if kind == "JSON":
            return json.dumps(value, ensure_ascii=False)
        if kind in ("BOOLEAN", "ANY") and isinstance(value, bool):
            return int(value)
        return value

    def load(self, params: Mapping[str, Any]) -> list[Any]:
        where, limit = self.where_limit(params)
        table = quote_ident(self.config.key)
        try:
            with closing(self._open(read_only=True)) as db:
                columns = self._columns(db)
                if not columns:
                    raise self.error(f"has no table {self.config.key!r} to load from")
                unknown = [k for k in where if k not in columns]
                if unknown:
                    raise self.error(
                        f"params.where names {unknown[0]!r}, not a column of table "
                        f"{self.config.key!r} (columns: {', '.join(columns)})"
                    )
                sql = f"SELECT * FROM {table}"
                args: list[Any] = []
                if where:
                    conds = []
                    for k, v in where.items():
                        conds.append(f"{quote_ident(k)} IS ?")
                        args.append(self._encode(columns[k], k, v, 0))
                    sql += " WHERE " + " AND ".join(conds)
                sql += " ORDER BY rowid"
                if limit is not None:
                    sql += " LIMIT ?"
                    args.append(limit)
                cursor = db.execute(sql, args)
                names = [d[0] for d in cursor.description]
                kinds = [columns.get(n, "ANY") for n in names]
                return [
                    {n: _decode(k, v) for n, k, v in zip(names, kinds, row, strict=True)}
                    for row in cursor.fetchall()
                ]
        except sqlite3.OperationalError as exc:
            raise self.unreachable(exc) from exc
        except sqlite3.Error as exc:
            raise self.error(f"failed to load from table {self.config.key!r}: {exc}") from exc


def _decode(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "BOOLEAN" and isinstance(value, int):
        return bool(value)
    if kind == "JSON" and isinstance(value, str):
        return json.loads(value)
    if kind == "REAL" and isinstance(value, int):
        return float(value)
    return value
