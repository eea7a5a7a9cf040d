"""Reads a FaaS signature once, at registration, so the run loop does no reflection.

Accepted forms (``ctx`` optional and first, ``rows`` optional and last)::

    def f(flow: Flow) -> None
    def f(flow: Flow, rows: list[T]) -> None
    def f(ctx, flow: Flow, rows: list[T]) -> None
    async def f(flow: Flow, rows: list[T]) -> None
    def f(flow: Flow, rows: list[T]) -> Iterator[U]          # yielded rows are committed
    async def f(flow: Flow, rows: list[T]) -> AsyncIterator[U]

The flow parameter is the one annotated with ``Flow`` (or, unannotated, named ``flow``).
A callable object is read through its ``__call__``, a ``functools.partial`` through the
function it wraps.
"""

from __future__ import annotations

import collections.abc
import contextlib
import enum
import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

import attrs
import typeguard

from kisflow import columnar
from kisflow._api import FlowAPI
from kisflow.errors import FaaSSignatureError
from kisflow.rows import RowType, describe_type, is_supported_row_type, row_type_problem

__all__ = ["CallKind", "Signature", "located", "read_signature"]

_ROW_CONTAINERS = (
    list,
    collections.abc.Sequence,
    collections.abc.Iterable,
    collections.abc.Collection,
    collections.abc.MutableSequence,
)
_SYNC_ITERATORS = (
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
)
_ASYNC_ITERATORS = (
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
)


class CallKind(enum.Enum):
    """How a FaaS returns: plainly, as a coroutine, or by yielding rows."""

    PLAIN = "plain"
    ASYNC = "async"
    GENERATOR = "generator"
    ASYNC_GENERATOR = "async generator"


@attrs.frozen
class Signature:
    """What registration learned about a FaaS: how to call it and its row types."""

    takes_ctx: bool
    takes_rows: bool
    kind: CallKind
    rows_type: Any
    output_type: Any | None
    rows: RowType | columnar.FrameRows | None = attrs.field(eq=False, repr=False)
    frames: bool = False
    """Takes its input as it comes: a DataFrame stays one (columnar stages, store Save/Load)."""


def _is_flow_annotation(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, FlowAPI)


def _rows_element(name: str, param: str, annotation: Any) -> Any:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return Any
    origin = typing.get_origin(annotation) or annotation
    if origin not in _ROW_CONTAINERS:
        raise FaaSSignatureError(
            name,
            f"rows must be annotated as list[T] or Sequence[T], got {describe_type(annotation)}",
            parameter=param,
        )
    args = typing.get_args(annotation)
    element = args[0] if args else Any
    if not is_supported_row_type(element):
        raise FaaSSignatureError(
            name,
            f"row type {describe_type(element)} is not supported; use an attrs class, a "
            f"dataclass, dict, Any, or one of int, float, str, bool",
            parameter=param,
        )
    problem = row_type_problem(element)  # its __kisflow_decode__ / __kisflow_ignore_case__
    if problem is not None:
        raise FaaSSignatureError(name, problem, parameter=param)
    return element


def _yield_type(name: str, kind: CallKind, annotation: Any) -> Any:
    if annotation is inspect.Parameter.empty:
        return None
    origin = typing.get_origin(annotation) or annotation
    allowed = _SYNC_ITERATORS if kind is CallKind.GENERATOR else _ASYNC_ITERATORS
    if origin not in allowed:
        raise FaaSSignatureError(
            name,
            f"a {kind.value} FaaS must be annotated as returning "
            f"{'Iterator[T]' if kind is CallKind.GENERATOR else 'AsyncIterator[T]'}, "
            f"got {describe_type(annotation)}",
            parameter="return",
        )
    args = typing.get_args(annotation)
    return args[0] if args else None


