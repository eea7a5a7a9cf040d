"""Connectors: a handle to an external store, bound to a Save or Load stage.

A ``Connector`` is made per stage from a ``ConnConfig`` when the stage is linked, and
does nothing until a run first uses it: then its init callback (registered with
``kisflow.caas_init``) runs once, thread-safely. ``call`` dispatches to the CaaS
registered for (connector name, current function, current mode), exactly as KisFlow's
``conn.Call(ctx, flow, args)``. A connector whose ``type`` is a registered
``ConnectorType`` (the built-ins of ``kisflow.connectors``, a pool's own, or an
installed package's ``kisflow.connectors`` entry point) uses that type's store wherever
no user callback is registered: its init when there is no ``caas_init``, its call when
there is no CaaS for (connector, function, mode).
"""

from __future__ import annotations

import importlib.metadata
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from loguru import logger

from kisflow import _state
from kisflow.config import ConnConfig
from kisflow.errors import ConfigError, ConnectorError, KisFlowError

if TYPE_CHECKING:
    from kisflow.connectors._base import StageLike, Store
    from kisflow.modes import Mode

__all__ = [
    "ENTRY_POINT_GROUP",
    "Connector",
    "ConnectorType",
    "find_type",
    "register_default",
]

ENTRY_POINT_GROUP = "kisflow.connectors"
"""Entry-point group through which an installed package adds connector types: each
entry point's name is the type name, its object a ``ConnectorType`` or a store factory."""


@attrs.frozen
class ConnectorType:
    """A connector ``type:``: how to make the store that serves its Save and Load stages.

    ``factory(config)`` returns a ``kisflow.connectors.Store`` for one connector; it may
    check the config and import an optional extra, and must open nothing (the store
    connects on first use). ``file_path`` says that ``addrs`` is a file path, which a
    config folder resolves relative to the file that names it.
    """

    name: str
    factory: Callable[[ConnConfig], Store] = attrs.field(repr=False)
    file_path: bool = False


class _CallingFlow(Protocol):
    """The flow a FaaS hands to ``Connector.call`` (a run's view)."""

    @property
    def name(self) -> str: ...

    def get_this_function(self) -> StageLike: ...

    def get_context(self) -> Any: ...


class _TypeSource(Protocol):
    def get_connector_type(self, name: str) -> ConnectorType | None: ...


class _CallbackSource(_TypeSource, Protocol):
    """The part of a pool a connector reads (``kisflow._pool.Pool`` is one)."""

    def get_caas_init(self, cname: str) -> Callable[..., Any] | None: ...

    def get_caas(self, cname: str, fname: str, mode: Mode | str) -> Any: ...


_entry_points_loaded = False


def register_default(conn_type: ConnectorType, *, replace: bool = False) -> None:
    """Register a connector type for every pool (the built-ins register this way).

    Raises:
        ConfigError: a default of that name exists and ``replace`` is false.
    """
    key = conn_type.name.strip().lower()
    with _state.lock:
        if key in _state.connector_types and not replace:
            raise ConfigError(
                f"connector type {conn_type.name!r} is already registered", key="type"
            )
        _state.connector_types = {**_state.connector_types, key: conn_type}


def _load_entry_points() -> None:
    """Register the connector types of installed packages, once per process."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = ep.name.strip().lower()
        if key in _state.connector_types:
            continue  # a built-in or an earlier package keeps the name
        try:
            obj = ep.load()
        except Exception as exc:
            logger.warning("connector type entry point {!r} failed to load: {}", ep.value, exc)
            continue
        conn_type = obj if isinstance(obj, ConnectorType) else ConnectorType(ep.name, obj)
        register_default(conn_type, replace=True)


def find_type(name: str, pool: _TypeSource | None = None) -> ConnectorType | None:
    """The connector type named ``name`` (any case): the pool's own, else a default."""
    if not name:
        return None
    source = pool if pool is not None else _state.pool
    found = source.get_connector_type(name) if source is not None else None
    if found is not None:
        return found
    key = name.strip().lower()
    found = _state.connector_types.get(key)
    if found is None and not _entry_points_loaded:
        _load_entry_points()
        found = _state.connector_types.get(key)
    return found


