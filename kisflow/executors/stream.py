"""Micro-batch streams: run a flow over an endless source with bounded memory.

``Stream`` (sync) and ``AsyncStream`` read the source ``batch_size`` rows at a time, run
each batch as one ordinary run of the flow and yield its ``RunResult`` in source order.
At most ``max_in_flight`` batches are read and not yet yielded, so memory is bounded by
``batch_size * max_in_flight`` rows whatever the source's length.

Both cut the source with one ``_BatchWindow`` (a sync source is read in bulk, an async
one row by row) and hand results out through one accounting path (``_Base``): counters,
progress bar, the error note naming the batch, and the ``batch_done`` observer event.
A stream needs of its flow only a name and ``run``/``arun`` (``StreamFlow``), so this
module sits below ``kisflow.flow``, which builds streams.

Stopping is always between batches, never inside one, so a Save stage never sees half a
batch: ``stop()`` (from any thread), Ctrl-C (SIGINT, when the stream runs in the main
thread) or cancelling the task of an ``AsyncStream`` let the batches in flight finish,
then end the stream; ``interrupted`` and ``rows_done`` say what happened.

``run_jsonl_stream`` (the CLI's ``run``) streams JSON lines through a ``Stream`` and
tells its errors in input lines: a line that is no row (``InputLineError``), the line of
a row that does not convert, the lines a failed batch held.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import json
import reprlib
import signal
import threading
import types
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import attrs
from loguru import logger

from kisflow import observers
from kisflow._aio import private_runner
from kisflow.columnar import as_rows
from kisflow.connectors._base import to_json_text
from kisflow.errors import ConfigError, InputLineError, KisFlowError, RowConversionError, RunError
from kisflow.options import RunOptions, merge
from kisflow.progress import progress_bar
from kisflow.result import RunResult

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "AsyncStream",
    "InputLineError",
    "Stream",
    "StreamFlow",
    "StreamSummary",
    "run_jsonl_stream",
]

DEFAULT_BATCH_SIZE = 10_000
"""Rows per micro-batch when none is given: large enough to amortise a run's set-up."""


class StreamFlow(Protocol):
    """What a stream needs of a flow (``kisflow.Flow`` is one): a name and its runs."""

    @property
    def name(self) -> str:
        """The flow's name, for messages, logs and observers."""

    def run(self, rows: Iterable[Any], options: RunOptions | None = None, /) -> RunResult:
        """Run the flow once on ``rows`` with ``options``."""

    async def arun(self, rows: Iterable[Any], options: RunOptions | None = None, /) -> RunResult:
        """Run the flow once on ``rows`` with ``options``, on the running event loop."""


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


@attrs.frozen
class _Slot:
    """Where a batch sits in the source: its number (from 0), first row and size."""

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