def _target(fn: Any) -> Any:
    """The function whose annotations and code describe ``fn``.

    A ``functools.partial`` is described by the function it wraps, and a callable object
    by its ``__call__``; ``typing.get_type_hints`` and ``inspect.is*function`` only look
    at functions and methods.
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    if isinstance(fn, type) or inspect.isroutine(fn):
        return fn
    call = getattr(fn, "__call__", None)  # noqa: B004 - the callable object's own method
    return call if inspect.isroutine(call) else fn


def _unresolved_parameter(target: Any) -> str | None:
    """The first parameter (or ``return``) whose annotation alone cannot be resolved."""
    annotations = getattr(target, "__annotations__", None)
    if not isinstance(annotations, dict):
        return None
    unwrapped = inspect.unwrap(target) if callable(target) else target
    globalns = getattr(unwrapped, "__globals__", None)
    for param, annotation in annotations.items():
        probe = types.SimpleNamespace(__annotations__={param: annotation})
        try:
            typing.get_type_hints(probe, globalns)
        except Exception:
            return str(param)
    return None


def _kind(fn: Callable[..., Any]) -> CallKind:
    target = inspect.unwrap(_target(fn))
    if inspect.isasyncgenfunction(target):
        return CallKind.ASYNC_GENERATOR
    if inspect.isgeneratorfunction(target):
        return CallKind.GENERATOR
    if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - an async __call__ on an object
    ):
        return CallKind.ASYNC
    return CallKind.PLAIN


def located(fn: Any) -> dict[str, Any]:
    """Where the Python function behind ``fn`` is: ``qualname``, ``file``, ``line``.

    The keyword arguments of ``FaaSSignatureError`` (empty for a value that is not
    callable). A partial is located by the function it wraps, a callable object by its
    ``__call__``, a decorated function by what it wraps; ``line`` is the first line of
    the definition (its first decorator's line).
    """
    if not callable(fn):
        return {}
    target = _target(fn)
    with contextlib.suppress(ValueError):  # a __wrapped__ cycle: keep the outer one
        target = inspect.unwrap(target)
    qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    if not isinstance(qualname, str):
        qualname = type(fn).__qualname__
    file: str | None = None
    line: int | None = None
    code = getattr(target, "__code__", None)
    if isinstance(code, types.CodeType):
        file, line = code.co_filename, code.co_firstlineno
    else:  # a class, a builtin: ask inspect, which may not know
        try:
            file = inspect.getsourcefile(target)
            line = inspect.getsourcelines(target)[1] if file else None
        except (OSError, TypeError):
            pass
    return {"qualname": qualname, "file": file, "line": line}


def read_signature(name: str, fn: Any, output: Any | None = None) -> Signature:
    """Check ``fn`` is a FaaS kisflow can call and describe how to call it.

    Raises:
        FaaSSignatureError: naming the registered name, the Python function (qualified
            name, file and line) and the parameter at fault.
    """
    try:
        return _read_signature(name, fn, output)
    except FaaSSignatureError as exc:
        where = located(fn)
        if not where or exc.qualname is not None:
            raise
        err = FaaSSignatureError(exc.function, exc.reason, exc.parameter, **where)
        raise err.with_traceback(exc.__traceback__) from exc.__cause__


def _read_signature(name: str, fn: Any, output: Any | None) -> Signature:
    """``read_signature`` without the function's location in its errors."""
    try:
        typeguard.check_type(fn, Callable[..., Any])
    except typeguard.TypeCheckError as exc:
        raise FaaSSignatureError(
            name, f"is not callable (got {type(fn).__name__})", parameter="fn"
        ) from exc
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise FaaSSignatureError(name, f"has no readable signature: {exc}", parameter="fn") from exc
    target = _target(fn)
    try:
        hints = typing.get_type_hints(target)
    except Exception as exc:
        raise FaaSSignatureError(
            name,
            f"annotations cannot be resolved ({exc}); define row types at module level",
            parameter=_unresolved_parameter(target),
        ) from exc

    positional: list[inspect.Parameter] = []
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional.append(p)
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            raise FaaSSignatureError(
                name,
                "keyword-only parameters need a default; kisflow cannot fill them",
                parameter=p.name,
            )
        elif p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise FaaSSignatureError(
                name, "*args/**kwargs are not supported; name the flow and rows", parameter=p.name
            )

    def annotation(p: inspect.Parameter) -> Any:
        return hints.get(p.name, inspect.Parameter.empty)

    flow_index = next(
        (i for i, p in enumerate(positional) if _is_flow_annotation(annotation(p))), None
    )
    if flow_index is None:
        flow_index = next(
            (
                i
                for i, p in enumerate(positional)
                if p.name == "flow" and annotation(p) in (inspect.Parameter.empty, Any)
            ),
            None,
        )
    if flow_index is None:
        raise FaaSSignatureError(
            name,
            "has no flow parameter; the first parameter (or the second, after a "
            "context) must be annotated 'flow: kisflow.Flow'",
            parameter="flow",
        )
    if flow_index > 1:
        raise FaaSSignatureError(
            name,
            "only one context parameter may come before the flow",
            parameter=positional[1].name,
        )
    takes_ctx = flow_index == 1
    rest = positional[flow_index + 1 :]
    takes_rows = bool(rest) and rest[0].default is inspect.Parameter.empty
    rows_type: Any = Any
    frame: columnar.Frame | None = None
    if takes_rows:
        frame = _frame_rows(target, rest[0].name, annotation(rest[0]))
        if frame is None:
            rows_type = _rows_element(name, rest[0].name, annotation(rest[0]))
        else:
            rows_type = frame
        rest = rest[1:]
    for extra in rest:
        if extra.default is inspect.Parameter.empty:
            raise FaaSSignatureError(
                name,
                "unexpected parameter after the rows; kisflow passes (ctx, flow, rows)",
                parameter=extra.name,
            )

    kind = _kind(fn)
    returns = hints.get("return", inspect.Parameter.empty)
    yielded: Any | None = None
    if kind in (CallKind.GENERATOR, CallKind.ASYNC_GENERATOR):
        yielded = _yield_type(name, kind, returns)
    elif returns not in (inspect.Parameter.empty, None, type(None)):
        raise FaaSSignatureError(
            name,
            f"must return None (commit rows with flow.commit_row, or yield them), "
            f"got {describe_type(returns)}",
            parameter="return",
        )
    output_type = output if output is not None else yielded
    declared = columnar.as_columns(output_type) if output_type is not None else None
    if declared is not None:
        output_type = declared
    elif output_type is not None and not is_supported_row_type(output_type):
        raise FaaSSignatureError(
            name,
            f"output type {describe_type(output_type)} is not a supported row type",
            parameter="output",
        )
    return Signature(
        takes_ctx=takes_ctx,
        takes_rows=takes_rows,
        kind=kind,
        rows_type=rows_type,
        output_type=output_type,
        rows=(
            columnar.FrameRows(frame.columns)
            if frame is not None
            else RowType(rows_type)
            if takes_rows and rows_type is not Any
            else None
        ),
        frames=frame is not None,
    )


def _frame_rows(target: Any, param: str, annotation: Any) -> columnar.Frame | None:
    """The rows type of a columnar stage (``pl.DataFrame``, maybe ``Annotated`` with
    ``Columns``), or None for a row stage."""
    if not columnar.is_frame_type(annotation):
        return None
    declared: columnar.Columns | None = None
    with contextlib.suppress(Exception):  # resolved once already, without extras
        full = typing.get_type_hints(target, include_extras=True).get(param)
        for extra in getattr(full, "__metadata__", ()):
            declared = columnar.as_columns(extra) or declared
    return columnar.Frame(declared)
