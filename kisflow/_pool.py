"""The pool: the thread-safe registry of FaaS, flows, connector callbacks and types.

It holds five routers, each behind its own lock: FaaS by function name, flows by flow
name, connector init callbacks by connector name, CaaS by (connector, function, mode) and
connector types by type name. ``current()`` is the pool the module-level API uses
(kept in ``kisflow._state``); ``use()`` swaps in another one (tests use it through
``kisflow.testing``). Every method is thread-safe: a
check-and-insert happens under the router's lock and lookups return copies.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from kisflow import _state
from kisflow._signature import CallKind, Signature, read_signature
from kisflow.errors import ConfigError, DuplicateRegistrationError, FaaSSignatureError
from kisflow.modes import Mode
from kisflow.windows import WindowSpec

if TYPE_CHECKING:
    from kisflow._api import FlowAPI
    from kisflow.connector import ConnectorType

__all__ = ["CaaSSpec", "FaaSSpec", "Pool", "check_window", "current", "use"]


@attrs.frozen
class FaaSSpec:
    """A registered FaaS: its function name, the callable and its checked signature."""

    name: str
    fn: Callable[..., Any] = attrs.field(repr=False)
    signature: Signature
    blocking: bool = False
    """A sync FaaS that blocks (I/O, sleeps, long CPU work): ``arun`` calls it in a worker
    thread so it never stalls the event loop; other sync FaaS run on the loop itself."""
    window: WindowSpec | None = None
    """The FaaS's event-time windows (``kisflow.windows``), or None."""
    joins_commit: bool = False
    """A Save FaaS that records ``kisflow.current_batch().key`` with its rows in one
    transaction, so a stream may call it exactly once (docs/streaming.md)."""


@attrs.frozen
class CaaSSpec:
    """A registered CaaS: connector name, function name, mode and the callable."""

    cname: str
    fname: str
    mode: Mode
    fn: Callable[..., Any] = attrs.field(repr=False)
    takes_ctx: bool = False


def _caas_takes_ctx(name: str, fn: Any, required: int) -> bool:
    """Whether a connector callback has an extra leading context parameter."""
    if not callable(fn):
        raise FaaSSignatureError(name, f"is not callable (got {type(fn).__name__})")
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return False
    if len(params) not in (required, required + 1):
        raise FaaSSignatureError(
            name,
            f"takes {len(params)} positional parameters; expected {required} "
            f"(or {required + 1} with a leading context)",
        )
    return len(params) == required + 1


def check_window(name: str, window: Any, signature: Signature) -> None:
    """A window FaaS takes its window's rows and is no async generator.

    Raises:
        FaaSSignatureError: naming the FaaS and what does not fit.
    """
    if not isinstance(window, WindowSpec):
        raise FaaSSignatureError(
            name,
            f"window= must be a kisflow.windows spec (windows.tumbling(...), sliding, "
            f"session), got {type(window).__name__} {window!r}",
        )
    if not signature.takes_rows:
        raise FaaSSignatureError(
            name, "has window= but takes no rows parameter: it is called with each window's rows"
        )
    if signature.kind is CallKind.ASYNC_GENERATOR:
        raise FaaSSignatureError(
            name, "has window= but is an async generator; commit rows with flow.commit_row"
        )
    window.check_rows_type(name, signature.rows_type)


def _check_name(key: str, name: Any) -> None:
    """A registration name must be a non-empty string: configs can only name those."""
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"{key} must be a non-empty string, got {type(name).__name__} {name!r}", key=key
        )


