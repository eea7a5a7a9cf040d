"""Micro-batch streams: run a flow over a source with bounded memory, durably if it can.

``Stream`` (sync) and ``AsyncStream`` cut the source into batches of at most
``batch_size`` records (or what came within ``max_wait`` seconds of a batch's first
record), run each batch as one ordinary run of the flow and yield its ``RunResult`` in
source order. At most ``max_in_flight`` batches are read and not yet committed, so memory
is bounded by ``batch_size * max_in_flight`` records whatever the source's length: the
source is pulled, never pushed.

A durable source (``kisflow.sources.Source``) with a ``checkpoint`` runs the protocol of
docs/streaming.md per batch: record the batch's span as an intent, run it with
``kisflow._context.PARTITION`` set to its ``Batch`` (key ``f"{source.key}#{seq}"``, which
every built-in Save records with its rows), commit the position after it with the rows,
ack the source, tell the observers (``stream_committed``). At start the intents a crash
left are replayed under their own keys, so what they stored is not stored again. With
``max_in_flight > 1`` batches commit in source order, and a Save stage of a batch waits
until the batch before it committed (the run's gate), so a failure leaves
``stream.committed`` equal to what is stored.

A plain iterable takes a fast path: no intents, no spans, no position (at most once).

Stopping is always between batches, never inside one, so a Save stage never sees half a
batch: ``stop()`` (from any thread), Ctrl-C (SIGINT, when the stream runs in the main
thread: its handler is installed once per stream) or cancelling the task of an
``AsyncStream`` let the batches in flight finish, then end the stream.

``run_jsonl_stream`` (the CLI's ``run``) streams JSON lines through a ``Stream`` and
tells its errors in input lines.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import itertools
import json
import os
import reprlib
import signal
import threading
import time
import types
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import attrs
from loguru import logger

from kisflow import _context, _state, observers, tracing
from kisflow.checkpoint import Batch, Checkpoint
from kisflow.columnar import as_rows
from kisflow.connectors._base import to_json_text
from kisflow.deadletter import DeadLetter, DeadLetterSink
from kisflow.errors import (
    ConfigError,
    DeadLetterError,
    DeliveryError,
    InputLineError,
    KisFlowError,
    RowConversionError,
    RunError,
    SourceError,
)
from kisflow.observers import StreamStatus
from kisflow.options import DEFAULT as DEFAULT_OPTIONS
from kisflow.options import RunOptions, merge
from kisflow.progress import progress_bar
from kisflow.result import RunResult
from kisflow.sources._base import Chunk, Source
from kisflow.sources._iterable import IterableSource
from kisflow.sources._jsonl import BLANK, BadLine, decode_json_line
from kisflow.state import StateStore

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DELIVERIES",
    "AsyncStream",
    "InputLineError",
    "Stream",
    "StreamFlow",
    "StreamSummary",
    "run_jsonl_stream",
]

DEFAULT_BATCH_SIZE = 10_000
"""Rows per micro-batch when none is given: large enough to amortise a run's set-up."""

DELIVERIES = ("at-most-once", "at-least-once", "exactly-once")
"""The delivery guarantees a stream can be asked for (``delivery=``)."""

_POLL = 0.1
"""Seconds a read waits at most before the stream looks at its stop flag again."""


class StreamFlow(Protocol):
    """What a stream needs of a flow (``kisflow.Flow`` is one): a name and its runs."""

    @property
    def name(self) -> str:
        """The flow's name, for messages, logs and observers."""

    def run(self, rows: Iterable[Any], options: RunOptions | None = None, /) -> RunResult:
        """Run the flow once on ``rows`` with ``options``."""

    async def arun(self, rows: Iterable[Any], options: RunOptions | None = None, /) -> RunResult:
        """Run the flow once on ``rows`` with ``options``, on the running event loop."""


SaveStages = Callable[[], Sequence[tuple[str, bool]]]
"""The flow's Save stages as ``(name, joins the commit)``, asked only when needed."""


