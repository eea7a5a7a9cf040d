"""Connectors: a handle to an external store, bound to a Save or Load stage.

A ``Connector`` is made per stage from a ``ConnConfig``. Its init callback (registered
with ``kisflow.caas_init``) runs once per connector instance, thread-safely; ``call``
dispatches to the CaaS registered for (connector name, current function, current mode),
exactly as KisFlow's ``conn.Call(ctx, flow, args)``. A connector whose ``type`` has a
built-in implementation (``kisflow.connectors``) uses it wherever no user callback is
registered: the built-in init when there is no ``caas_init``, the built-in call when
there is no CaaS for (connector, function, mode).
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any

from kisflow import _pool
from kisflow.config import ConnConfig
from kisflow.errors import ConnectorError

if TYPE_CHECKING:
    from kisflow.connectors import BuiltinConnector
    from kisflow.flow import Flow

__all__ = ["Connector"]


class Connector:
    """One connector instance: config, metadata, init-once and CaaS dispatch."""

    def __init__(self, config: ConnConfig, *, pool: _pool.Pool | None = None) -> None:
        self.config = config
        self.id = f"conn-{uuid.uuid4().hex}"
        self._pool = pool
        self._init_lock = threading.Lock()
        self._initialised = False
        self._builtin: BuiltinConnector | None = None
        self._metadata: dict[str, Any] = {}
        self._metadata_lock = threading.Lock()

    @property
    def pool(self) -> _pool.Pool:
        """The pool this connector looks its callbacks up in."""
        return self._pool if self._pool is not None else _pool.current()

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
            elif self._make_builtin() is None:
                # Nothing to run yet: a caas_init registered later still runs, at the
                # first call, instead of being skipped for good.
                return
            self._initialised = True

    def _make_builtin(self) -> BuiltinConnector | None:
        """The built-in implementation of this connector's type (made once), or None."""
        if self._builtin is None:
            from kisflow.connectors import make_builtin

            self._builtin = make_builtin(self.config)
        return self._builtin

    def builtin(self) -> BuiltinConnector | None:
        """The built-in implementation serving this connector's type, or None (thread-safe)."""
        with self._init_lock:
            return self._make_builtin()

    def call(self, flow: Flow, args: Any = None) -> Any:
        """Call the CaaS for (this connector, the flow's current function and mode)."""
        stage = flow.get_this_function()
        spec = self.pool.get_caas(self.config.cname, stage.name, stage.mode)
        if spec is None:
            self.init()
            builtin = self.builtin()
            if builtin is not None:
                return builtin.call(stage, args, flow=flow)
            raise ConnectorError(
                f"connector {self.config.cname!r} has no caas for function {stage.name!r} "
                f"in mode {stage.mode.value}; register one with "
                f"kisflow.caas({self.config.cname!r}, {stage.name!r}, {stage.mode.value!r})",
                connector=self.config.cname,
                type=self.config.type,
                address=self.config.addrs,
            )
        self.init()
        if spec.takes_ctx:
            return spec.fn(flow.get_context(), self, stage, flow, args)
        return spec.fn(self, stage, flow, args)

    def __repr__(self) -> str:
        return f"Connector({self.config.cname!r}, type={self.config.type!r})"
