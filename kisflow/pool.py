"""The module-level pool API, KisFlow's ``kis.Pool()`` with snake_case names.

Every function acts on the current pool (``kisflow.pool.current()``) and is
thread-safe. ``faas``, ``caas_init`` and ``caas`` work both as calls and as decorators::

    kisflow.pool.faas("AvgStuScore", avg_stu_score)

    @kisflow.faas("AvgStuScore", output=ScoreOut)
    def avg_stu_score(flow: kisflow.Flow, rows: list[ScoreIn]) -> None: ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from kisflow._pool import CaaSSpec, FaaSSpec, Pool, current, use
from kisflow.config import ConnConfig
from kisflow.connector import ConnectorType, find_type
from kisflow.modes import Mode
from kisflow.windows import WindowSpec

if TYPE_CHECKING:
    from kisflow.connectors import Store
    from kisflow.flow import Flow

__all__ = [
    "CaaSSpec",
    "ConnectorType",
    "FaaSSpec",
    "Pool",
    "add_flow",
    "caas",
    "caas_init",
    "connector_type",
    "current",
    "faas",
    "faas_names",
    "get_caas",
    "get_caas_init",
    "get_connector_type",
    "get_faas",
    "get_flow",
    "get_flows",
    "reset",
    "use",
]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def faas(
    name: str,
    fn: None = None,
    *,
    output: Any | None = None,
    replace: bool = False,
    blocking: bool = False,
    window: WindowSpec | None = None,
    joins_commit: bool = False,
) -> Callable[[F], F]: ...
@overload
def faas(
    name: str,
    fn: F,
    *,
    output: Any | None = None,
    replace: bool = False,
    blocking: bool = False,
    window: WindowSpec | None = None,
    joins_commit: bool = False,
) -> F: ...
def faas(
    name: str,
    fn: F | None = None,
    *,
    output: Any | None = None,
    replace: bool = False,
    blocking: bool = False,
    window: WindowSpec | None = None,
    joins_commit: bool = False,
) -> F | Callable[[F], F]:
    """Register a FaaS for function ``name``; used as a call or as a decorator.

    ``output`` declares the type of the rows the FaaS commits, so ``build()`` can check
    it against the next stage's input. ``window`` (``kisflow.windows.tumbling(...)``,
    ``sliding``, ``session``) makes it a window FaaS, called once per closed window.
    ``joins_commit=True`` says a Save FaaS records ``kisflow.current_batch().key`` in its
    own transaction (a stream may then promise exactly once; docs/streaming.md).
    ``blocking=True`` marks a sync FaaS that blocks: ``arun`` runs it in a worker thread,
    while other sync FaaS run on the event loop (see docs/async.md). The signature is
    checked now, not at run time.
    """

    def register(f: F) -> F:
        current().faas(
            name,
            f,
            output=output,
            replace=replace,
            blocking=blocking,
            window=window,
            joins_commit=joins_commit,
        )
        return f

    return register if fn is None else register(fn)


def get_faas(name: str) -> FaaSSpec | None:
    """The FaaS registered for ``name`` in the current pool, or None."""
    return current().get_faas(name)


def faas_names() -> list[str]:
    """Names of every FaaS in the current pool, sorted."""
    return current().faas_names()


def add_flow(name: str, flow: Flow, *, replace: bool = False) -> None:
    """Register ``flow`` under ``name`` (a taken name raises DuplicateRegistrationError)."""
    current().add_flow(name, flow, replace=replace)


def get_flow(name: str) -> Flow | None:
    """The flow registered under ``name``, or None."""
    return cast("Flow | None", current().get_flow(name))


def get_flows() -> dict[str, Flow]:
    """A copy of every registered flow, by name."""
    return cast("dict[str, Flow]", current().get_flows())


@overload
def caas_init(cname: str, fn: None = None, *, replace: bool = False) -> Callable[[F], F]: ...
@overload
def caas_init(cname: str, fn: F, *, replace: bool = False) -> F: ...
def caas_init(cname: str, fn: F | None = None, *, replace: bool = False) -> F | Callable[[F], F]:
    """Register the init callback of connector ``cname``; runs once per connector."""

    def register(f: F) -> F:
        current().caas_init(cname, f, replace=replace)
        return f

    return register if fn is None else register(fn)


def get_caas_init(cname: str) -> Callable[..., Any] | None:
    """The init callback of connector ``cname``, or None."""
    return current().get_caas_init(cname)


@overload
def caas(
    cname: str, fname: str, mode: Mode | str, fn: None = None, *, replace: bool = False
) -> Callable[[F], F]: ...
@overload
def caas(cname: str, fname: str, mode: Mode | str, fn: F, *, replace: bool = False) -> F: ...
def caas(
    cname: str, fname: str, mode: Mode | str, fn: F | None = None, *, replace: bool = False
) -> F | Callable[[F], F]:
    """Register a CaaS ``fn(conn, fn, flow, args) -> value`` for (connector, function, mode)."""

    def register(f: F) -> F:
        current().caas(cname, fname, mode, f, replace=replace)
        return f

    return register if fn is None else register(fn)


def get_caas(cname: str, fname: str, mode: Mode | str) -> CaaSSpec | None:
    """The CaaS for (connector, function, mode) in the current pool, or None."""
    return current().get_caas(cname, fname, Mode.parse(mode))


S = TypeVar("S", bound=Callable[[ConnConfig], "Store"])


@overload
def connector_type(
    name: str, factory: None = None, *, file_path: bool = False, replace: bool = False
) -> Callable[[S], S]: ...
@overload
def connector_type(
    name: str, factory: S, *, file_path: bool = False, replace: bool = False
) -> S: ...
def connector_type(
    name: str, factory: S | None = None, *, file_path: bool = False, replace: bool = False
) -> S | Callable[[S], S]:
    """Register a connector type: ``factory(conn_config)`` makes the ``Store`` that serves
    Save and Load stages whose connector says ``type: <name>``; a call or a decorator.

    A YAML folder then names it in a conn file's ``type:``, and its Save/Load stages need
    no FaaS (the store is their default). ``file_path`` says ``addrs`` is a file, which
    a config folder resolves relative to the conn file. Registered in the current pool;
    it wins over a built-in or installed type of the same name.
    """

    def register(f: S) -> S:
        current().connector_type(ConnectorType(name, f, file_path=file_path), replace=replace)
        return f

    return register if factory is None else register(factory)


def get_connector_type(name: str) -> ConnectorType | None:
    """The connector type ``name`` as the current pool sees it (its own, else a default)."""
    return find_type(name, current())


def reset() -> None:
    """Forget every registration in the current pool."""
    current().reset()