def _check_sizes(flow: str, batch_size: int, max_in_flight: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(
            f"flow {flow!r}: stream batch_size must be a positive int, got {batch_size!r}",
            key="batch_size",
        )
    if not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise ConfigError(
            f"flow {flow!r}: stream max_in_flight must be a positive int, got {max_in_flight!r}",
            key="max_in_flight",
        )


def _check_seconds(flow: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(
            f"flow {flow!r}: stream {key} must be a number of seconds >= 0 or None, got {value!r}",
            key=key,
        )
    return float(value)


_NO_STATE = StateStore()
"""The state of a flow that keeps none (a ``StreamFlow`` without ``state_store``)."""


@attrs.frozen
class _Slot:
    """Where a batch of a plain iterable sits: its number (from 0), first row and size."""

    index: int
    first: int
    size: int

    @property
    def text(self) -> str:
        """The note naming the batch and its source rows."""
        last = self.first + self.size - 1
        return f"in stream batch {self.index} (source rows {self.first}..{last})"

    def note(self, exc: BaseException) -> None:
        """Say on ``exc`` which batch and source rows it came from."""
        exc.add_note(self.text)


class _Abandoned(RunError):
    """Raised at a batch's Save gate when an earlier batch failed: it stores nothing."""


class _Turn:
    """A batch's place in the commit order: open once it committed, failed if it did not."""

    __slots__ = ("event", "failed")

    def __init__(self, done: bool = False) -> None:
        self.event = threading.Event()
        self.failed = False
        if done:
            self.event.set()

    def open(self) -> None:
        self.event.set()

    def fail(self) -> None:
        self.failed = True
        self.event.set()

    def wait(self) -> None:
        """The next batch's gate: wait until this one committed; raise if it failed."""
        self.event.wait()
        if self.failed:
            raise _Abandoned("abandoned before its Save: an earlier stream batch failed", flow="")

    async def await_(self) -> None:
        """``wait`` on an event loop: polls the event (1 ms, backing off to 20 ms) so the
        loop is never blocked; the turn is opened from the loop or the source's thread."""
        pause = 0.001
        while not self.event.is_set():
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)
        if self.failed:
            raise _Abandoned("abandoned before its Save: an earlier stream batch failed", flow="")


class _Cut:
    """One batch of a source: its records, span, number and (with a checkpoint) key."""

    __slots__ = (
        "bad",
        "gate",
        "headers",
        "index",
        "key",
        "part",
        "rows",
        "seq",
        "size",
        "span",
        "taken",
        "turn",
        "wheres",
    )

    def __init__(self, index: int, chunk: Chunk, key: str) -> None:
        self.index = index
        self.rows = chunk.rows
        self.span = chunk.span
        self.bad = chunk.bad
        self.wheres = chunk.wheres
        self.headers = chunk.headers
        """One mapping per row (message headers) or None: a traceparent there is the run's
        parent span (``kisflow.tracing``)."""
        self.size = chunk.size
        self.key = key
        self.seq = 0
        self.part: Batch | None = None
        self.turn: _Turn | None = None
        """This batch's place in the commit order (ordered commits only)."""
        self.gate: _Turn | None = None
        """The previous batch's turn, which this batch's Save stages wait for."""
        self.taken = False
        """Records taken over from a dead consumer: committing them moves no position."""


def _span_text(span: Any) -> str:
    try:
        text = json.dumps(span, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(span)
    return text if len(text) <= 200 else text[:197] + "..."


class _ReadInterrupted(BaseException):
    """Raised by the SIGINT handler to cut short a read blocked in a plain iterable."""


class _Base:
    """What the sync and async streams share: options, source, checkpoint, counters."""

    def __init__(
        self,
        flow: StreamFlow,
        source: Iterable[Any] | AsyncIterable[Any] | Source,
        *,
        batch_size: int,
        max_in_flight: int,
        options: RunOptions,
        progress: bool | None,
        max_wait: float | None = None,
        idle_timeout: float | None = None,
        checkpoint: str | os.PathLike[str] | Checkpoint | None = None,
        delivery: str | None = None,
        record_sink: DeadLetterSink | None = None,
        saves: SaveStages | None = None,
    ) -> None:
        name = flow.name
        _check_sizes(name, batch_size, max_in_flight)
        self.flow = flow
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.options = options
        """The options every batch runs with (``ctx=`` given to the stream included)."""
        self.max_wait = _check_seconds(name, "max_wait", max_wait)
        self.idle_timeout = _check_seconds(name, "idle_timeout", idle_timeout)
        self.rows_done = 0
        """Source records of the batches finished and handed out so far."""
        self.batches_done = 0
        """Batches finished and handed out so far."""
        self.committed = 0
        """Source records whose batches are committed (effects stored, position saved) by
        this stream; with a failed batch, exactly what the Saves stored of this stream."""
        self.position: Any = None
        """The source position after the last committed batch (from the checkpoint at
        start); None for a plain iterable."""
        self.interrupted = False
        """True when the stream ended early through ``stop()``, Ctrl-C or cancellation."""
        self.idle = False
        """True when the stream ended because its source was empty ``idle_timeout`` s."""
        self._plain_source = source
        self._plain = not isinstance(source, Source)
        if isinstance(source, Source):
            self.source: Source = source
        else:
            self.source = IterableSource(
                source,
                name=name,
                reader=self.max_wait is not None or self.idle_timeout is not None,
                ahead=batch_size,
                flow=name,
            )
        self._durable = self.source.durable
        self._checkpoint_arg = checkpoint
        self.checkpoint: Checkpoint | None = None
        self._record_sink = record_sink
        self.delivery = self._check_delivery(delivery, saves)
        """The guarantee this stream gives: ``at-most-once`` (plain iterable),
        ``at-least-once`` or ``exactly-once`` (a durable source, a checkpoint, and Saves
        that record batch keys)."""
        self._key = self.source.key
        self._seq = 1
        self._in_flight = 0
        self._checkpoint_time: float | None = None
        self._stop = threading.Event()
        self._progress = progress
        self._bar: tqdm[Any] | None = None
        self._index = 0
        self._first = 0
        self._exhausted = False
        self._broken = False

    # -- set-up --------------------------------------------------------------------------

    def _check_delivery(self, delivery: str | None, saves: SaveStages | None) -> str:
        name = self.flow.name
        if delivery is not None and delivery not in DELIVERIES:
            raise ConfigError(
                f"flow {name!r}: stream delivery must be one of {', '.join(DELIVERIES)}, "
                f"got {delivery!r}",
                key="delivery",
            )
        has_checkpoint = self._checkpoint_arg is not None
        what = self.source.describe()
        if not self._durable:
            if delivery in ("at-least-once", "exactly-once"):
                raise DeliveryError(
                    f"flow {name!r}: delivery={delivery!r} needs a durable source; "
                    f"{what} is a plain iterable (at most once); stream a "
                    f"kisflow.sources source (jsonl, redis_stream, kafka) with a checkpoint",
                    key="delivery",
                )
            if has_checkpoint:
                raise DeliveryError(
                    f"flow {name!r}: a checkpoint needs a durable source; {what} is a plain "
                    f"iterable, which keeps no position to resume from",
                    key="checkpoint",
                )
            return "at-most-once"
        if delivery != "exactly-once":
            if delivery == "at-most-once":
                raise DeliveryError(
                    f"flow {name!r}: delivery='at-most-once' is not offered for the durable "
                    f"source {what}: it delivers at least once; leave delivery unset",
                    key="delivery",
                )
            if saves is not None and has_checkpoint and all(j for _, j in saves()):
                return "exactly-once"
            return "at-least-once"
        if not has_checkpoint:
            raise DeliveryError(
                f"flow {name!r}: delivery='exactly-once' needs a checkpoint to commit "
                f"{what}'s positions with; pass checkpoint='FILE.ckpt.db'",
                key="checkpoint",
            )
        for stage, joins in saves() if saves is not None else ():
            if not joins:
                raise DeliveryError(
                    f"flow {name!r}: delivery='exactly-once' but Save stage {stage!r} is a "
                    f"FaaS that does not join the commit, so a batch replayed after a crash "
                    f"would be stored again; make it record kisflow.current_batch().key in "
                    f"its own transaction and register it with "
                    f"@kf.faas({stage!r}, joins_commit=True), or use a built-in store",
                    key="delivery",
                )
        return "exactly-once"

    @property
    def ctx(self) -> Any:
        """The ``ctx`` every batch's FaaS get (``options.ctx``)."""
        return self.options.ctx

    @ctx.setter
    def ctx(self, value: Any) -> None:
        self.options = self.options.replace(ctx=value)

    def stop(self) -> None:
        """Ask the stream to end after the batches in flight (thread-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return self._stop.is_set()

    @property
    def _fast(self) -> bool:
        """A plain sync iterable with no time bounds: batches cut in place, no spans."""
        return (
            self._plain
            and self.max_wait is None
            and self.idle_timeout is None
            and not isinstance(self._plain_source, AsyncIterable)
        )

    def _open(self) -> list[_Cut]:
        """Open the checkpoint and the source; the intents a crash left, to replay."""
        replays: list[_Cut] = []
        ckpt_arg = self._checkpoint_arg
        resume: Any = None
        intents = []
        saved = None
        if ckpt_arg is not None:
            ckpt = ckpt_arg if isinstance(ckpt_arg, Checkpoint) else Checkpoint(ckpt_arg)
            self.checkpoint = ckpt
            saved = ckpt.load(self._key)
            if saved is not None:
                self.position = resume = saved.position
                self._checkpoint_time = saved.updated
                if saved.state is not None:
                    self._state().restore(saved.state)
            intents = ckpt.intents(self._key)
            self._seq = ckpt.next_seq(self._key)
            own = [i for i in intents if not i.taken]
            if own:
                # Open after the last batch begun: the intents are reread by their spans.
                resume = self.source.position(own[-1].span)
        self.source.open(resume)
        if self.checkpoint is not None:
            self.source.peers(self.checkpoint)  # a group's consumers: the others' intents
        if saved is not None and resume is not saved.position:
            # Opened after the last intent: the source still learns what is committed
            # (a crash between a commit and its ack leaves that batch unacked).
            self.source.committed(saved.position)
        for intent in intents:
            cut = _Cut(self._index, self.source.reread(intent.span), self._key)
            self._index += 1
            cut.seq = intent.seq
            cut.taken = intent.taken
            replays.append(cut)
        if intents:
            logger.bind(flow=self.flow.name).warning(
                "stream {}: replaying {} batch(es) a crash left uncommitted (seq {}..{})",
                self.source.describe(),
                len(intents),
                intents[0].seq,
                intents[-1].seq,
            )
        return replays

    # -- cutting batches -------------------------------------------------------------------

    def _read(self, wait: float, most: int = 0) -> Chunk | None:
        """One ``read`` of at most ``most`` (else ``batch_size``) records."""
        return self.source.read(most or self.batch_size, wait)

    def _cut(self, ready: Callable[[], bool] | None = None) -> _Cut | None:
        """The next batch: wait for a first record (up to ``idle_timeout``), then read
        until ``batch_size`` records or ``max_wait`` after the first; None at the end.

        ``ready`` (ordered commits) is asked while waiting for a first record: when it
        says a batch in flight finished, the wait ends with an empty cut so it commits.
        """
        stop = self._stop
        idle_timeout = self.idle_timeout
        started = time.monotonic()
        while True:
            if stop.is_set() or self._exhausted:
                return None
            wait = _POLL
            if idle_timeout is not None:
                wait = min(_POLL, max(0.0, started + idle_timeout - time.monotonic()))
            first = self._read(wait)
            if first is None:
                self._exhausted = True
                return None
            if first.size:
                break
            if idle_timeout is not None and time.monotonic() - started >= idle_timeout:
                self.idle = self._exhausted = True
                return None
            if ready is not None and ready():
                return _EMPTY_CUT
        chunks = [first]
        size = first.size
        batch_size = self.batch_size
        max_wait = self.max_wait
        last = time.monotonic()
        deadline = None if max_wait is None else last + max_wait
        while size < batch_size and not stop.is_set():
            now = time.monotonic()
            wait = _POLL
            if deadline is not None:
                wait = deadline - now
                if wait <= 0:
                    break
                wait = min(wait, _POLL)
            if idle_timeout is not None:
                left = last + idle_timeout - now
                if left <= 0:
                    break
                wait = min(wait, left)
            chunk = self._read(wait, batch_size - size)
            if chunk is None:
                self._exhausted = True
                break
            if chunk.size:
                chunks.append(chunk)
                size += chunk.size
                last = time.monotonic()
        chunk = chunks[0] if len(chunks) == 1 else self.source.join(chunks)
        cut = _Cut(self._index, chunk, self._key)
        self._index += 1
        return cut

    # -- one batch's protocol ----------------------------------------------------------------

    def _prepare(self, cut: _Cut, *, intent: bool = True) -> None:
        """Before a batch runs: refuse bad records without a sink, record the intent."""
        if cut.bad and self._record_sink is None:
            bad = cut.bad[0]
            raise SourceError(
                f"flow {self.flow.name!r}: {bad.where} {bad.reason}; record was "
                f"{bad.text[:200]!r}; give the stream a dead-letter sink (dead_letters=) to "
                f"keep such records and go on{self._where_checkpoint()}, before this batch",
                source=self._key,
                position=self.position,
                flow=self.flow.name,
            )
        ckpt = self.checkpoint
        if ckpt is None:
            return
        if intent:
            cut.seq = self._seq
            self._seq += 1
            ckpt.begin(cut.key, cut.seq, cut.span, taken=cut.taken)
        cut.part = Batch(cut.key, cut.seq, cut.span, ckpt.path)

    def _note(self, cut: _Cut, exc: BaseException) -> None:
        """Say on ``exc`` which batch and source span it came from."""
        if self._plain:
            _Slot(cut.index, self._first, cut.size).note(exc)
            return
        where = f"in stream batch {cut.index + 1} ({self.source.describe()} span "
        where += _span_text(cut.span)
        if cut.seq:
            where += f", seq {cut.seq}"
        exc.add_note(f"{where}){self._where_checkpoint()}")

    def _where_checkpoint(self) -> str:
        """``; the checkpoint stays at position ...`` (nothing without a checkpoint)."""
        if self.checkpoint is None:
            return ""
        return f"; the checkpoint stays at position {self.position!r}"

    def _letters(self, cut: _Cut) -> None:
        """Hand the batch's bad records to the dead-letter sink (before its commit)."""
        sink = self._record_sink
        assert sink is not None
        name = self.flow.name
        for bad in cut.bad:
            letter = DeadLetter(
                flow=name,
                stage="<source>",
                stage_id="",
                row_index=bad.index,
                row=bad.text,
                reason="bad record",
                error=f"{bad.where} {bad.reason}",
                error_type="BadRecord",
            )
            try:
                sink.put(letter)
            except Exception as exc:
                raise DeadLetterError(
                    f"flow {name!r}: the dead-letter sink failed to store the bad record at "
                    f"{bad.where}: {type(exc).__name__}: {exc}",
                    flow=name,
                    stage="<source>",
                ) from exc

    def _commit(self, cut: _Cut) -> None:
        """After a batch ran: letters, commit position and rows, ack the source."""
        if cut.bad:
            self._letters(cut)
        source = self.source
        if self._durable:
            ckpt = self.checkpoint
            if not cut.taken:
                position = source.position(cut.span)
            elif cut.key == self._key:
                position = self.position  # taken records lie outside this source's order
            else:
                saved = ckpt.load(cut.key) if ckpt is not None else None
                position = None if saved is None else saved.position
            if ckpt is not None:
                state = None
                if cut.key == self._key and self._state():
                    state = self._state().snapshot()
                ckpt.commit(cut.key, cut.seq, position, rows=cut.size, state=state)
                self._checkpoint_time = time.time()
            source.ack(cut.span)
            if cut.key == self._key:
                self.position = position
        if cut.turn is not None:
            cut.turn.open()
        self.committed += cut.size

    def _deliver(self, cut: _Cut, result: RunResult) -> RunResult:
        """Count a committed batch and tell the observers, as it is handed out."""
        self.rows_done += cut.size
        self.batches_done += 1
        self._first += cut.size
        if self._bar is not None:
            self._bar.update(cut.size)
        watching = observers.active() + self.options.observers
        if watching:
            name = self.flow.name
            observers.notify(watching, "batch_done", name, cut.index + 1, result)
            status = StreamStatus(
                batch=cut.index + 1,
                position=self.position,
                committed=self.committed,
                lag=self.source.lag(),
                in_flight=self._in_flight,
                checkpoint_time=self._checkpoint_time,
            )
            observers.notify(watching, "stream_committed", name, status)
        return result

    def _state(self) -> StateStore:
        """The flow's stage state (keyed state, open windows): saved with each commit."""
        store: StateStore | None = getattr(self.flow, "state_store", None)
        return store if store is not None else _NO_STATE

    def _execute(self, cut: _Cut) -> RunResult:
        """Run one batch in this thread, as its partition and behind its gate if any."""
        if cut.headers is not None and tracing.enabled():
            with tracing.parent_from_headers(cut.headers):  # a message's trace: the parent
                return self._execute_cut(cut)
        return self._execute_cut(cut)

    def _execute_cut(self, cut: _Cut) -> RunResult:
        part, gate = cut.part, cut.gate
        streaming = _context.STREAMING.set(True)  # window stages keep their windows
        token = _context.PARTITION.set(part) if part is not None else None
        gate_token = _context.GATE.set(gate) if gate is not None else None
        try:
            return self.flow.run(cut.rows, self.options)
        finally:
            _context.STREAMING.reset(streaming)
            if gate_token is not None:
                _context.GATE.reset(gate_token)
            if token is not None:
                _context.PARTITION.reset(token)

    def _open_bar(self) -> None:
        """Open the progress bar; keep none when it would draw nothing (then a batch
        makes no update call)."""
        if self._bar is None:
            bar = progress_bar(desc=self.flow.name, enabled=self._progress)
            if bar.disable:
                bar.close()
            else:
                self._bar = bar

    def _close_source(self) -> None:
        try:
            self.source.close()
        finally:
            ckpt = self.checkpoint
            if ckpt is not None and not isinstance(self._checkpoint_arg, Checkpoint):
                ckpt.close()

    def _finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._stop.is_set():
            self.interrupted = True
        logger.bind(flow=self.flow.name).info(
            "stream {}: {} rows in {} batches",
            "stopped" if self.interrupted else "finished",
            self.rows_done,
            self.batches_done,
        )


_EMPTY_CUT = _Cut(-1, Chunk([], None), "")
"""What ``_cut`` returns when it stopped waiting because a batch in flight finished."""


class Stream(_Base, Iterator[RunResult]):
    """A sync micro-batch stream over a source, an iterable or an async iterable of rows.

    Iterate it to get each batch's ``RunResult`` in source order. With
    ``max_in_flight > 1`` batches run on that many threads (useful when stages wait
    on I/O); results still come out (and commit) in order. ``options`` (a
    ``RunOptions``) applies to every batch; ``ctx=`` overrides its ``ctx``. See
    ``Flow.stream`` for ``max_wait``, ``idle_timeout``, ``checkpoint`` and ``delivery``.
    """

    def __init__(
        self,
        flow: StreamFlow,
        source: Iterable[Any] | AsyncIterable[Any] | Source,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_in_flight: int = 1,
        ctx: Any = None,
        progress: bool | None = None,
        handle_sigint: bool = True,
        options: RunOptions | None = None,
        max_wait: float | None = None,
        idle_timeout: float | None = None,
        checkpoint: str | os.PathLike[str] | Checkpoint | None = None,
        delivery: str | None = None,
        record_sink: DeadLetterSink | None = None,
        saves: SaveStages | None = None,
    ) -> None:
        super().__init__(
            flow,
            source,
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            options=merge(options, ctx=ctx),
            progress=progress,
            max_wait=max_wait,
            idle_timeout=idle_timeout,
            checkpoint=checkpoint,
            delivery=delivery,
            record_sink=record_sink,
            saves=saves,
        )
        self._handle_sigint = handle_sigint
        self._reading = False
        self._working = False
        self._gen: Generator[RunResult, None, None] | None = None

    def __iter__(self) -> Iterator[RunResult]:
        # The batches' generator itself: a for loop then resumes it with no frame of ours.
        gen = self._gen
        if gen is None:
            gen = self._gen = self._generate()
        return gen

    def __next__(self) -> RunResult:
        gen = self._gen
        if gen is None:
            gen = self._gen = self._generate()
        return next(gen)

    def close(self) -> None:
        """End the stream now (after the batches in flight) and release the source."""
        self._stop.set()
        if self._gen is not None:
            self._gen.close()
        else:
            self.interrupted = True

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, wait: float, most: int = 0) -> Chunk | None:
        source = self.source
        if not isinstance(source, IterableSource) or not source.blocks:
            return source.read(most or self.batch_size, wait)  # waits in short slices
        self._reading = True
        try:
            return source.read(most or self.batch_size, wait)
        except _ReadInterrupted:
            return None  # Ctrl-C cut a blocked read short: the rows read so far still run
        finally:
            self._reading = False

    def _generate(self) -> Generator[RunResult, None, None]:
        # One Ctrl-C handler for the stream's whole life (not one per batch): a clean stop
        # while the stream works, the usual KeyboardInterrupt in the caller's loop body.
        restore = self._install_sigint()
        self._working = True
        self._open_bar()
        try:
            replays = self._open()
            try:
                if self._fast and self.max_in_flight == 1:
                    yield from self._fast_serial()
                else:
                    for result in self._source_batches(replays):
                        self._working = False
                        yield result
                        self._working = True
            finally:
                self._close_source()
        finally:
            self._working = False
            restore()
            self._finish()

    def _source_batches(self, replays: list[_Cut]) -> Iterator[RunResult]:
        if self._fast:
            yield from self._threaded(self._fast_cuts())
            return
        for cut in replays:
            yield self._serial_one(cut, intent=False)
        if self.max_in_flight == 1:
            yield from self._serial()
        else:
            yield from self._threaded(None)

    # -- the fast path: a plain iterable, no time bounds -----------------------------------

    def _fast_take(self) -> list[Any]:
        source = self.source
        assert isinstance(source, IterableSource)
        self._reading = True
        try:
            return source.take(self.batch_size)
        except _ReadInterrupted:
            return source.take_kept()
        finally:
            self._reading = False

    def _fast_serial(self) -> Iterator[RunResult]:
        """Batches cut in place: per batch one slice of a list (else one ``islice`` of the
        iterator), one run, a few counters."""
        source = self.source
        assert isinstance(source, IterableSource)
        it = source.iterator
        whole = source.rows_list  # a list: sliced, like the iterator a list's own would
        at = 0  # (the rows appended during the stream are streamed too)
        stop = self._stop
        run = self.flow.run
        size = self.batch_size
        islice = itertools.islice
        bar = self._bar
        watched = _state
        options = self.options
        given = None if options is DEFAULT_OPTIONS else options  # flow.run's fast path
        while not stop.is_set():
            if whole is not None:
                rows = whole[at : at + size]  # nothing blocks: a Ctrl-C stops after the run
                at += len(rows)
            else:
                rows = []
                self._reading = True
                try:
                    rows.extend(islice(it, size))  # rows read before a Ctrl-C stay
                except _ReadInterrupted:
                    pass
                finally:
                    self._reading = False
            if not rows:
                return
            if self.options is not options:  # the ctx setter, between batches
                options = self.options
                given = None if options is DEFAULT_OPTIONS else options
            n = len(rows)
            streaming = _context.STREAMING.set(True)
            try:
                result = run(rows, given)
            except KisFlowError as exc:
                _Slot(self.batches_done, self.rows_done, n).note(exc)
                raise
            finally:
                _context.STREAMING.reset(streaming)
            del rows
            self.rows_done += n
            self.committed += n
            self.batches_done += 1
            if bar is not None:
                bar.update(n)
            if watched.observers or options.observers or watched.debug_observers():
                self._tell(self.batches_done, result)  # (the debug mode's log: kisflow.runlog)
            self._working = False  # the caller's loop body: Ctrl-C is the caller's
            yield result
            self._working = True

    def _tell(self, batch: int, result: RunResult) -> None:
        watching = observers.active() + self.options.observers
        name = self.flow.name
        observers.notify(watching, "batch_done", name, batch, result)
        status = StreamStatus(batch, None, self.committed, None, self._in_flight, None)
        observers.notify(watching, "stream_committed", name, status)

    def _fast_cuts(self) -> Iterator[_Cut]:
        while not self._stop.is_set():
            rows = self._fast_take()
            if not rows:
                return
            cut = _Cut(self._index, Chunk(rows, [self._index, len(rows)]), self._key)
            self._index += 1
            yield cut

    # -- the source path -----------------------------------------------------------------------

    def _serial_one(self, cut: _Cut, *, intent: bool = True) -> RunResult:
        self._prepare(cut, intent=intent)
        self._in_flight = 1
        try:
            result = self._execute(cut)
        except KisFlowError as exc:
            self._note(cut, exc)
            raise
        self._in_flight = 0
        self._commit(cut)
        return self._deliver(cut, result)

    def _takeovers(self) -> Iterator[_Cut]:
        """Batches of records taken over from dead consumers: their intents, then the rest."""
        source = self.source
        for takeover in source.takeovers():
            ckpt = self.checkpoint
            intents = ckpt.intents(takeover.key) if ckpt is not None else []
            for intent in intents:
                cut = _Cut(self._index, source.reread(intent.span), takeover.key)
                self._index += 1
                cut.seq = intent.seq
                cut.taken = True
                if ckpt is not None:
                    cut.part = Batch(cut.key, cut.seq, cut.span, ckpt.path)
                yield cut
            dead = ckpt.load(takeover.key) if ckpt is not None else None
            if dead is not None and dead.position is not None:  # None: it never committed
                source.committed(dead.position)  # its last commit may not have been acked
            rest = source.without(takeover.span, [i.span for i in intents])
            if rest is not None:
                cut = _Cut(self._index, source.reread(rest), self._key)
                self._index += 1
                cut.taken = True
                yield cut

    def _serial(self) -> Iterator[RunResult]:
        stop = self._stop
        while not stop.is_set():
            for taken in self._takeovers():
                yield self._serial_one(taken, intent=taken.key == self._key)
            cut = self._cut()
            if cut is None:
                return
            yield self._serial_one(cut)

    def _threaded(self, cuts: Iterator[_Cut] | None) -> Iterator[RunResult]:
        """Batches on threads, committed in source order; Saves wait for their turn."""
        pending: collections.deque[tuple[_Cut, concurrent.futures.Future[RunResult]]]
        pending = collections.deque()
        turn = _Turn(done=True)

        def ready() -> bool:
            return bool(pending) and pending[0][1].done()

        def submit(cut: _Cut, intent: bool = True) -> None:
            nonlocal turn
            if cuts is None:
                self._prepare(cut, intent=intent)
            cut.gate = turn
            cut.turn = turn = _Turn()
            pending.append((cut, pool.submit(self._execute, cut)))
            self._in_flight = len(pending)

        def fail_from(cut: _Cut) -> None:
            """Nothing from ``cut`` on may store or commit: open their gates as failed."""
            self._broken = True
            for later in (cut, *(c for c, _ in pending)):
                if later.turn is not None:
                    later.turn.fail()

        def settle() -> RunResult:
            """Wait for the oldest batch, commit it and count it."""
            cut, future = pending.popleft()
            self._in_flight = len(pending)
            try:
                result = future.result()
            except BaseException as exc:
                if not future.done():  # a second Ctrl-C while waiting: not the batch's
                    pending.appendleft((cut, future))
                    raise
                fail_from(cut)
                if isinstance(exc, KisFlowError):
                    self._note(cut, exc)
                raise
            try:
                self._commit(cut)
            except BaseException:
                fail_from(cut)
                raise
            return self._deliver(cut, result)

        with concurrent.futures.ThreadPoolExecutor(
            self.max_in_flight, thread_name_prefix=f"kisflow-stream-{self.flow.name}"
        ) as pool:
            try:
                while True:
                    if cuts is None:
                        taken = list(self._takeovers())
                        if taken:
                            while pending:
                                yield settle()
                            for cut in taken:
                                submit(cut, intent=cut.key == self._key)
                                yield settle()
                    try:
                        while len(pending) < self.max_in_flight and not self._stop.is_set():
                            new = next(cuts, None) if cuts is not None else self._cut(ready)
                            if new is None or new is _EMPTY_CUT:
                                break
                            submit(new)
                            del new
                    except Exception:
                        # The source (or a bad record) failed: the batches before it
                        # still commit and come out, then the error.
                        while pending:
                            yield settle()
                        raise
                    if not pending:
                        break
                    yield settle()
            finally:
                # Never abandon a batch half-run: cancel those not started, commit the
                # rest in order as they finish, up to the first that failed (or was
                # cancelled: nothing after it may store, so its gate opens as failed).
                failed = self._broken
                for cut, future in pending:
                    if failed or future.cancel():
                        failed = True
                        if cut.turn is not None:
                            cut.turn.fail()
                failed = self._broken
                while pending:
                    cut, future = pending.popleft()
                    concurrent.futures.wait([future])
                    broke = future.cancelled() or future.exception() is not None
                    if failed or broke:
                        fail_from(cut)
                        failed = True
                        continue
                    self._commit(cut)
                if cuts is not None and hasattr(cuts, "close"):
                    cuts.close()

    def _install_sigint(self) -> Callable[[], None]:
        """Make the first Ctrl-C a clean stop; a second one interrupts as usual."""
        if not self._handle_sigint or threading.current_thread() is not threading.main_thread():
            return _nothing
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: types.FrameType | None) -> None:
            if not self._working:  # in the caller's code: what it would get without us
                if callable(previous):
                    previous(signum, frame)
                    return
                if previous == signal.SIG_IGN:
                    return
                raise KeyboardInterrupt
            if self._stop.is_set():
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            logger.bind(flow=self.flow.name).warning(
                "Ctrl-C: finishing the batches in flight, press again to abort"
            )
            self._stop.set()
            if self._reading:
                # A source that blocks (a tail, a queue) would hold the stop until rows
                # come: cut the read short; the rows read so far still run as a batch.
                raise _ReadInterrupted

        signal.signal(signal.SIGINT, on_sigint)

        def restore() -> None:
            if threading.current_thread() is not threading.main_thread():
                return  # a stream dropped in another thread: its handler defers anyway
            if signal.getsignal(signal.SIGINT) is on_sigint:
                signal.signal(signal.SIGINT, previous)

        return restore


