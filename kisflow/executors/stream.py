"""Micro-batch streams: run a flow over an endless source with bounded memory.

``Stream`` (sync) and ``AsyncStream`` read the source ``batch_size`` rows at a time, run
each batch as one ordinary run of the flow and yield its ``RunResult`` in source order.
At most ``max_in_flight`` batches are read and not yet yielded, so memory is bounded by
``batch_size * max_in_flight`` rows whatever the source's length.

Stopping is always between batches, never inside one, so a Save stage never sees half a
batch: ``stop()`` (from any thread), Ctrl-C (SIGINT, when the stream runs in the main
thread) or cancelling the task of an ``AsyncStream`` let the batches in flight finish,
then end the stream; ``interrupted`` and ``rows_done`` say what happened.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import json
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
from typing import TYPE_CHECKING, Any, TextIO

import attrs
from loguru import logger

from kisflow.connectors._base import to_json_text
from kisflow.errors import ConfigError, KisFlowError, RunError
from kisflow.progress import progress_bar
from kisflow.result import RunResult

if TYPE_CHECKING:
    from tqdm import tqdm

    from kisflow.flow import Flow

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "AsyncStream",
    "Stream",
    "StreamSummary",
    "run_jsonl_stream",
]

DEFAULT_BATCH_SIZE = 10_000
"""Rows per micro-batch when none is given: large enough to amortise a run's set-up."""


