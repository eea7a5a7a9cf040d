"""The module-level pool API, KisFlow's ``kis.Pool()`` with snake_case names.

Every function acts on the current pool (``kisflow.pool.current()``) and is
thread-safe. ``faas``, ``caas_init`` and ``caas`` work both as calls and as decorators::

    kisflow.pool.faas("AvgStuScore", avg_stu_score)

    @kisflow.faas("AvgStuScore", output=ScoreOut)
    def avg_stu_score(flow: kisflow.Flow, rows: list[ScoreIn]) -> None: ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from kisflow._pool import CaaSSpec, FaaSSpec, Pool, current, use
from kisflow.modes import Mode

if TYPE_CHECKING:
    from kisflow.flow import Flow

__all__ = [
    "CaaSSpec",
    "FaaSSpec",
    "Pool",
    "add_flow",
    "caas",
    "caas_init",
    "current",
    "faas",
    "faas_names",
    "get_caas",
    "get_caas_init",
    "get_faas",
    "get_flow",
    "get_flows",
    "reset",
    "use",
]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def faas(
    name: str, fn: None = None, *, output: Any | None = None, replace: bool = False
) -> Callable[[F], F]: ...
@overload
def faas(name: str, fn: F, *, output: Any | None = None, replace: bool = False) -> F: ...
def faas(
    name: str, fn: F | None = None, *, output: Any | None = None, replace: bool = False
) -> F | Callable[[F], F]:
    """Register a FaaS for function ``name``; used as a call or as a decorator.

    ``output`` declares the type of the rows the FaaS commits, so ``build()`` can check
    it against the next stage's input. The signature is checked now, not at run time.
    """

    def register(f: F) -> F:
        current().faas(name, f, output=output, replace=replace)
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
    return current().get_flow(name)


def get_flows() -> dict[str, Flow]:
    """A copy of every registered flow, by name."""
    return current().get_flows()


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


def reset() -> None:
    """Forget every registration in the current pool."""
    current().reset()