def _nothing() -> None:
    """What restores no signal handler."""


class AsyncStream(_Base, AsyncIterator[RunResult]):
    """An async micro-batch stream: ``async for result in flow.astream(source)``.

    Up to ``max_in_flight`` batches run concurrently on the caller's event loop (sync
    stages in threads, async stages awaited), committed in source order. A durable
    source and the checkpoint are called on one helper thread, so a blocking read never
    holds up the loop. Cancelling the consuming task lets the batches in flight finish
    (and commit) before ``CancelledError`` propagates. Options are those of ``Stream``.
    """

    def __init__(
        self,
        flow: StreamFlow,
        source: Iterable[Any] | AsyncIterable[Any] | Source,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_in_flight: int = 1,
        ctx: Any = None,
        progress: bool | None = None,
        options: RunOptions | None = None,
        max_wait: float | None = None,
        idle_timeout: float | None = None,
        checkpoint: str | os.PathLike[str] | Checkpoint | None = None,
        delivery: str | None = None,
        record_sink: DeadLetterSink | None = None,
        saves: SaveStages | None = None,
    ) -> None:
        super().__init__(
            flow,
            source,
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            options=merge(options, ctx=ctx),
            progress=progress,
            max_wait=max_wait,
            idle_timeout=idle_timeout,
            checkpoint=checkpoint,
            delivery=delivery,
            record_sink=record_sink,
            saves=saves,
        )
        self._gen: AsyncGenerator[RunResult, None] | None = None
        self._io: concurrent.futures.ThreadPoolExecutor | None = None

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> RunResult:
        if self._gen is None:
            self._gen = self._generate()
        return await anext(self._gen)

    async def aclose(self) -> None:
        """End the stream now (after the batches in flight)."""
        self._stop.set()
        if self._gen is not None:
            await self._gen.aclose()
        else:
            self.interrupted = True

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def _plain_async(self) -> bool:
        """A plain (sync or async) iterable with no time bounds: read on the loop."""
        return self._plain and self.max_wait is None and self.idle_timeout is None

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the helper thread (source and checkpoint calls)."""
        io = self._io
        assert io is not None
        return await asyncio.get_running_loop().run_in_executor(io, fn, *args)

    async def _plain_cuts(self) -> AsyncGenerator[_Cut, None]:
        """A plain iterable's batches, read on the loop (an async one row by row)."""
        source = self._plain_source
        size = self.batch_size
        assert not isinstance(source, Source)
        if isinstance(source, AsyncIterable):
            ait = aiter(source)
            while True:
                rows: list[Any] = []
                async for row in ait:
                    rows.append(row)
                    if len(rows) >= size:
                        break
                if not rows:
                    return
                yield self._plain_cut(rows)
        else:
            it = iter(source)
            while True:
                rows = list(itertools.islice(it, size))
                if not rows:
                    return
                yield self._plain_cut(rows)

    def _plain_cut(self, rows: list[Any]) -> _Cut:
        cut = _Cut(self._index, Chunk(rows, [self._first, len(rows)]), self._key)
        self._index += 1
        return cut

    async def _aexecute(self, cut: _Cut) -> RunResult:
        """Run one batch on the loop, as its partition and behind its gate if any."""
        _context.STREAMING.set(True)  # the task's own context: window stages keep windows
        if cut.part is not None:
            _context.PARTITION.set(cut.part)
        if cut.gate is not None:
            _context.GATE.set(cut.gate)
        if cut.headers is not None and tracing.enabled():
            with tracing.parent_from_headers(cut.headers):
                return await self.flow.arun(cut.rows, self.options)
        return await self.flow.arun(cut.rows, self.options)

    async def _generate(self) -> AsyncGenerator[RunResult, None]:
        self._open_bar()
        plain = self._plain_async
        pending: collections.deque[tuple[_Cut, asyncio.Task[RunResult]]]
        pending = collections.deque()
        cuts = self._plain_cuts() if plain else None
        turn = _Turn(done=True)
        gated = self.max_in_flight > 1

        def ready() -> bool:
            return bool(pending) and pending[0][1].done()

        async def next_cut() -> _Cut | None:
            if cuts is not None:
                return await anext(cuts, None)
            cut: _Cut | None = await self._call(self._cut, ready)
            if cut is None or cut is _EMPTY_CUT:
                return cut
            await self._call(self._prepare, cut)
            return cut

        def submit(cut: _Cut) -> None:
            nonlocal turn
            if gated:
                cut.gate = turn
                cut.turn = turn = _Turn()
            pending.append((cut, asyncio.create_task(self._aexecute(cut))))
            self._in_flight = len(pending)

        async def commit(cut: _Cut) -> None:
            try:
                if plain:
                    self._commit(cut)
                else:
                    await self._call(self._commit, cut)
            except BaseException:
                fail_all(cut)
                raise

        def fail_all(cut: _Cut) -> None:
            """Nothing from ``cut`` on may store or commit: open their gates as failed."""
            self._broken = True
            for later in (cut, *(c for c, _ in pending)):
                if later.turn is not None:
                    later.turn.fail()

        self._io = (
            None
            if plain
            else concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix=f"kisflow-source-{self.flow.name}"
            )
        )
        try:
            replays = [] if plain else await self._call(self._open)
            for cut in replays:
                await self._call(functools.partial(self._prepare, cut, intent=False))
                try:
                    result = await self._aexecute(cut)
                except KisFlowError as exc:
                    self._note(cut, exc)
                    raise
                await commit(cut)
                yield self._deliver(cut, result)
            while True:
                try:
                    while len(pending) < self.max_in_flight and not self._stop.is_set():
                        new = await next_cut()
                        if new is None or new is _EMPTY_CUT:
                            break
                        submit(new)
                        del new
                except Exception:
                    # The source (or a bad record) failed: the batches before it still
                    # commit and come out, then the error.
                    while pending:
                        cut, task = pending.popleft()
                        try:
                            result = await task
                        except BaseException as exc:
                            fail_all(cut)
                            if isinstance(exc, KisFlowError):
                                self._note(cut, exc)
                            raise
                        await commit(cut)
                        yield self._deliver(cut, result)
                    raise
                if not pending:
                    break
                cut, task = pending[0]
                try:
                    result = await asyncio.shield(task)
                except BaseException as exc:
                    if isinstance(exc, asyncio.CancelledError) and not task.done():
                        raise
                    pending.popleft()
                    self._in_flight = len(pending)
                    fail_all(cut)
                    if isinstance(exc, KisFlowError):
                        self._note(cut, exc)
                    raise
                pending.popleft()
                self._in_flight = len(pending)
                await commit(cut)
                yield self._deliver(cut, result)
        except (asyncio.CancelledError, GeneratorExit):
            self._stop.set()  # cancelled, or closed (aclose, the loop's shutdown)
            raise
        finally:
            # Let started batches finish so no Save stage is left with half a batch, and
            # commit them in order as they finish, up to the first that failed.
            failed = self._broken
            while pending:
                cut, task = pending.popleft()
                if failed and cut.turn is not None:
                    cut.turn.fail()
                await asyncio.wait([task])
                # Always retrieve the outcome, so no task's error goes unretrieved.
                broke = task.cancelled() or task.exception() is not None
                if failed or broke:
                    failed = True
                    fail_all(cut)
                    continue
                await commit(cut)
            if cuts is not None:
                await cuts.aclose()
            if self._io is not None:
                try:
                    await self._call(self._close_source)
                finally:
                    self._io.shutdown(wait=False)
            self._finish()