def _check_sizes(flow: Flow, batch_size: int, max_in_flight: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(
            f"flow {flow.name!r}: stream batch_size must be a positive int, got {batch_size!r}",
            key="batch_size",
        )
    if not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise ConfigError(
            f"flow {flow.name!r}: stream max_in_flight must be a positive int, "
            f"got {max_in_flight!r}",
            key="max_in_flight",
        )


def run_batch(flow: Flow, batch: list[Any], ctx: Any = None) -> RunResult:
    """Run ``flow`` once on ``batch`` (the layers are freed as soon as the run ends)."""
    return flow.run(batch, ctx=ctx)


async def _arun_batch(flow: Flow, batch: list[Any], ctx: Any) -> RunResult:
    return await flow.arun(batch, ctx=ctx)


class _ReadInterrupted(BaseException):
    """Raised by the SIGINT handler to cut short a read blocked in the source."""


def _batch_note(number: int, first_row: int, size: int) -> str:
    return f"in stream batch {number} (source rows {first_row}..{first_row + size - 1})"


async def _take(source: AsyncIterator[Any], n: int) -> list[Any]:
    batch: list[Any] = []
    async for row in source:
        batch.append(row)
        if len(batch) >= n:
            break
    return batch


class _Base:
    """What the sync and async streams share: counters, stop flag and progress bar."""

    def __init__(
        self,
        flow: Flow,
        *,
        batch_size: int,
        max_in_flight: int,
        ctx: Any,
        progress: bool | None,
    ) -> None:
        _check_sizes(flow, batch_size, max_in_flight)
        self.flow = flow
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.ctx = ctx
        self.rows_done = 0
        """Source rows of the batches finished and handed out so far."""
        self.batches_done = 0
        """Batches finished and handed out so far."""
        self.interrupted = False
        """True when the stream ended early through ``stop()``, Ctrl-C or cancellation."""
        self._stop = threading.Event()
        self._progress = progress
        self._bar: tqdm[Any] | None = None

    def stop(self) -> None:
        """Ask the stream to end after the batches in flight (thread-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return self._stop.is_set()

    def _open_bar(self) -> None:
        if self._bar is None:
            self._bar = progress_bar(desc=self.flow.name, enabled=self._progress)

    def _done(self, rows: int) -> None:
        self.rows_done += rows
        self.batches_done += 1
        if self._bar is not None:
            self._bar.update(rows)

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
    on I/O); results still come out in order.
    """

    def __init__(
        self,
        flow: Flow,
        source: Iterable[Any] | AsyncIterable[Any],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_in_flight: int = 1,
        ctx: Any = None,
        progress: bool | None = None,
        handle_sigint: bool = True,
        options: Any = None,
    ) -> None:
        if options is not None and ctx is None:
            ctx = options.ctx
        super().__init__(
            flow, batch_size=batch_size, max_in_flight=max_in_flight, ctx=ctx, progress=progress
        )
        self._source = source
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

    def _batches(self) -> Generator[list[Any], None, None]:
        source = self._source
        size = self.batch_size
        if isinstance(source, AsyncIterable):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                raise RunError(
                    f"flow {self.flow.name!r}: flow.stream() over an async source was "
                    f"iterated inside a running event loop; use 'async for ... in "
                    f"flow.astream(source)'",
                    flow=self.flow.name,
                )
            runner = asyncio.Runner()
            try:
                ait = aiter(source)
                while not self._stop.is_set() and (batch := runner.run(_take(ait, size))):
                    yield batch
            finally:
                runner.close()
        else:
            it = iter(source)
            while not self._stop.is_set():
                chunk: list[Any] = []
                self._reading = True
                try:
                    # extend() keeps the rows read before a Ctrl-C cut a blocked read short.
                    chunk.extend(itertools.islice(it, size))
                except _ReadInterrupted:
                    pass
                finally:
                    self._reading = False
                if not chunk:
                    return
                yield chunk

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
        first = 0
        for number, batch in enumerate(self._batches()):
            try:
                result = run_batch(self.flow, batch, self.ctx)
            except KisFlowError as exc:
                exc.add_note(_batch_note(number, first, len(batch)))
                raise
            size = len(batch)
            del batch
            first += size
            self._done(size)
            yield result
            if self._stop.is_set():
                break

    def _threaded(self) -> Iterator[RunResult]:
        pending: collections.deque[tuple[int, int, int, concurrent.futures.Future[RunResult]]]
        pending = collections.deque()
        batches = self._batches()
        first = 0
        number = 0
        with concurrent.futures.ThreadPoolExecutor(
            self.max_in_flight, thread_name_prefix=f"kisflow-stream-{self.flow.name}"
        ) as pool:
            try:
                while True:
                    while len(pending) < self.max_in_flight and not self._stop.is_set():
                        batch = next(batches, None)
                        if batch is None:
                            break
                        future = pool.submit(run_batch, self.flow, batch, self.ctx)
                        pending.append((number, first, len(batch), future))
                        number += 1
                        first += len(batch)
                        del batch
                    if not pending:
                        break
                    n, start, size, future = pending.popleft()
                    try:
                        result = future.result()
                    except KisFlowError as exc:
                        exc.add_note(_batch_note(n, start, size))
                        raise
                    self._done(size)
                    yield result
            finally:
                # Never abandon a batch half-run: cancel those not started, wait for the rest.
                for *_, future in pending:
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
    batches in flight finish before ``CancelledError`` propagates.
    """

    def __init__(
        self,
        flow: Flow,
        source: Iterable[Any] | AsyncIterable[Any],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_in_flight: int = 1,
        ctx: Any = None,
        progress: bool | None = None,
        options: Any = None,
    ) -> None:
        if options is not None and ctx is None:
            ctx = options.ctx
        super().__init__(
            flow, batch_size=batch_size, max_in_flight=max_in_flight, ctx=ctx, progress=progress
        )
        self._source = source
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

    async def _batches(self) -> AsyncGenerator[list[Any], None]:
        source = self._source
        size = self.batch_size
        if isinstance(source, AsyncIterable):
            ait = aiter(source)
            while batch := await _take(ait, size):
                yield batch
        else:
            it = iter(source)
            while batch := list(itertools.islice(it, size)):
                yield batch

    async def _generate(self) -> AsyncGenerator[RunResult, None]:
        self._open_bar()
        pending: collections.deque[tuple[int, int, int, asyncio.Task[RunResult]]]
        pending = collections.deque()
        batches = self._batches()
        first = 0
        number = 0
        try:
            while True:
                while len(pending) < self.max_in_flight and not self._stop.is_set():
                    batch = await anext(batches, None)
                    if batch is None:
                        break
                    task = asyncio.create_task(_arun_batch(self.flow, batch, self.ctx))
                    pending.append((number, first, len(batch), task))
                    number += 1
                    first += len(batch)
                    del batch
                if not pending:
                    break
                n, start, size, task = pending[0]
                try:
                    result = await asyncio.shield(task)
                except KisFlowError as exc:
                    pending.popleft()
                    exc.add_note(_batch_note(n, start, size))
                    raise
                pending.popleft()
                self._done(size)
                yield result
        except asyncio.CancelledError:
            self._stop.set()
            raise
        finally:
            # Let started batches finish so no Save stage is left with half a batch.
            if pending:
                await asyncio.gather(*(t for *_, t in pending), return_exceptions=True)
            await batches.aclose()
            self._finish()


@attrs.frozen
class StreamSummary:
    """What ``run_jsonl_stream`` did: rows read and written, batches, and whether it stopped."""

    rows_in: int
    rows_out: int
    batches: int
    interrupted: bool


def _decode_lines(flow: Flow, lines: Iterable[str], source: str) -> Iterator[Any]:
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            yield json.loads(text)
        except json.JSONDecodeError as exc:
            raise RunError(
                f"flow {flow.name!r}: {source} line {number} is not JSON: {exc.msg}; "
                f"line was {text[:200]!r}",
                flow=flow.name,
            ) from exc


def run_jsonl_stream(
    flow: Flow,
    lines: Iterable[str],
    out: TextIO,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_in_flight: int = 1,
    ctx: Any = None,
    progress: bool | None = None,
    source: str = "<input>",
    on_result: Callable[[RunResult], None] | None = None,
) -> StreamSummary:
    """Stream JSON lines through ``flow`` and write each output row as a JSON line.

    Meant for the CLI's ``run`` on large inputs: memory stays bounded by the batch size,
    and Ctrl-C stops after the current batch with ``interrupted=True`` in the summary.
    Rows are written as the built-in connectors write them (attrs and dataclass rows as
    objects); ``on_result`` sees each batch's result after its rows are written (for
    per-stage summaries), and should not keep it if memory is to stay bounded.

    Raises:
        RunError: a line is not JSON (naming ``source`` and the line number), or a
            stage failed (naming the flow, stage and stream batch).
    """
    stream = Stream(
        flow,
        _decode_lines(flow, lines, source),
        batch_size=batch_size,
        max_in_flight=max_in_flight,
        ctx=ctx,
        progress=progress,
    )
    rows_out = 0
    for result in stream:
        for row in result.output:
            out.write(to_json_text(row))
            out.write("\n")
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
