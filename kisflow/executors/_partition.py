"""Partitions and flow payloads: what the process pool and Dask ship to their workers.

A worker process has none of the driver's registrations: a flow that carries only
function names fails there. ``FlowPayload`` therefore holds the flow definition
(FlowConfig, each stage's FuncConfig and params) together with its FaaS, connector init
and CaaS callables, explicitly cloudpickled; a worker rebuilds the flow once in an
isolated pool and caches it by the payload's digest.

Workers are sent partition *descriptions* (``Partition.spec``: an index, a path, a
query) and turn them into rows with ``load``; rows never travel through the executor.
While a partition runs, ``current_partition()`` names it, so a Save stage can make its
writes idempotent per partition (see docs/dask.md).
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import socket
import sys
import sysconfig
import threading
import time
import traceback
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs
import cachetools

from kisflow.errors import KisFlowError, MissingExtraError, PartitionError
from kisflow.executors.stream import run_batch
from kisflow.result import RunEnd

if TYPE_CHECKING:
    from kisflow.flow import Flow

__all__ = [
    "FlowPayload",
    "Partition",
    "PartitionResult",
    "collect",
    "current_partition",
    "make_partitions",
    "run_partition",
]


@attrs.frozen
class Partition:
    """One partition of an input: its position, a stable key and its description.

    ``key`` is what a Save stage records to stay idempotent (default: the index as a
    string); ``spec`` is handed to ``load`` on the worker to produce the rows.
    """

    index: int
    key: str
    spec: Any


@attrs.frozen
class PartitionResult:
    """The outcome of one partition's run (``output`` only when asked for)."""

    partition: Partition
    ended: RunEnd
    stopped_at: str | None
    rows_in: int
    rows_out: int
    output: list[Any] | None = attrs.field(repr=lambda rows: "None" if rows is None else "[…]")
    duration: float
    worker: str
    """``host:pid`` of the process that ran it."""


_CURRENT: contextvars.ContextVar[Partition | None] = contextvars.ContextVar(
    "kisflow_partition", default=None
)


def current_partition() -> Partition | None:
    """The partition being run by an executor in this context, or None outside one.

    A Save stage uses ``current_partition().key`` to write each partition exactly once:
    in one transaction, skip (or replace) rows already recorded for that key.
    """
    return _CURRENT.get()


def make_partitions(
    specs: Iterable[Any], key: Callable[[Any], str] | None = None
) -> Iterator[Partition]:
    """Wrap partition descriptions as ``Partition``s (``Partition``s pass through)."""
    for index, spec in enumerate(specs):
        if isinstance(spec, Partition):
            yield spec
        else:
            yield Partition(index=index, key=key(spec) if key else str(index), spec=spec)


def _cloudpickle() -> Any:
    try:
        import cloudpickle
    except ImportError as exc:
        raise MissingExtraError("dask", "cloudpickle") from exc
    return cloudpickle


_STDLIB = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
_INSTALLED = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
_by_value_lock = threading.Lock()


def _needs_by_value(fn: Any) -> types.ModuleType | None:
    """The module to pickle by value: one a worker may not import (tests, scripts)."""
    name = getattr(fn, "__module__", None)
    if not name or name == "__main__" or name.split(".")[0] == "kisflow":
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
def _pickling_by_value(fns: Iterable[Any]) -> Iterator[None]:
    cp = _cloudpickle()
    with _by_value_lock:
        registered = []
        for fn in fns:
            module = _needs_by_value(fn)
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


