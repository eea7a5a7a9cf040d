"""OpenTelemetry spans of runs and stage calls (``pip install 'kisflow[otel]'``).

Off by default, and off costs nothing: tracing is an observer of runs
(``kisflow.observers``), registered by ``enable`` and removed by ``disable``::

    import kisflow.tracing

    kisflow.tracing.enable()            # the global tracer provider (or pass your own)
    flow.run(rows)                      # a span "run <flow>", a child "stage <name>" per call
    kisflow.tracing.disable()

Each run (each batch of a stream: a batch is one run) is a span whose children are its
stage calls, in order. A stage span carries the flow, stage, stage id, mode and position,
the rows in and out, the rows filtered and dead-lettered and the attempts; each failed
FaaS call is an exception event on it, and the error that ends a run sets ERROR status on
that stage span and on the run span. While a stage runs its span is the current one, so
spans a FaaS starts are its children.

A W3C ``traceparent`` in a source message's headers becomes the parent of the run that
processes it: wrap the run in ``with parent_from_headers(headers):`` (``headers``: the
headers of one message, or a list with one mapping per row, as durable stream sources
give each batch). The first valid ``traceparent`` is the parent; the other rows' are
links of the run span.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from kisflow import _context, observers
from kisflow.errors import MissingExtraError
from kisflow.observers import Observer, StageCall
from kisflow.rows import safe_str

if TYPE_CHECKING:
    from opentelemetry.trace import Link, Span, Tracer, TracerProvider

    from kisflow._context import RunInfo
    from kisflow.result import RunResult
    from kisflow.stage import Stage

__all__ = ["MAX_LINKS", "disable", "enable", "enabled", "parent_from_headers"]

MAX_LINKS = 64
"""Links a run span keeps at most to the other messages' traceparents of its batch."""

_lock = threading.Lock()
_active: _Spans | None = None
_NOTHING = contextlib.nullcontext()
_LINKS: contextvars.ContextVar[tuple[Link, ...]] = contextvars.ContextVar(
    "kisflow_trace_links", default=()
)


def _otel() -> Any:
    """The opentelemetry.trace module, or ``MissingExtraError`` naming ``kisflow[otel]``."""
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise MissingExtraError("otel", "opentelemetry", needed_by="kisflow.tracing") from exc
    return trace


def _version() -> str:
    try:
        return version("kisflow")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def enable(tracer_provider: TracerProvider | None = None) -> None:
    """Trace every run of this process from now on, with ``tracer_provider``'s tracer.

    Args:
        tracer_provider: where the spans go; None means OpenTelemetry's global provider
            (``opentelemetry.trace.set_tracer_provider``), looked up as each span starts.

    Calling it again replaces the provider (runs already started keep theirs).

    Raises:
        MissingExtraError: opentelemetry is not installed (``kisflow[otel]``).
    """
    global _active
    trace = _otel()
    if tracer_provider is None:
        tracer = trace.get_tracer("kisflow", _version())
    else:
        tracer = tracer_provider.get_tracer("kisflow", _version())
    spans = _Spans(tracer)
    with _lock:
        if _active is not None:
            observers.remove(_active)
        _active = spans
        observers.add(spans)


def disable() -> None:
    """Stop tracing runs (nothing happens if tracing is off); runs under way finish theirs."""
    global _active
    with _lock:
        if _active is not None:
            observers.remove(_active)
            _active = None


def enabled() -> bool:
    """Whether tracing is on."""
    return _active is not None


def parent_from_headers(
    headers: Mapping[Any, Any] | Iterable[Any] | None,
) -> contextlib.AbstractContextManager[None]:
    """A ``with`` block whose runs are children of the ``traceparent`` in ``headers``.

    ``headers`` is one message's headers (a mapping, or Kafka's list of ``(key, value)``
    pairs; keys and values may be ``bytes``) or a batch's: a list with one such entry
    per row (None for a row without headers). The first valid W3C ``traceparent`` (with
    its ``tracestate``) becomes the parent of every run started in the block, in this
    thread or task; the other rows' are links of the run span (at most ``MAX_LINKS``).
    With tracing off, or no valid ``traceparent``, the block changes nothing.
    """
    if _active is None or not headers:
        return _NOTHING
    carriers = [_carrier(headers)] if _is_single(headers) else [_carrier(h) for h in headers]
    return _parented([c for c in carriers if c])


@contextlib.contextmanager
def _parented(carriers: list[dict[str, str]]) -> Any:
    from opentelemetry import context, trace
    from opentelemetry.trace import Link
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    parent = None
    links: list[Link] = []
    seen: set[tuple[int, int]] = set()
    for carrier in carriers:
        extracted = propagator.extract(carrier)
        found = trace.get_current_span(extracted).get_span_context()
        if not found.is_valid or (found.trace_id, found.span_id) in seen:
            continue
        seen.add((found.trace_id, found.span_id))
        if parent is None:
            parent = extracted
        elif len(links) < MAX_LINKS:
            links.append(Link(found))
    if parent is None:
        yield
        return
    token = context.attach(parent)
    links_token = _LINKS.set(tuple(links))
    try:
        yield
    finally:
        _LINKS.reset(links_token)
        context.detach(token)