@attrs.frozen
class StreamSummary:
    """What ``run_jsonl_stream`` did: rows read and written, batches, and whether it stopped."""

    rows_in: int
    rows_out: int
    batches: int
    interrupted: bool


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel = 4
_SHOWN.maxstring = _SHOWN.maxother = 80
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 8


def _shown(row: Any) -> str:
    """A short rendering of ``row`` for a message, whatever the row (deep, huge, odd)."""
    try:
        return _SHOWN.repr(row)
    except Exception as exc:  # a __repr__ that raises, an int too long to print
        return f"<{type(row).__name__} row: repr raised {type(exc).__name__}>"


def _excerpt(line: str | bytes) -> str:
    """The first 200 characters of an input line, for a message."""
    if isinstance(line, bytes):
        line = line[:200].decode("utf-8", "backslashreplace")
    return repr(line[:200])


class _JsonLines:
    """The rows of a JSON-lines input, with the line number of each row in flight.

    ``pending`` holds ``(line, row)`` for the rows read and not yet in a finished batch,
    so an error in a batch can name input lines; ``release`` drops a finished batch's,
    which keeps the record as bounded as the stream's own batches.
    """

    def __init__(self, flow: str, lines: Iterable[str] | Iterable[bytes], source: str) -> None:
        self.flow = flow
        self.source = source
        self.pending: collections.deque[tuple[int, Any]] = collections.deque()
        self._lines = lines

    def rows(self) -> Iterator[Any]:
        """Each non-blank line's row; a line that is no row raises ``InputLineError``."""
        pending = self.pending
        lines: Iterable[str | bytes] = self._lines
        for number, line in enumerate(lines, 1):
            row = self._decode(number, line)
            if row is not BLANK:
                pending.append((number, row))
                yield row

    def _decode(self, number: int, line: str | bytes) -> Any:
        try:
            return decode_json_line(line, first=number == 1)
        except BadLine as exc:
            raise InputLineError(
                f"flow {self.flow!r}: {self.source} line {number} {exc.problem}; "
                f"line was {_excerpt(exc.text.strip())}",
                flow=self.flow,
                source=self.source,
                line=number,
            ) from exc.__cause__

    def release(self, count: int) -> tuple[int, int]:
        """Forget the first ``count`` rows (a finished batch); their first and last lines."""
        pending = self.pending
        first = last = pending[0][0]
        for _ in range(count):
            last = pending.popleft()[0]
        return first, last

    def explain(self, exc: KisFlowError, index: int, first: int, most: int) -> KisFlowError:
        """``exc`` from stream batch ``index`` (its first source row ``first``, at most
        ``most`` rows) told in input lines: the stream's batch note becomes one naming
        lines, and a source row that would not convert is named by its line.

        The failed batch is the oldest not yet finished, so its rows lead ``pending``.
        """
        batch = list(itertools.islice(self.pending, most))
        if not batch:
            return exc
        lines = f"in stream batch {index + 1} ({self.source} lines {batch[0][0]}..{batch[-1][0]})"
        notes: list[str] | None = getattr(exc, "__notes__", None)
        stream_note = _Slot(index, first, len(batch)).text
        if notes is not None and stream_note in notes:
            notes[notes.index(stream_note)] = lines
        if not isinstance(exc, RowConversionError) or exc.stage is None:
            return exc
        at = exc.row_index
        if not 0 <= at < len(batch) or batch[at][1] is not exc.row:
            return exc  # a row some stage made, not one read from the input
        line = batch[at][0]
        message = str(exc)
        token = f": row {at} "
        if token in message:
            message = message.replace(token, f": {self.source} line {line} ", 1)
        else:
            message = f"{self.source} line {line}: {message}"
        named = RowConversionError(
            message, flow=exc.flow, stage=exc.stage, row_index=at, row=exc.row
        )
        for note in notes or ():
            named.add_note(note)
        return named


