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
==========  ============================  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kisflow.config import ConnConfig
from kisflow.connectors._base import BuiltinConnector
from kisflow.modes import Mode

if TYPE_CHECKING:
    from kisflow.stage import Stage

__all__ = [
    "BUILTIN_TYPES",
    "BuiltinConnector",
    "builtin_load",
    "builtin_save",
    "default_faas",
    "is_builtin_type",
    "make_builtin",
]


def _sqlite() -> type[BuiltinConnector]:
    from kisflow.connectors.sqlite import SQLiteConnector

    return SQLiteConnector


def _sql() -> type[BuiltinConnector]:
    from kisflow.connectors.sql import SQLConnector

    return SQLConnector


def _redis() -> type[BuiltinConnector]:
    from kisflow.connectors.redis import RedisConnector

    return RedisConnector


def _jsonl() -> type[BuiltinConnector]:
    from kisflow.connectors.jsonl import JSONLConnector

    return JSONLConnector


BUILTIN_TYPES: dict[str, Callable[[], type[BuiltinConnector]]] = {
    "jsonl": _jsonl,
    "redis": _redis,
    "sql": _sql,
    "sqlite": _sqlite,
}
"""Connector ``type`` (lower case) -> the built-in implementation, imported on first use."""


def is_builtin_type(type_name: str) -> bool:
    """Whether a connector ``type`` has a built-in implementation (case-insensitive)."""
    return type_name.strip().lower() in BUILTIN_TYPES


def make_builtin(config: ConnConfig) -> BuiltinConnector | None:
    """The built-in connector for ``config.type``, or None when the type has none.

    Checks the config and imports the optional extra it needs; opens nothing.

    Raises:
        ConnectorError: the config is unusable or the extra is not installed.
    """
    factory = BUILTIN_TYPES.get(config.type.strip().lower())
    return None if factory is None else factory()(config)


def builtin_save(flow: Any) -> None:
    """Default FaaS of a Save stage on a built-in connector: store the input, pass it on."""
    rows = flow.input()
    flow.get_connector().call(flow, rows)
    flow.commit_row_batch(rows)


def builtin_load(flow: Any) -> None:
    """Default FaaS of a Load stage on a built-in connector: commit the rows it reads."""
    flow.commit_row_batch(flow.get_connector().call(flow, None))


def default_faas(stage: Stage) -> Callable[[Any], None] | None:
    """The default FaaS of ``stage`` when it is a Save/Load stage on a built-in connector."""
    if stage.connector is None or not is_builtin_type(stage.connector.config.type):
        return None
    if stage.mode is Mode.SAVE:
        return builtin_save
    if stage.mode is Mode.LOAD:
        return builtin_load
    return None