def _is_single(headers: Any) -> bool:
    """One message's headers (a mapping or (key, value) pairs), not a list of them."""
    if isinstance(headers, Mapping):
        return True
    for entry in headers:
        if entry is None or isinstance(entry, Mapping):
            return False
        return isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str | bytes)
    return False


def _carrier(headers: Any) -> dict[str, str]:
    """One message's headers as a W3C carrier: lower-case ``str`` keys and values."""
    if headers is None:
        return {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    carrier: dict[str, str] = {}
    try:
        for key, value in pairs:
            name = _text(key).lower()
            if name in ("traceparent", "tracestate") and value is not None:
                carrier[name] = _text(value)
    except (TypeError, ValueError):  # not headers: no parent from them
        return {}
    return carrier


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


class _Open:
    """The spans of one run under way: the run's, and its current stage call's."""

    __slots__ = ("run", "stage", "token")

    def __init__(self, run: Span) -> None:
        self.run = run
        self.stage: Span | None = None
        self.token: object = None


class _Spans(Observer):
    """Makes a span per run and a child span per stage call."""

    def __init__(self, tracer: Tracer) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import Status, StatusCode

        self._tracer = tracer
        self._trace = trace
        self._context = context
        self._status = Status
        self._code = StatusCode.ERROR
        self._open: dict[int, _Open] = {}

    def run_started(self, run: RunInfo, rows: int) -> None:
        """Start the run's span, a child of the current span or of a message's parent."""
        flow = run.flow_name
        attributes: dict[str, Any] = {
            "kisflow.flow": flow,
            "kisflow.run_id": run.run_id,
            "kisflow.rows_in": rows,
        }
        partition = _context.current_partition()
        key = getattr(partition, "key", None)
        if isinstance(key, str):
            attributes["kisflow.partition"] = key
        span = self._tracer.start_span(f"run {flow}", attributes=attributes, links=_LINKS.get())
        self._open[run.run_id] = _Open(span)

    def stage_started(self, run: RunInfo, stage: Stage, position: int) -> None:
        """Start the stage call's span under the run's, and make it the current span."""
        opened = self._open.get(run.run_id)
        if opened is None:
            return
        span = self._tracer.start_span(
            f"stage {stage.name}",
            context=self._trace.set_span_in_context(opened.run),
            attributes={
                "kisflow.flow": run.flow_name,
                "kisflow.stage": stage.name,
                "kisflow.stage_id": stage.id,
                "kisflow.mode": stage.mode.value,
                "kisflow.position": position,
            },
        )
        opened.stage = span
        opened.token = self._context.attach(self._trace.set_span_in_context(span))

    def call_failed(self, run: RunInfo, stage: Stage, attempt: int, error: BaseException) -> None:
        """Record the failed FaaS call on the stage span, with its attempt."""
        opened = self._open.get(run.run_id)
        if opened is not None and opened.stage is not None and isinstance(error, Exception):
            opened.stage.record_exception(error, attributes={"kisflow.attempt": attempt})

    def retried(self, run: RunInfo, stage: Stage, attempt: int, error: BaseException) -> None:
        """Mark the retry on the stage span."""
        opened = self._open.get(run.run_id)
        if opened is not None and opened.stage is not None:
            opened.stage.add_event("retry", {"kisflow.attempt": attempt})
            opened.stage.set_attribute("kisflow.attempts", attempt)

    def stage_done(self, run: RunInfo, call: StageCall) -> None:
        """End the stage call's span with its figures."""
        opened = self._open.get(run.run_id)
        if opened is None or opened.stage is None:
            return
        span = opened.stage
        span.set_attributes(
            {
                "kisflow.rows_in": call.rows_in,
                "kisflow.rows_out": call.rows_out,
                "kisflow.rows_filtered": call.filtered,
                "kisflow.dead_letters": call.dead,
                "kisflow.attempts": call.attempts,
            }
        )
        self._end_stage(opened)

    def run_done(self, run: RunInfo, result: RunResult | None, error: BaseException | None) -> None:
        """End the run's span (and a stage span the error left open) with how it ended."""
        opened = self._open.pop(run.run_id, None)
        if opened is None:
            return
        span = opened.run
        span.set_attribute("kisflow.steps", run.steps)
        if result is not None:
            span.set_attribute("kisflow.ended", result.ended.value)
            span.set_attribute("kisflow.rows_out", len(result.output))
            if result.stopped_at is not None:
                span.set_attribute("kisflow.stopped_at", result.stopped_at)
        if error is not None:
            text = f"{type(error).__name__}: {safe_str(error, 500)}"
            if opened.stage is not None:
                opened.stage.set_status(self._status(self._code, text))
                self._end_stage(opened)
            if isinstance(error, Exception):
                span.record_exception(error)
            span.set_status(self._status(self._code, text))
        span.end()

    def _end_stage(self, opened: _Open) -> None:
        assert opened.stage is not None
        token, opened.token = opened.token, None
        if token is not None:
            self._context.detach(token)  # type: ignore[arg-type]
        opened.stage.end()
        opened.stage = None