def run_jsonl_stream(
    flow: StreamFlow,
    lines: Iterable[str] | Iterable[bytes],
    out: TextIO,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_in_flight: int = 1,
    ctx: Any = None,
    progress: bool | None = None,
    source: str = "<input>",
    on_result: Callable[[RunResult], None] | None = None,
    options: RunOptions | None = None,
) -> StreamSummary:
    """Stream JSON lines through ``flow`` and write each output row as a JSON line.

    Meant for the CLI's ``run`` on large inputs: memory stays bounded by the batch size,
    and Ctrl-C stops after the current batch with ``interrupted=True`` in the summary.
    ``lines`` are text, or bytes read as UTF-8 (so a line that is not UTF-8 is named by
    its number); blank lines are skipped. Rows are written as the built-in connectors
    write them (attrs and dataclass rows as objects), a batch's rows once they all are
    JSON; ``on_result`` sees each batch's result after its rows are written (for
    per-stage summaries), and should not keep it if memory is to stay bounded.
    ``options`` (with ``ctx=`` overriding its ctx) applies to every batch.

    Errors name input lines: a failed batch's note says ``in stream batch 3 (rows.jsonl
    lines 41..60)`` (batches counted from 1), and an input row a stage cannot convert is
    named by its line (``rows.jsonl line 45 cannot be converted to ...``).

    Raises:
        InputLineError: a line is not UTF-8 or not JSON, or nests too deep or holds too
            long an integer to read (naming ``source`` and the line number).
        RunError: a stage failed (its own error, naming the flow, stage and stream
            batch), or an output row is not JSON (naming the batch).
    """
    reader = _JsonLines(flow.name, lines, source)
    stream = Stream(
        flow,
        reader.rows(),
        batch_size=batch_size,
        max_in_flight=max_in_flight,
        ctx=ctx,
        progress=progress,
        options=options,
    )
    rows_out = 0
    done = 0
    while True:
        try:
            result = next(stream)
        except StopIteration:
            break
        except KisFlowError as exc:
            named = reader.explain(exc, stream.batches_done, stream.rows_done, batch_size)
            if named is exc:
                raise
            raise named from exc.__cause__
        first, last = reader.release(stream.rows_done - done)
        done = stream.rows_done
        texts: list[str] = []
        for row in as_rows(result.output):  # a columnar stage's DataFrame: its rows
            try:
                texts.append(to_json_text(row))
            except (TypeError, ValueError, RecursionError) as exc:
                raise RunError(
                    f"flow {flow.name!r}: an output row of stream batch {stream.batches_done} "
                    f"({source} lines {first}..{last}) is not JSON: {type(exc).__name__}: "
                    f"{exc}; row was {_shown(row)}",
                    flow=flow.name,
                ) from exc
        for text in texts:
            out.write(text)
            out.write("\n")
        del texts
        rows_out += len(result.output)
        out.flush()
        if on_result is not None:
            on_result(result)
    return StreamSummary(
        rows_in=stream.rows_done,
        rows_out=rows_out,
        batches=stream.batches_done,
        interrupted=stream.interrupted,
    )
