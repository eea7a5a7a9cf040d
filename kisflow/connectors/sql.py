"""The ``sql`` connector (extra ``kisflow[sql]``): SQLAlchemy Core on any database URL.

``addrs`` is a SQLAlchemy URL (``postgresql+psycopg://...``, ``mysql+pymysql://...``,
``sqlite:///file.db``), ``key`` the table. Behaviour is the ``sqlite`` connector's: Save
inserts a batch in one transaction, creating the table (and new columns) from the rows;
Load reads rows as dicts, filtered by ``params.where``, cut by ``params.limit``. Tables
it creates carry a ``kisflow_rowid`` key so rows load in insertion order.

Run by an executor (process pool, Dask), Save records (flow, stage, partition key) in
the ``kisflow_partitions`` table in the same transaction as the rows, and writes nothing
for a partition already recorded there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kisflow.connectors._base import LEDGER, SaveMark, Store
from kisflow.connectors._table import fit_value, kind_of

__all__ = ["ROWID", "SQLConnector"]

ROWID = "kisflow_rowid"
"""The autoincrement key of tables this connector creates (not part of loaded rows)."""


class _Replayed(Exception):
    """The partition was recorded by a concurrent save: roll back, write nothing."""


class SQLConnector(Store):
    """Rows in a table of any database SQLAlchemy reaches."""

    type_name = "sql"

    def check(self) -> None:
        """Check the config; ``MissingExtraError`` when SQLAlchemy is missing."""
        super().check()
        sqlalchemy = self.require("sqlalchemy", "sql")
        if not self.config.key:
            raise self.error("has no key; set it to the table name")
        try:
            sqlalchemy.engine.make_url(self.config.addrs)
        except sqlalchemy.exc.ArgumentError as exc:
            raise self.error(f"addrs is not a SQLAlchemy URL: {exc}") from exc
        self._engine: Any = None

    def engine(self) -> Any:
        """The engine, made on first use (NullPool: a connection per batch, then closed)."""
        if self._engine is None:
            import sqlalchemy
            from sqlalchemy.pool import NullPool

            try:
                self._engine = sqlalchemy.create_engine(self.config.addrs, poolclass=NullPool)
            except (sqlalchemy.exc.ArgumentError, ImportError) as exc:
                raise self.error(f"cannot make an engine: {exc}") from exc
        return self._engine

    def _types(self) -> dict[str, Any]:
        import sqlalchemy as sa

        return {
            "BOOLEAN": sa.Boolean(),
            "INTEGER": sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            "REAL": sa.Double(),
            "TEXT": sa.Text(),
            "BLOB": sa.LargeBinary(),
            "JSON": sa.JSON(none_as_null=True),
        }

    @staticmethod
    def _kind(col: Any) -> str:
        import sqlalchemy as sa

        t = col.type
        for cls, kind in (
            (sa.Boolean, "BOOLEAN"),
            (sa.JSON, "JSON"),
            (sa.Integer, "INTEGER"),
            (sa.Float, "REAL"),
            (sa.String, "TEXT"),
            (sa.LargeBinary, "BLOB"),
        ):
            if isinstance(t, cls):
                return kind
        return "ANY"

    def _reflect(self, conn: Any) -> Any:
        import sqlalchemy as sa

        try:
            return sa.Table(self.config.key, sa.MetaData(), autoload_with=conn)
        except sa.exc.NoSuchTableError:
            return None

    def save(
        self, rows: Sequence[Any], params: Mapping[str, Any], mark: SaveMark | None = None
    ) -> int:
        import sqlalchemy as sa

        records = [self.to_record(row, i) for i, row in enumerate(rows)]
        if not records:
            return 0
        try:
            with self.engine().begin() as conn:
                if mark is not None and not self._record(conn, mark):
                    return 0
                table = self._reflect(conn)
                types = self._types()
                if table is None:
                    first = records[0]
                    table = sa.Table(
                        self.config.key,
                        sa.MetaData(),
                        sa.Column(ROWID, sa.Integer, primary_key=True, autoincrement=True),
                        *(sa.Column(n, types[kind_of(v)]) for n, v in first.items()),
                    )
                    table.create(conn)
                kinds = {c.name: self._kind(c) for c in table.columns}
                added = False
                for record in records:
                    for name in [k for k in record if k not in kinds]:
                        kind = kind_of(record[name])
                        column = sa.Column(name, types[kind])
                        ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
                        table_sql = conn.dialect.identifier_preparer.format_table(table)
                        conn.execute(sa.text(f"ALTER TABLE {table_sql} ADD COLUMN {ddl}"))
                        kinds[name] = kind
                        added = True
                if added:
                    table = self._reflect(conn)
                values = []
                for i, record in enumerate(records):
                    values.append(
                        {
                            c.name: self._check(kinds[c.name], c.name, record.get(c.name), i)
                            for c in table.columns
                            if c.name != ROWID
                        }
                    )
                conn.execute(table.insert(), values)
        except _Replayed:
            return 0
        except sa.exc.OperationalError as exc:
            raise self.unreachable(exc) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise self.error(f"failed to save to table {self.config.key!r}: {exc}") from exc
        return len(records)

    @staticmethod
    def _record(conn: Any, mark: SaveMark) -> bool:
        """Record ``mark`` in the ledger (caller's transaction); False if already there.

        The ledger row goes in before the data rows: a concurrent save of the same
        partition then waits on its primary key and fails, rolling back (``_Replayed``).
        """
        import sqlalchemy as sa

        ledger = sa.Table(
            LEDGER,
            sa.MetaData(),
            sa.Column("flow", sa.String(255), primary_key=True),
            sa.Column("stage", sa.String(255), primary_key=True),
            sa.Column("partition", sa.String(255), primary_key=True),
        )
        ledger.create(conn, checkfirst=True)
        where = (
            (ledger.c.flow == mark.flow)
            & (ledger.c.stage == mark.stage)
            & (ledger.c.partition == mark.partition)
        )
        if conn.execute(sa.select(sa.literal(1)).where(where)).first() is not None:
            return False
        try:
            conn.execute(
                ledger.insert().values(flow=mark.flow, stage=mark.stage, partition=mark.partition)
            )
        except sa.exc.IntegrityError as exc:
            raise _Replayed from exc
        return True

    def _check(self, kind: str, name: str, value: Any, index: int) -> Any:
        value, problem = fit_value(kind, value)
        if problem is not None:
            raise self.error(
                f"cannot store row {index} field {name!r} in table {self.config.key!r}: {problem}"
            )
        return value

    def load(self, params: Mapping[str, Any]) -> list[Any]:
        import sqlalchemy as sa

        where, limit = self.where_limit(params)
        try:
            with self.engine().connect() as conn:
                table = self._reflect(conn)
                if table is None:
                    raise self.error(f"has no table {self.config.key!r} to load from")
                unknown = [k for k in where if k not in table.c]
                if unknown:
                    names = ", ".join(c.name for c in table.columns if c.name != ROWID)
                    raise self.error(
                        f"params.where names {unknown[0]!r}, not a column of table "
                        f"{self.config.key!r} (columns: {names})"
                    )
                query = sa.select(*(c for c in table.columns if c.name != ROWID))
                for k, v in where.items():
                    col = table.c[k]
                    query = query.where(col.is_(None) if v is None else col == v)
                if ROWID in table.c:
                    query = query.order_by(table.c[ROWID])
                if limit is not None:
                    query = query.limit(limit)
                return [dict(row._mapping) for row in conn.execute(query)]
        except sa.exc.OperationalError as exc:
            raise self.unreachable(exc) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise self.error(f"failed to load from table {self.config.key!r}: {exc}") from exc