class Pool:
    """Registry of FaaS, flows, connector init callbacks and CaaS (thread-safe)."""

    def __init__(self) -> None:
        self._faas: dict[str, FaaSSpec] = {}
        self._faas_lock = threading.Lock()
        self._flows: dict[str, FlowAPI] = {}
        self._flows_lock = threading.Lock()
        self._conn_init: dict[str, Callable[..., Any]] = {}
        self._conn_init_lock = threading.Lock()
        self._caas: dict[tuple[str, str, Mode], CaaSSpec] = {}
        self._caas_lock = threading.Lock()
        self._conn_types: dict[str, ConnectorType] = {}
        self._conn_types_lock = threading.Lock()
        self._version = 0

    @property
    def version(self) -> int:
        """Grows on every FaaS registration; flows use it to know their lookups are fresh."""
        return self._version

    # -- FaaS ---------------------------------------------------------------------------

    def faas(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        output: Any | None = None,
        replace: bool = False,
        blocking: bool = False,
        window: WindowSpec | None = None,
        joins_commit: bool = False,
    ) -> FaaSSpec:
        """Register ``fn`` as the FaaS of function ``name`` after checking its signature.

        ``blocking=True`` marks a sync FaaS that blocks: ``arun`` runs it in a worker
        thread (ordinary sync FaaS run on the event loop, without a thread hop). With
        ``window`` (``kisflow.windows.tumbling(...)`` ...) the FaaS is called once per
        closed window with that window's rows.

        Raises:
            FaaSSignatureError: the signature cannot be called by kisflow, or a window
                FaaS takes no rows or names a field its row type does not have.
            DuplicateRegistrationError: ``name`` is taken and ``replace`` is false.
        """
        _check_name("fname", name)
        signature = read_signature(name, fn, output)
        if blocking and signature.kind not in (CallKind.PLAIN, CallKind.GENERATOR):
            raise FaaSSignatureError(
                name,
                "blocking=True is for sync functions (arun runs them in a worker thread); "
                f"this FaaS is {signature.kind.value}: it must not block, and never does "
                "under arun",
            )
        if window is not None:
            check_window(name, window, signature)
        spec = FaaSSpec(
            name=name,
            fn=fn,
            signature=signature,
            blocking=blocking,
            window=window,
            joins_commit=joins_commit,
        )
        with self._faas_lock:
            if name in self._faas and not replace:
                raise DuplicateRegistrationError("faas", name)
            self._faas[name] = spec
            self._version += 1
        logger.debug("registered faas {!r}", name)
        return spec

    def get_faas(self, name: str) -> FaaSSpec | None:
        """The FaaS registered for ``name``, or None."""
        with self._faas_lock:
            return self._faas.get(name)

    def faas_names(self) -> list[str]:
        """Names of every registered FaaS, sorted."""
        with self._faas_lock:
            return sorted(self._faas)

    # -- flows --------------------------------------------------------------------------

    def add_flow(self, name: str, flow: FlowAPI, *, replace: bool = False) -> None:
        """Register ``flow`` under ``name``; a taken name is an error unless ``replace``."""
        _check_name("flow_name", name)
        with self._flows_lock:
            if name in self._flows and not replace:
                raise DuplicateRegistrationError("flow", name)
            self._flows[name] = flow
        logger.debug("registered flow {!r}", name)

    def get_flow(self, name: str) -> FlowAPI | None:
        """The flow registered under ``name``, or None (as KisFlow's GetFlow)."""
        with self._flows_lock:
            return self._flows.get(name)

    def get_flows(self) -> dict[str, FlowAPI]:
        """A copy of every registered flow, by name."""
        with self._flows_lock:
            return dict(self._flows)

    # -- connectors ---------------------------------------------------------------------

    def caas_init(self, cname: str, fn: Callable[..., Any], *, replace: bool = False) -> None:
        """Register the init callback of connector ``cname``: ``fn(conn)``."""
        _check_name("cname", cname)
        if _caas_takes_ctx(f"caas_init {cname}", fn, 1):
            # the init runs when a stage is linked, outside any run: there is no context
            raise FaaSSignatureError(
                f"caas_init {cname}",
                "takes 2 positional parameters; a connector init callback takes one (conn)",
            )
        with self._conn_init_lock:
            if cname in self._conn_init and not replace:
                raise DuplicateRegistrationError("connector init", cname)
            self._conn_init[cname] = fn
        logger.debug("registered caas_init {!r}", cname)

    def get_caas_init(self, cname: str) -> Callable[..., Any] | None:
        """The init callback of connector ``cname``, or None."""
        with self._conn_init_lock:
            return self._conn_init.get(cname)

    def caas(
        self,
        cname: str,
        fname: str,
        mode: Mode | str,
        fn: Callable[..., Any],
        *,
        replace: bool = False,
    ) -> CaaSSpec:
        """Register ``fn(conn, fn, flow, args)`` for (connector, function, mode)."""
        _check_name("cname", cname)
        _check_name("fname", fname)
        parsed = Mode.parse(mode)
        takes_ctx = _caas_takes_ctx(f"caas {cname}/{fname}", fn, 4)
        spec = CaaSSpec(cname=cname, fname=fname, mode=parsed, fn=fn, takes_ctx=takes_ctx)
        key = (cname, fname, parsed)
        with self._caas_lock:
            if key in self._caas and not replace:
                raise DuplicateRegistrationError("caas", f"{cname}/{fname}/{parsed.value}")
            self._caas[key] = spec
        logger.debug("registered caas {!r}/{!r}/{}", cname, fname, parsed.value)
        return spec

    def get_caas(self, cname: str, fname: str, mode: Mode | str) -> CaaSSpec | None:
        """The CaaS for (connector, function, mode), or None; the mode may be a word or letter."""
        key = (cname, fname, mode if isinstance(mode, Mode) else Mode.parse(mode))
        with self._caas_lock:
            return self._caas.get(key)

    # -- connector types -----------------------------------------------------------------

    def connector_type(self, conn_type: ConnectorType, *, replace: bool = False) -> None:
        """Register a connector type in this pool; it wins over a default of that name."""
        _check_name("type", conn_type.name)
        key = conn_type.name.strip().lower()
        with self._conn_types_lock:
            if key in self._conn_types and not replace:
                raise DuplicateRegistrationError("connector type", conn_type.name)
            self._conn_types[key] = conn_type
            self._version += 1  # a stage's default Save/Load may change with it
        logger.debug("registered connector type {!r}", conn_type.name)

    def get_connector_type(self, name: str) -> ConnectorType | None:
        """The connector type registered in this pool under ``name`` (any case), or None."""
        with self._conn_types_lock:
            return self._conn_types.get(name.strip().lower())

    def reset(self) -> None:
        """Forget every registration (for tests and interactive sessions)."""
        with self._faas_lock:
            self._faas.clear()
            self._version += 1
        with self._flows_lock:
            self._flows.clear()
        with self._conn_init_lock:
            self._conn_init.clear()
        with self._caas_lock:
            self._caas.clear()
        with self._conn_types_lock:
            self._conn_types.clear()


_state.pool = Pool()


def current() -> Pool:
    """The pool the module-level API (``kisflow.faas``, ``kisflow.pool``) uses now."""
    pool: Pool = _state.pool
    return pool


@contextmanager
def use(pool: Pool) -> Iterator[Pool]:
    """Make ``pool`` the current pool inside the ``with`` block, then restore the old one."""
    with _state.lock:
        previous, _state.pool = _state.pool, pool
    try:
        yield pool
    finally:
        with _state.lock:
            _state.pool = previous