class _BatchWindow:
    """Cuts a source into numbered batches of at most ``size`` rows: both streams' reader.

    Rows go in in bulk (``fill``, from a sync iterator) or one at a time (``add``, from
    an async one); ``cut`` hands out the rows gathered so far with their ``_Slot``.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._rows: list[Any] = []
        self._index = 0
        self._first = 0

    def add(self, row: Any) -> bool:
        """Take one row; True when the batch is full."""
        self._rows.append(row)
        return len(self._rows) >= self.size

    def fill(self, rows: Iterator[Any]) -> None:
        """Take rows until the batch is full or ``rows`` ends.

        If reading raises (a Ctrl-C cutting a blocked read short), the rows read before
        stay in the batch.
        """
        self._rows.extend(itertools.islice(rows, self.size - len(self._rows)))

    async def afill(self, rows: AsyncIterator[Any]) -> None:
        """Take rows from an async iterator until the batch is full or it ends."""
        if len(self._rows) >= self.size:
            return
        async for row in rows:
            if self.add(row):
                break

    def cut(self) -> tuple[_Slot, list[Any]] | None:
        """The batch gathered so far and its slot, or None when nothing was read."""
        rows = self._rows
        if not rows:
            return None
        slot = _Slot(self._index, self._first, len(rows))
        self._index += 1
        self._first += len(rows)
        self._rows = []
        return slot, rows


class _ReadInterrupted(BaseException):
    """Raised by the SIGINT handler to cut short a read blocked in the source."""


class _Base:
    """What the sync and async streams share: options, counters, stop flag, bar, results."""

    def __init__(
        self,
        flow: StreamFlow,
        source: Iterable[Any] | AsyncIterable[Any],
        *,
        batch_size: int,
        max_in_flight: int,
        options: RunOptions,
        progress: bool | None,
    ) -> None:
        _check_sizes(flow.name, batch_size, max_in_flight)
        self.flow = flow
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.options = options
        """The options every batch runs with (``ctx=`` given to the stream included)."""
        self.rows_done = 0
        """Source rows of the batches finished and handed out so far."""
        self.batches_done = 0
        """Batches finished and handed out so far."""
        self.interrupted = False
        """True when the stream ended early through ``stop()``, Ctrl-C or cancellation."""
        self._source = source
        self._window = _BatchWindow(batch_size)
        self._stop = threading.Event()
        self._progress = progress
        self._bar: tqdm[Any] | None = None

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

    def _run(self, rows: list[Any]) -> RunResult:
        """One batch, run in this thread."""
        return self.flow.run(rows, self.options)

    async def _arun(self, rows: list[Any]) -> RunResult:
        """One batch, run on the event loop."""
        return await self.flow.arun(rows, self.options)

    def _open_bar(self) -> None:
        if self._bar is None:
            self._bar = progress_bar(desc=self.flow.name, enabled=self._progress)

    def _deliver(self, slot: _Slot, result: RunResult) -> RunResult:
        """Count a finished batch and tell the observers, as it is handed out."""
        self.rows_done += slot.size
        self.batches_done += 1
        if self._bar is not None:
            self._bar.update(slot.size)
        watching = observers.active() + self.options.observers
        if watching:
            observers.notify(watching, "batch_done", self.flow.name, slot.index + 1, result)
        return result

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


class Stream(_Base, Iterator[RunResult]):
    """A sync micro-batch stream over an iterable (or async iterable) of rows.

    Iterate it to get each batch's ``RunResult`` in source order. With
    ``max_in_flight > 1`` batches run on that many threads (useful when stages wait
    on I/O); results still come out in order. ``options`` (a ``RunOptions``) applies to
    every batch; ``ctx=`` overrides its ``ctx``.
    """

    def __init__(
        self,
        flow: StreamFlow,
        source: Iterable[Any] | AsyncIterable[Any],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_in_flight: int = 1,
        ctx: Any = None,
        progress: bool | None = None,
        handle_sigint: bool = True,
        options: RunOptions | None = None,
    ) -> None:
        super().__init__(
            flow,
            source,
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            options=merge(options, ctx=ctx),
            progress=progress,
        )
        self._handle_sigint = handle_sigint
        self._reading = False
        self._gen: Generator[RunResult, None, None] | None = None

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> RunResult:
        if self._gen is None:
            self._gen = self._generate()
        # Ctrl-C is a clean stop only while the stream works; in the caller's loop body
        # (between batches, where nothing is half done) it interrupts as usual.
        restore = self._install_sigint()
        try:
            return next(self._gen)
        finally:
            restore()

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

    def _batches(self) -> Generator[tuple[_Slot, list[Any]], None, None]:
        """The source's batches until it ends or a stop is asked for."""
        if isinstance(self._source, AsyncIterable):
            yield from self._batches_of_async(self._source)
            return
        it = iter(self._source)
        while not self._stop.is_set():
            self._reading = True
            try:
                self._window.fill(it)
            except _ReadInterrupted:
                pass
            finally:
                self._reading = False
            batch = self._window.cut()
            if batch is None:
                return
            yield batch

    def _batches_of_async(
        self, source: AsyncIterable[Any]
    ) -> Generator[tuple[_Slot, list[Any]], None, None]:
        """An async source read on a private event loop, one batch at a time."""
        runner = private_runner(
            f"flow {self.flow.name!r}: flow.stream() over an async source was "
            f"iterated inside a running event loop; use 'async for ... in "
            f"flow.astream(source)'",
            flow=self.flow.name,
        )
        with runner:
            ait = aiter(source)
            while not self._stop.is_set():
                runner.run(self._window.afill(ait))
                batch = self._window.cut()
                if batch is None:
                    return
                yield batch

    def _generate(self) -> Generator[RunResult, None, None]:
        self._open_bar()
        try:
            if self.max_in_flight == 1:
                yield from self._serial()
            else:
                yield from self._threaded()
        finally:
            self._finish()

    def _serial(self) -> Iterator[RunResult]:
        for slot, rows in self._batches():
            try:
                result = self._run(rows)
            except KisFlowError as exc:
                slot.note(exc)
                raise
            del rows
            yield self._deliver(slot, result)
            if self._stop.is_set():
                break

    def _threaded(self) -> Iterator[RunResult]:
        pending: collections.deque[tuple[_Slot, concurrent.futures.Future[RunResult]]]
        pending = collections.deque()
        batches = self._batches()
        with concurrent.futures.ThreadPoolExecutor(
            self.max_in_flight, thread_name_prefix=f"kisflow-stream-{self.flow.name}"
        ) as pool:
            try:
                while True:
                    while len(pending) < self.max_in_flight and not self._stop.is_set():
                        batch = next(batches, None)
                        if batch is None:
                            break
                        pending.append((batch[0], pool.submit(self._run, batch[1])))
                        del batch
                    if not pending:
                        break
                    slot, future = pending.popleft()
                    try:
                        result = future.result()
                    except KisFlowError as exc:
                        slot.note(exc)
                        raise
                    yield self._deliver(slot, result)
            finally:
                # Never abandon a batch half-run: cancel those not started, wait for the rest.
                for _, future in pending:
                    future.cancel()
                batches.close()

    def _install_sigint(self) -> Callable[[], None]:
        """Make the first Ctrl-C a clean stop; a second one interrupts as usual."""
        if not self._handle_sigint or threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: types.FrameType | None) -> None:
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
            if signal.getsignal(signal.SIGINT) is on_sigint:
                signal.signal(signal.SIGINT, previous)

        return restore