@attrs.frozen
class FlowPayload:
    """A flow's definition and callables, cloudpickled for a worker that has neither."""

    flow: str
    data: bytes = attrs.field(repr=False)
    digest: str

    @classmethod
    def of(cls, flow: Flow) -> FlowPayload:
        """Capture ``flow``: check it (FaaS present, types fit), then pickle it."""
        flow.validate()
        pool = flow.pool
        faas: dict[str, tuple[Callable[..., Any], Any, dict[str, Any] | None]] = {}
        inits: dict[str, Callable[..., Any]] = {}
        caas: list[tuple[str, str, Any, Callable[..., Any]]] = []
        for stage in flow.stages:
            spec = pool.get_faas(stage.name)
            # None: a Save/Load on a built-in connector (validate() checked it), whose
            # default FaaS the rebuilt flow finds on the worker as it does here.
            if spec is not None:
                faas[stage.name] = (spec.fn, spec.signature.output_type, _resolved(spec.fn))
            cname = stage.config.option.cname
            if cname and stage.config.conn is not None:
                init = pool.get_caas_init(cname)
                if init is not None:
                    inits[cname] = init
                found = pool.get_caas(cname, stage.name, stage.mode)
                if found is not None:
                    caas.append((cname, stage.name, stage.mode, found.fn))
        definition = {
            "config": flow.config,
            "max_steps": flow._d.max_steps,
            "stages": [(s.config, dict(s.flow_params)) for s in flow.stages],
            "faas": faas,
            "inits": inits,
            "caas": caas,
        }
        callables = [f for f, _, _ in faas.values()] + list(inits.values())
        callables += [c[3] for c in caas]
        data = dumps(definition, callables)
        return cls(flow=flow.name, data=data, digest=hashlib.sha256(data).hexdigest())


_built: cachetools.LRUCache[str, Flow] = cachetools.LRUCache(maxsize=32)
"""Flows rebuilt in this worker process, by payload digest (bounded: workers live long)."""
_built_lock = threading.Lock()


def _flow_of(payload: FlowPayload) -> Flow:
    """The flow rebuilt from ``payload`` in this process (built once, then cached)."""
    with _built_lock:
        flow = _built.get(payload.digest)
        if flow is not None:
            return flow
        from kisflow._pool import Pool
        from kisflow.flow import Flow

        d = _cloudpickle().loads(payload.data)
        pool = Pool()
        for name, (fn, output, hints) in d["faas"].items():
            if hints is not None and isinstance(fn, types.FunctionType):
                fn.__annotations__ = hints
            pool.faas(name, fn, output=output, replace=True)
        for cname, init in d["inits"].items():
            pool.caas_init(cname, init, replace=True)
        for cname, fname, mode, fn in d["caas"]:
            pool.caas(cname, fname, mode, fn, replace=True)
        flow = Flow(d["config"], pool=pool, max_steps=d["max_steps"])
        for func_config, params in d["stages"]:
            flow.append_function(func_config, params)
        flow.validate()
        _built[payload.digest] = flow
        return flow


@attrs.frozen
class _Failure:
    """A partition's error, sent back as a value (KisFlowErrors do not unpickle)."""

    partition: Partition
    flow: str
    stage: str | None
    message: str
    cause: bytes | None
    remote_traceback: str


class RemoteTraceback(Exception):
    """The traceback of an error raised on a worker, chained below the caller's error."""


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_partition(
    payload: FlowPayload,
    load: bytes,
    partition: Partition,
    ctx: Any = None,
    keep_output: bool = False,
) -> bytes:
    """Run on a worker: rebuild the flow, load the partition's rows, run, summarise.

    Returns the cloudpickled ``PartitionResult`` (row classes the worker only knows by
    value travel back that way) or, on error, a failure: errors come back as a value,
    so the executor neither retries a deterministic failure nor needs to unpickle
    kisflow's exceptions.
    """
    return dumps(_run_partition(payload, load, partition, ctx, keep_output))


