"""Partitions, and the worker's side of running one: what the process pool and Dask ship.

Workers are sent partition *descriptions* (``Partition.spec``: an index, a path, a
query) and turn them into rows with ``load``; rows never travel through the executor.
While a partition runs, ``current_partition()`` names it (through
``kisflow._context.PARTITION``), so a Save stage can make its writes idempotent per
partition (see docs/dask.md). A run's options travel packed once by ``pack_options``;
a worker's error comes back as a value (``_Failure``) that the caller raises as a
``PartitionError``.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from kisflow import _context
from kisflow.columnar import is_frame
from kisflow.deadletter import JsonlSink, ListSink
from kisflow.errors import ConfigError, KisFlowError, PartitionError, StageExecutionError
from kisflow.executors._ship import FlowPayload, dumps, flow_of, loads, shippable
from kisflow.options import RunOptions
from kisflow.result import RunEnd

__all__ = [
    "FlowPayload",
    "Partition",
    "PartitionResult",
    "current_partition",
    "dumps",
    "make_partitions",
    "mark_started",
    "pack_options",
    "result_of",
    "run_partition",
    "started_on",
    "unwrap",
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


def current_partition() -> Partition | None:
    """The partition being run by an executor in this context, or None outside one.

    A Save stage uses ``current_partition().key`` to write each partition exactly once:
    in one transaction, skip (or replace) rows already recorded for that key.
    """
    part: Partition | None = _context.current_partition()
    return part


def make_partitions(
    specs: Iterable[Any], key: Callable[[Any], str] | None = None
) -> Iterator[Partition]:
    """Wrap partition descriptions as ``Partition``s (``Partition``s pass through)."""
    for index, spec in enumerate(specs):
        if isinstance(spec, Partition):
            yield spec
        else:
            yield Partition(index=index, key=key(spec) if key else str(index), spec=spec)


@attrs.frozen
class _Settings:
    """The per-run options a worker runs each partition with."""

    ctx: Any = None
    max_steps: int | None = None
    dead_letters: Any = None
    """A sink, or the path of a ``JsonlSink`` (its lock does not pickle; rebuilt there)."""


def pack_options(flow: str, options: RunOptions) -> bytes:
    """The options' ctx, max_steps and dead-letter sink, pickled once for every worker.

    Observers are not shipped: they observe runs in their own process.

    Raises:
        ConfigError: the ctx or the sink does not pickle, or the sink is an in-memory
            list (each worker would fill its own copy); before any partition starts.
    """
    sink: Any = options.dead_letters
    if isinstance(sink, ListSink):
        raise ConfigError(
            f"flow {flow!r}: dead_letters {sink!r} is an in-memory list, which each worker "
            f"process would fill a copy of; give a JSONL path or a sink that writes to a "
            f"store the workers share",
            key="dead_letters",
        )
    if isinstance(sink, JsonlSink):
        sink = sink.path
    _check_pickles(flow, "ctx", options.ctx)
    _check_pickles(flow, "dead_letters", sink)
    settings = _Settings(ctx=options.ctx, max_steps=options.max_steps, dead_letters=sink)
    return dumps(settings, _by_value(options.ctx, sink))


def _by_value(*objs: Any) -> list[Any]:
    """The objects (and a callable sink's function) whose modules may be missing there."""
    found = [o for o in objs if o is not None]
    found += [fn for o in found if (fn := getattr(o, "fn", None)) is not None]
    return found


def _check_pickles(flow: str, name: str, value: Any) -> None:
    """Raise ``ConfigError`` unless ``value`` survives the trip to a worker and back."""
    if value is None:
        return
    what = f"{name} {value!r}"
    data = shippable(flow, what, value, _by_value(value), key=name)
    try:
        loads(data)
    except Exception as exc:  # a __reduce__ that fails on the way back
        raise ConfigError(
            f"flow {flow!r}: {what} does not unpickle: {type(exc).__name__}: {exc}", key=name
        ) from exc


@attrs.frozen
class _Failure:
    """A partition's error, sent back as a value (an exception may not unpickle there)."""

    partition: Partition
    flow: str
    stage: str | None
    error: str
    """The class name of the error raised on the worker."""
    message: str
    """What went wrong, without the flow and stage (the caller adds them)."""
    cause: bytes | None
    remote_traceback: str
    worker: str


class _RemoteTraceback(Exception):
    """The traceback of an error raised on a worker, chained below the caller's error.

    Only ever a ``__cause__`` of a ``PartitionError``, when the worker's own error did
    not travel back; it is never raised on its own.
    """


class _LoadFailed(Exception):
    """``load`` raised on the worker; holds its error."""

    def __init__(self, original: Exception) -> None:
        self.original = original
        super().__init__(str(original))


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_partition(
    payload: FlowPayload,
    load: bytes,
    partition: Partition,
    options: bytes | None = None,
    keep_output: bool = False,
    started: str | None = None,
) -> bytes:
    """Run on a worker: rebuild the flow, load the partition's rows, run, summarise.

    ``options`` is what ``pack_options`` made (None: the flow's defaults); ``started``,
    a folder where the worker first records that this process took the partition (see
    ``mark_started``: the caller's clue to which partition a dead worker was running).
    Returns the
    cloudpickled ``PartitionResult`` (row classes the worker only knows by value travel
    back that way) or, on error, a failure: errors come back as a value, so the
    executor neither retries a deterministic failure nor needs to unpickle kisflow's
    exceptions.
    """
    if started is not None:
        mark_started(started, partition)
    token = _context.PARTITION.set(partition)
    try:
        return dumps(_run_partition(payload, load, partition, options, keep_output))
    finally:
        _context.PARTITION.reset(token)


def mark_started(folder: str, partition: Partition) -> None:
    """Create ``<folder>/<index>.<pid>``: this process has started ``partition``.

    An empty file made in one call, so the caller never reads half a record; best
    effort: a folder that cannot be written only loses the clue, never the partition.
    """
    try:
        with open(os.path.join(folder, f"{partition.index}.{os.getpid()}"), "x"):
            pass
    except OSError:
        pass


def started_on(folder: str) -> dict[int, int]:
    """The worker pid that started each partition index, from ``mark_started``'s files."""
    found: dict[int, int] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return found
    for name in names:
        index, _, pid = name.partition(".")
        if index.lstrip("-").isdigit() and pid.isdigit():
            found[int(index)] = int(pid)
    return found


def _run_partition(
    payload: FlowPayload,
    load: bytes,
    partition: Partition,
    options: bytes | None,
    keep_output: bool,
) -> PartitionResult | _Failure:
    try:
        flow = flow_of(payload)
        settings: _Settings = _Settings() if options is None else loads(options)
        loader = loads(load)
        started = time.perf_counter()
        try:
            loaded = loader(partition.spec)
            # A DataFrame (a Parquet or CSV slice) runs as it is: no Python rows.
            rows = loaded if is_frame(loaded) else list(loaded)
        except Exception as exc:
            raise _LoadFailed(exc) from exc
        result = flow.run(
            rows,
            ctx=settings.ctx,
            max_steps=settings.max_steps,
            dead_letters=settings.dead_letters,
        )
        return PartitionResult(
            partition=partition,
            ended=result.ended,
            stopped_at=result.stopped_at,
            rows_in=len(rows),
            rows_out=len(result.output),
            output=_kept(result.output) if keep_output else None,
            duration=time.perf_counter() - started,
            worker=_where(),
        )
    except Exception as exc:
        return _failure(payload.flow, partition, exc)


def _kept(output: Any) -> Any:
    """The output sent back: a list of rows, or the DataFrame a columnar stage made."""
    return output if is_frame(output) else list(output)


def _failure(flow: str, partition: Partition, exc: Exception) -> _Failure:
    """``exc`` as a value: its class, stage and location-free message, its cause."""
    error, stage, message = _describe(exc)
    cause: BaseException = exc
    if isinstance(exc, _LoadFailed):
        cause = exc.original
    elif isinstance(exc, KisFlowError) and exc.__cause__ is not None:
        cause = exc.__cause__
    shipped: bytes | None
    try:
        shipped = dumps(cause)
        loads(shipped)  # kisflow's errors need keyword arguments to unpickle, say
    except Exception:
        shipped = None
    return _Failure(
        partition=partition,
        flow=flow,
        stage=stage,
        error=error,
        message=message,
        cause=shipped,
        remote_traceback="".join(traceback.format_exception(exc)),
        worker=_where(),
    )


def _describe(exc: Exception) -> tuple[str, str | None, str]:
    """The error's class name, its stage and what happened, from its attributes.

    A stage's FaaS raising (``StageExecutionError``) and ``load`` raising are told from
    their cause; kisflow's other errors keep their whole message, which says where.
    """
    stage = getattr(exc, "stage", None) if isinstance(exc, KisFlowError) else None
    if isinstance(exc, _LoadFailed):
        original = exc.original
        name = type(original).__name__
        return name, None, f"load raised {name}: {original}"
    if isinstance(exc, StageExecutionError) and exc.__cause__ is not None:
        cause = exc.__cause__
        tries = f" (after {exc.attempts} attempts)" if exc.attempts > 1 else ""
        return type(exc).__name__, stage, f"raised {type(cause).__name__}: {cause}{tries}"
    return type(exc).__name__, stage, f"{type(exc).__name__}: {exc}"


def _raise_failure(failure: _Failure) -> typing.NoReturn:
    """Raise a worker's failure as a ``PartitionError`` chained to the original error."""
    cause: BaseException | None = None
    if failure.cause is not None:
        try:
            cause = loads(failure.cause)
        except Exception:
            cause = None
    note = f"remote traceback ({failure.error} on {failure.worker}):\n{failure.remote_traceback}"
    if isinstance(cause, BaseException):
        cause.add_note(note)
    else:
        cause = _RemoteTraceback(note)
    where = f" stage {failure.stage!r}" if failure.stage else ""
    raise PartitionError(
        f"flow {failure.flow!r}{where} failed on partition {failure.partition.key!r} "
        f"(index {failure.partition.index}): {failure.message}",
        flow=failure.flow,
        stage=failure.stage,
        partition=failure.partition.key,
    ) from cause


def result_of(value: Any) -> PartitionResult:
    """A worker's unpickled return value as a result; a failure is raised as PartitionError."""
    if isinstance(value, _Failure):
        _raise_failure(value)
    if not isinstance(value, PartitionResult):
        raise TypeError(f"a worker returned {type(value).__name__}, not a PartitionResult")
    return value


def unwrap(data: bytes) -> PartitionResult:
    """A worker's return value (bytes) as a result, raising PartitionError if it failed."""
    return result_of(loads(data))
