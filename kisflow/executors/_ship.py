"""What travels to a worker process: cloudpickled callables and flows as payloads.

A worker process has none of the driver's registrations: a flow that carries only
function names fails there. ``FlowPayload`` therefore holds the flow definition
(FlowConfig, each stage's FuncConfig and params) together with its FaaS, connector init
and CaaS callables, explicitly cloudpickled; a worker rebuilds the flow once in an
isolated pool and caches it by the payload's digest. Callables from modules a worker may
not import (tests, scripts) are pickled by value.
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
import threading
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs
import cachetools

from kisflow._plan import is_default
from kisflow.errors import ConfigError, KisFlowError

if TYPE_CHECKING:
    from kisflow.flow import Flow

__all__ = ["FlowPayload", "dumps", "flow_of", "loads", "shippable"]


def _cloudpickle() -> Any:
    """cloudpickle (a core dependency), imported on first use: importing kisflow stays cheap."""
    import cloudpickle

    return cloudpickle


_STDLIB = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
_INSTALLED = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
_by_value_lock = threading.Lock()


def _needs_by_value(fn: Any) -> types.ModuleType | None:
    """The module to pickle by value: one a worker may not import (tests, scripts)."""
    name = getattr(fn, "__module__", None)
    if not isinstance(name, str) or not name or name == "__main__":
        return None
    if name.split(".")[0] == "kisflow":
        return None
    module = sys.modules.get(name)
    if module is None:
        return None  # cloudpickle pickles what it cannot import by value anyway
    path = getattr(module, "__file__", None)
    if path is None:
        # Built into the interpreter, or made at run time (exec, notebooks): only the
        # latter is missing on a worker.
        return None if name in sys.builtin_module_names else module
    real = os.path.realpath(path)
    for root in _STDLIB | _INSTALLED:
        if real.startswith(os.path.realpath(root) + os.sep):
            return None
    return module


def _resolved(fn: Any) -> dict[str, Any] | None:
    """The FaaS's type hints resolved here, where its module's names are known."""
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return None


@contextmanager
def _pickling_by_value(objs: Iterable[Any]) -> Iterator[None]:
    cp = _cloudpickle()
    with _by_value_lock:
        registered = []
        for obj in objs:
            module = _needs_by_value(obj)
            if module is not None and module.__name__ not in cp.list_registry_pickle_by_value():
                cp.register_pickle_by_value(module)
                registered.append(module)
        try:
            yield
        finally:
            for module in registered:
                cp.unregister_pickle_by_value(module)


def dumps(obj: Any, callables: Iterable[Any] = ()) -> bytes:
    """Cloudpickle ``obj``, by value for the modules of ``callables`` a worker lacks."""
    cp = _cloudpickle()
    with _pickling_by_value(callables):
        data: bytes = cp.dumps(obj)
    return data


def shippable(
    flow: str, what: str, obj: Any, callables: Iterable[Any] = (), *, key: str | None = None
) -> bytes:
    """``dumps(obj)``, or ``ConfigError`` naming ``what`` when it does not pickle.

    Raises:
        ConfigError: ``obj`` (or something it holds: a lock, an open file) does not pickle.
    """
    try:
        return dumps(obj, callables)
    except KisFlowError:
        raise
    except Exception as exc:  # PicklingError, TypeError: cannot pickle '_thread.lock', ...
        raise ConfigError(
            f"flow {flow!r}: {what} cannot be sent to the workers: {type(exc).__name__}: {exc}",
            key=key,
        ) from exc


def loads(data: bytes) -> Any:
    """Unpickle what ``dumps`` made (here or on a worker)."""
    return _cloudpickle().loads(data)


@attrs.frozen
class FlowPayload:
    """A flow's definition and callables, cloudpickled for a worker that has neither."""

    flow: str
    data: bytes = attrs.field(repr=False)
    digest: str

    @classmethod
    def of(cls, flow: Flow) -> FlowPayload:
        """Capture ``flow``: check it (FaaS present, types fit), then pickle it.

        Raises:
            FunctionNotFoundError, FlowTypeError: the flow does not validate.
            ConfigError: one of its callables does not pickle.
        """
        plan = flow.plan()
        pool = plan.pool
        faas: dict[str, tuple[Callable[..., Any], Any, dict[str, Any] | None]] = {}
        inits: dict[str, Callable[..., Any]] = {}
        caas: list[tuple[str, str, Any, Callable[..., Any]]] = []
        conn_types: dict[str, Any] = {}
        for stage, spec in zip(plan.stages, plan.specs, strict=True):
            # A connector type's default Save/Load is found on the worker as it is here.
            if not is_default(spec):
                faas[stage.name] = (spec.fn, spec.signature.output_type, _resolved(spec.fn))
            cname = stage.config.option.cname
            conn = stage.config.conn
            if cname and conn is not None:
                init = pool.get_caas_init(cname)
                if init is not None:
                    inits[cname] = init
                found = pool.get_caas(cname, stage.name, stage.mode)
                if found is not None:
                    caas.append((cname, stage.name, stage.mode, found.fn))
                own = pool.get_connector_type(conn.type) if conn.type else None
                if own is not None:  # registered in this pool only: the worker needs it
                    conn_types[own.name] = own
        definition = {
            "config": flow.config,
            "max_steps": flow._d.max_steps,
            "stages": [(s.config, dict(s.flow_params)) for s in flow.stages],
            "faas": faas,
            "inits": inits,
            "caas": caas,
            "conn_types": conn_types,
        }
        callables = [f for f, _, _ in faas.values()] + list(inits.values())
        callables += [c[3] for c in caas] + [t.factory for t in conn_types.values()]
        data = shippable(flow.name, "a stage's function or connector", definition, callables)
        return cls(flow=flow.name, data=data, digest=hashlib.sha256(data).hexdigest())


_built: cachetools.LRUCache[str, Flow] = cachetools.LRUCache(maxsize=32)
"""Flows rebuilt in this worker process, by payload digest (bounded: workers live long)."""
_built_lock = threading.Lock()


def flow_of(payload: FlowPayload) -> Flow:
    """The flow rebuilt from ``payload`` in this process (built once, then cached)."""
    with _built_lock:
        flow = _built.get(payload.digest)
        if flow is not None:
            return flow
        from kisflow._pool import Pool
        from kisflow.flow import Flow

        d = loads(payload.data)
        pool = Pool()
        for name, (fn, output, hints) in d["faas"].items():
            if hints is not None and isinstance(fn, types.FunctionType):
                fn.__annotations__ = hints
            pool.faas(name, fn, output=output, replace=True)
        for cname, init in d["inits"].items():
            pool.caas_init(cname, init, replace=True)
        for cname, fname, mode, fn in d["caas"]:
            pool.caas(cname, fname, mode, fn, replace=True)
        for conn_type in d["conn_types"].values():
            pool.connector_type(conn_type, replace=True)
        flow = Flow(d["config"], pool=pool, max_steps=d["max_steps"])
        for func_config, params in d["stages"]:
            flow.append_function(func_config, params)
        flow.validate()
        _built[payload.digest] = flow
        return flow