def _run_partition(
    payload: FlowPayload, load: bytes, partition: Partition, ctx: Any, keep_output: bool
) -> PartitionResult | _Failure:
    token = _CURRENT.set(partition)
    stage: str | None = None
    try:
        flow = _flow_of(payload)
        loader = _cloudpickle().loads(load)
        started = time.perf_counter()
        try:
            rows = loader(partition.spec)
        except Exception as exc:
            raise _LoadFailed(exc) from exc
        batch = list(rows)
        result = run_batch(flow, batch, ctx)
        return PartitionResult(
            partition=partition,
            ended=result.ended,
            stopped_at=result.stopped_at,
            rows_in=len(batch),
            rows_out=len(result.output),
            output=list(result.output) if keep_output else None,
            duration=time.perf_counter() - started,
            worker=_where(),
        )
    except Exception as exc:
        cause: BaseException = exc
        if isinstance(exc, _LoadFailed):
            cause = exc.original
            message = f"load raised {type(cause).__name__}: {cause}"
        else:
            message = str(exc)
            if isinstance(exc, KisFlowError):
                stage = getattr(exc, "stage", None)
                prefix = f"flow {payload.flow!r} stage {stage!r}"
                if message.startswith(prefix):
                    message = message[len(prefix) :].lstrip(": ")
                if exc.__cause__ is not None:
                    cause = exc.__cause__
        try:
            shipped: bytes | None = dumps(cause)
            _cloudpickle().loads(shipped)
        except Exception:
            shipped = None
        return _Failure(
            partition=partition,
            flow=payload.flow,
            stage=stage,
            message=message,
            cause=shipped,
            remote_traceback="".join(traceback.format_exception(exc)),
        )
    finally:
        _CURRENT.reset(token)


class _LoadFailed(Exception):
    def __init__(self, original: Exception) -> None:
        self.original = original
        super().__init__(str(original))


def raise_failure(failure: _Failure) -> typing.NoReturn:
    """Raise a worker's failure as a ``PartitionError`` chained to the original error."""
    cause: BaseException
    if failure.cause is not None:
        cause = _cloudpickle().loads(failure.cause)
    else:
        cause = RemoteTraceback(failure.remote_traceback)
    if not isinstance(cause, RemoteTraceback):
        cause.add_note(f"remote traceback:\n{failure.remote_traceback}")
    where = f" stage {failure.stage!r}" if failure.stage else ""
    raise PartitionError(
        f"flow {failure.flow!r}{where} failed on partition {failure.partition.key!r} "
        f"(index {failure.partition.index}): {failure.message}",
        flow=failure.flow,
        stage=failure.stage,
        partition=failure.partition.key,
    ) from cause


def unwrap(data: bytes) -> PartitionResult:
    """A worker's return value as a result, raising it as ``PartitionError`` if it failed."""
    value = _cloudpickle().loads(data)
    if isinstance(value, _Failure):
        raise_failure(value)
    assert isinstance(value, PartitionResult)
    return value


def settle(flow: str, partition: Partition, get: Callable[[], bytes]) -> PartitionResult:
    """The result of a finished task (``get`` is its ``future.result``), or PartitionError.

    A task that returned a failure, or that the executor lost (its worker process died,
    too often for Dask), raises ``PartitionError`` naming flow and partition.
    """
    try:
        data = get()
    except Exception as exc:  # BrokenProcessPool, distributed.KilledWorker, ...
        raise PartitionError(
            f"flow {flow!r} failed on partition {partition.key!r} (index "
            f"{partition.index}): {type(exc).__name__}: {exc}",
            flow=flow,
            stage=None,
            partition=partition.key,
        ) from exc
    return unwrap(data)


def collect(
    flow: str,
    partition: Partition,
    get: Callable[[], bytes],
    results: dict[int, PartitionResult],
    bar: Any,
    on_result: Callable[[PartitionResult], None] | None,
    on_error: Callable[[PartitionError], None] | None,
) -> None:
    """Settle one finished task for an executor: keep its result (and report it), or hand
    its ``PartitionError`` to ``on_error``; without ``on_error`` the error is raised."""
    try:
        value = settle(flow, partition, get)
    except PartitionError as err:
        if on_error is None:
            raise
        on_error(err)
        return
    results[value.partition.index] = value
    bar.update(1)
    if on_result is not None:
        on_result(value)