class Connector:
    """One connector instance: config, metadata, init-once and CaaS dispatch."""

    def __init__(self, config: ConnConfig, *, pool: _CallbackSource | None = None) -> None:
        self.config = config
        self.id = f"conn-{uuid.uuid4().hex}"
        self._pool = pool
        self._init_lock = threading.Lock()
        self._initialised = False
        self._store: Store | None = None
        self._metadata: dict[str, Any] = {}
        self._metadata_lock = threading.Lock()

    @property
    def pool(self) -> _CallbackSource:
        """The pool this connector looks its callbacks up in."""
        pool: _CallbackSource = self._pool if self._pool is not None else _state.pool
        return pool

    def get_id(self) -> str:
        """This connector instance's id."""
        return self.id

    def get_name(self) -> str:
        """The connector name (``cname``)."""
        return self.config.cname

    def get_config(self) -> ConnConfig:
        """The connector's config."""
        return self.config

    def get_metadata(self, key: str) -> Any:
        """A value stored on this connector, or None."""
        with self._metadata_lock:
            return self._metadata.get(key)

    def set_metadata(self, key: str, value: Any) -> None:
        """Store a value on this connector (e.g. a client made by the init callback)."""
        with self._metadata_lock:
            self._metadata[key] = value

    @property
    def initialised(self) -> bool:
        """Whether the init callback (or the type's store) has been set up."""
        return self._initialised

    def init(self) -> None:
        """Run the connector's init callback once (later calls do nothing)."""
        if self._initialised:
            return
        with self._init_lock:
            if self._initialised:
                return
            fn = self.pool.get_caas_init(self.config.cname)
            if fn is not None:
                try:
                    fn(self)
                except Exception as exc:
                    raise ConnectorError(
                        f"connector {self.config.cname!r} ({self.config.type or 'no type'} at "
                        f"{self.config.addrs!r}) failed to initialise: {exc}",
                        connector=self.config.cname,
                        type=self.config.type,
                        address=self.config.addrs,
                    ) from exc
            elif self._make_store() is None:
                # Nothing to run yet: a caas_init registered later still runs, at the
                # first call, instead of being skipped for good.
                return
            self._initialised = True

    def _make_store(self) -> Store | None:
        """The store of this connector's registered type (made once), or None.

        Raises:
            ConnectorError: the type's factory refused the config; a factory's own
                exception (a bug in a third-party type) is chained to one.
            KisFlowError: as the factory raised it (``MissingExtraError``, ...).
        """
        if self._store is None:
            conn_type = find_type(self.config.type, self.pool)
            if conn_type is not None:
                try:
                    self._store = conn_type.factory(self.config)
                except KisFlowError:
                    raise
                except Exception as exc:
                    c = self.config
                    raise ConnectorError(
                        f"connector {c.cname!r} ({c.type} at {c.addrs!r}): connector type "
                        f"{conn_type.name!r} failed to make its store: "
                        f"{type(exc).__name__}: {exc}",
                        connector=c.cname,
                        type=c.type,
                        address=c.addrs,
                        retryable=False,
                    ) from exc
        return self._store

    def store(self) -> Store | None:
        """The store serving this connector's type, or None (thread-safe)."""
        with self._init_lock:
            return self._make_store()

    def call(self, flow: _CallingFlow, args: Any = None) -> Any:
        """Call the CaaS for (this connector, the flow's current function and mode)."""
        stage = flow.get_this_function()
        spec = self.pool.get_caas(self.config.cname, stage.name, stage.mode)
        if spec is None:
            self.init()
            store = self.store()
            if store is not None:
                return store.call(stage, args)
            raise ConnectorError(
                f"connector {self.config.cname!r} has no caas for function {stage.name!r} "
                f"in mode {stage.mode.value}; register one with "
                f"kisflow.caas({self.config.cname!r}, {stage.name!r}, {stage.mode.value!r})",
                connector=self.config.cname,
                type=self.config.type,
                address=self.config.addrs,
                flow=flow.name,
                stage=stage.name,
                retryable=False,
            )
        self.init()
        if spec.takes_ctx:
            return spec.fn(flow.get_context(), self, stage, flow, args)
        return spec.fn(self, stage, flow, args)

    def __repr__(self) -> str:
        return f"Connector({self.config.cname!r}, type={self.config.type!r})"