class AsyncStream(_Base, AsyncIterator[RunResult]):
    """An async micro-batch stream: ``async for result in flow.astream(source)``.

    Up to ``max_in_flight`` batches run concurrently on the caller's event loop (sync
    stages in threads, async stages awaited). Cancelling the consuming task lets the
    batches in flight finish before ``CancelledError`` propagates. ``options`` and
    ``ctx=`` are those of ``Stream``.
    """

    def __init__(
        self,
        flow: StreamFlow,
        source: Iterable[Any] | AsyncIterable[Any],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_in_flight: int = 1,
        ctx: Any = None,
        progress: bool | None = None,
        options: RunOptions | None = None,
    ) -> None:
        super().__init__(
            flow,
            source,
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            options=merge(options, ctx=ctx),
            progress=progress,
        )
        self._gen: AsyncGenerator[RunResult, None] | None = None

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

    async def _batches(self) -> AsyncGenerator[tuple[_Slot, list[Any]], None]:
        """The source's batches until it ends (the caller checks for a stop)."""
        source = self._source
        window = self._window
        if isinstance(source, AsyncIterable):
            ait = aiter(source)
            while True:
                await window.afill(ait)
                if (batch := window.cut()) is None:
                    return
                yield batch
        else:
            it = iter(source)
            while True:
                window.fill(it)
                if (batch := window.cut()) is None:
                    return
                yield batch

    async def _generate(self) -> AsyncGenerator[RunResult, None]:
        self._open_bar()
        pending: collections.deque[tuple[_Slot, asyncio.Task[RunResult]]]
        pending = collections.deque()
        batches = self._batches()
        try:
            while True:
                while len(pending) < self.max_in_flight and not self._stop.is_set():
                    batch = await anext(batches, None)
                    if batch is None:
                        break
                    pending.append((batch[0], asyncio.create_task(self._arun(batch[1]))))
                    del batch
                if not pending:
                    break
                slot, task = pending[0]
                try:
                    result = await asyncio.shield(task)
                except KisFlowError as exc:
                    pending.popleft()
                    slot.note(exc)
                    raise
                pending.popleft()
                yield self._deliver(slot, result)
        except asyncio.CancelledError:
            self._stop.set()
            raise
        finally:
            # Let started batches finish so no Save stage is left with half a batch.
            if pending:
                await asyncio.gather(*(t for _, t in pending), return_exceptions=True)
            await batches.aclose()
            self._finish()


@attrs.frozen
class StreamSummary:
    """What ``run_jsonl_stream`` did: rows read and written, batches, and whether it stopped."""

    rows_in: int
    rows_out: int
    batches: int
    interrupted: bool


_BOM = "\ufeff"

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
            if row is not _BLANK:
                pending.append((number, row))
                yield row

    def _decode(self, number: int, line: str | bytes) -> Any:
        where = f"flow {self.flow!r}: {self.source} line {number}"
        if isinstance(line, bytes):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputLineError(
                    f"{where} is not UTF-8 (byte {exc.start + 1}: {exc.reason}); "
                    f"line was {_excerpt(line.strip())}",
                    flow=self.flow,
                    source=self.source,
                    line=number,
                ) from exc
        else:
            text = line
        if number == 1 and text.startswith(_BOM):
            text = text[1:]
        text = text.strip()
        if not text:
            return _BLANK
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            problem = f"is not JSON: {exc.msg} at column {exc.colno}"
            cause: BaseException = exc
        except RecursionError as exc:
            problem = "is nested too deeply to read as JSON"
            cause = exc
        except ValueError as exc:  # e.g. an integer beyond Python's 4,300 digits
            problem = f"cannot be read as JSON: {exc}"
            cause = exc
        raise InputLineError(
            f"{where} {problem}; line was {_excerpt(text)}",
            flow=self.flow,
            source=self.source,
            line=number,
        ) from cause

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


_BLANK = object()
"""What ``_JsonLines._decode`` returns for a blank line."""


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
