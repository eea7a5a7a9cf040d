"""Built-in connectors, selected by a connector config's ``type``.

A YAML-only flow can save and load rows with no user code: a Save or Load stage whose
connector has one of these types runs a default FaaS (Save stores its input rows and
passes them on; Load commits the rows it reads). A user ``caas_init`` for the connector
replaces the built-in init, and a user CaaS for (connector, function, mode) replaces the
built-in call, so nothing here runs (nor is imported) for connectors users serve.

==========  ============================  ==========================================
type        ``addrs``                     ``key``
==========  ============================  ==========================================
``sqlite``  database file                 table
``sql``     SQLAlchemy URL (extra: sql)   table
``redis``   ``host:port`` or redis:// URL list or stream name (extra: redis)
``jsonl``   file path                     (unused)
``parquet`` folder (or one file to Load)  (unused; extra: polars)
``csv``     folder (or one file to Load)  (unused; extra: polars)
==========  ============================  ==========================================

Each registers itself as a ``ConnectorType`` (``register_default``), just as a
third-party type registers with ``kisflow.pool.connector_type`` or an entry point in
group ``kisflow.connectors``. A type's store subclasses ``Store``; ``SaveMark``,
``to_record`` and ``plain_value`` are what such a store needs (docs/connectors.md).
"""

from __future__ import annotations

from kisflow import _state
from kisflow.config import ConnConfig
from kisflow.connector import ConnectorType, register_default
from kisflow.connectors._base import BuiltinConnector, SaveMark, Store, plain_value, to_record

__all__ = [
    "BUILTIN_TYPES",
    "BuiltinConnector",
    "SaveMark",
    "Store",
    "is_builtin_type",
    "plain_value",
    "to_record",
]


def _sqlite(config: ConnConfig) -> Store:
    from kisflow.connectors.sqlite import SQLiteConnector

    return SQLiteConnector(config)


def _sql(config: ConnConfig) -> Store:
    from kisflow.connectors.sql import SQLConnector

    return SQLConnector(config)


def _redis(config: ConnConfig) -> Store:
    from kisflow.connectors.redis import RedisConnector

    return RedisConnector(config)


def _jsonl(config: ConnConfig) -> Store:
    from kisflow.connectors.jsonl import JSONLConnector

    return JSONLConnector(config)


def _parquet(config: ConnConfig) -> Store:
    from kisflow.connectors.parquet import ParquetConnector

    return ParquetConnector(config)


def _csv(config: ConnConfig) -> Store:
    from kisflow.connectors.csv import CSVConnector

    return CSVConnector(config)


BUILTIN_TYPES: tuple[ConnectorType, ...] = (
    ConnectorType("csv", _csv, file_path=True),
    ConnectorType("jsonl", _jsonl, file_path=True),
    ConnectorType("parquet", _parquet, file_path=True),
    ConnectorType("redis", _redis),
    ConnectorType("sql", _sql),
    ConnectorType("sqlite", _sqlite, file_path=True),
)
"""The built-in connector types; each imports its implementation on first use."""

for _type in BUILTIN_TYPES:
    register_default(_type, replace=True)


def is_builtin_type(type_name: str) -> bool:
    """Whether a connector ``type`` (any case) is served by a built-in, as registered.

    The engine asks the registry (``kisflow.connector.find_type``) instead: any
    registered type serves Save and Load stages the same way.
    """
    found = _state.connector_types.get(type_name.strip().lower())
    return any(found is t for t in BUILTIN_TYPES)
