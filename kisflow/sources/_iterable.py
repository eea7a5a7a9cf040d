"""Plain iterables, generators and async iterables as a stream source (not durable).

A Python iterator has no position that survives a restart, so a stream over one is at
most once, as before durable streams. Without ``reader=True`` rows are pulled in the
stream's own thread (an async iterable on a private event loop), which costs nothing per
row; with it a reader thread pulls the iterator into a queue of at most ``ahead`` rows,
so ``read(max_rows, timeout)`` returns after ``timeout`` seconds even when a slow
generator holds its next row back: that is how ``max_wait`` bounds a batch's latency.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

from kisflow._aio import private_runner
from kisflow.errors import SourceError
from kisflow.sources._base import Chunk, Source

__all__ = ["IterableSource"]

_END = object()
"""What the reader thread queues once the iterator is exhausted."""


class _Raised:
    """What the reader thread queues when the iterator raised: raised again by ``read``."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class IterableSource(Source):
    """An iterable (or async iterable) of rows as a ``Source``; spans are row ranges.

    ``span`` is ``[first, count]`` (the rows' indexes from 0), ``position(span)`` the
    rows read up to its end. ``reread`` is impossible (``SourceError``): nothing is kept.
    """

    durable = False

    def __init__(
        self,
        rows: Iterable[Any] | AsyncIterable[Any],
        *,
        name: str = "iterable",
        reader: bool = False,
        ahead: int = 10_000,
        flow: str | None = None,
    ) -> None:
        self._rows = rows
        self._name = name
        self._reader = reader
        self._ahead = max(1, ahead)
        self._flow = flow
        self._read = 0
        self._done = False
        self._it: Iterator[Any] | None = None
        self._kept: list[Any] = []
        self._ait: AsyncIterator[Any] | None = None
        self._runner: asyncio.Runner | None = None
        self._queue: queue.Queue[Any] | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    @property
    def key(self) -> str:
        """``iterable:<name>``: not a key to resume by, a name for messages."""
        return f"iterable:{self._name}"

    def open(self, position: Any | None) -> None:
        """Start pulling the iterable (``position`` must be None: nothing to resume)."""
        if position is not None:
            raise SourceError(
                f"{self.key} cannot resume from position {position!r}: a plain iterable "
                f"keeps no position",
                source=self.key,
                position=position,
                flow=self._flow,
            )
        rows = self._rows
        if self._reader:
            self._queue = queue.Queue(self._ahead)
            target = self._pump_async if isinstance(rows, AsyncIterable) else self._pump
            self._thread = threading.Thread(
                target=target, name=f"kisflow-source-{self._name}", daemon=True
            )
            self._thread.start()
        elif isinstance(rows, AsyncIterable):
            self._runner = private_runner(
                f"flow {self._flow!r}: flow.stream() over an async source was iterated "
                f"inside a running event loop; use 'async for ... in flow.astream(source)'",
                flow=self._flow or "",
            )
            self._ait = aiter(rows)
        else:
            self._it = iter(rows)

    # -- the reader thread -------------------------------------------------------------

    def _put(self, item: Any) -> bool:
        """Queue ``item``, waiting for room; False once the source is closing."""
        q = self._queue
        assert q is not None
        while not self._closing.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self) -> None:
        assert not isinstance(self._rows, AsyncIterable)
        try:
            for row in self._rows:
                if not self._put(row):
                    return
        except BaseException as exc:  # handed to the stream's thread by read()
            self._put(_Raised(exc))
            return
        self._put(_END)

    def _pump_async(self) -> None:
        rows = self._rows
        assert isinstance(rows, AsyncIterable)

        async def pump() -> None:
            async for row in rows:
                if not self._put(row):
                    return

        try:
            asyncio.run(pump())
        except BaseException as exc:
            self._put(_Raised(exc))
            return
        self._put(_END)

    # -- reading -----------------------------------------------------------------------

    def read(self, max_rows: int, timeout: float) -> Chunk | None:
        """Up to ``max_rows`` rows; with a reader thread, waiting at most ``timeout``."""
        if self._done:
            return None
        if self._queue is not None:
            rows = self._take(max_rows, timeout)
        elif self._ait is not None:
            assert self._runner is not None
            rows = self._runner.run(self._afill(max_rows))
        else:
            assert self._it is not None
            rows = list(itertools.islice(self._it, max_rows))
            if len(rows) < max_rows:
                self._done = True
        if not rows:
            if self._done:
                return None
            return Chunk([], [self._read, 0])
        first = self._read
        self._read += len(rows)
        return Chunk(rows, [first, len(rows)])

    def take(self, max_rows: int) -> list[Any]:
        """Up to ``max_rows`` rows pulled in this thread (the stream's fast path).

        If pulling raises (a Ctrl-C cutting a blocked read short), the rows pulled before
        are kept for ``take_kept``.
        """
        if self._done:
            return []
        assert self._it is not None
        kept = self._kept
        kept.extend(itertools.islice(self._it, max_rows - len(kept)))
        self._kept = []
        if len(kept) < max_rows:
            self._done = True
        self._read += len(kept)
        return kept

    def take_kept(self) -> list[Any]:
        """The rows a ``take`` cut short had pulled (they still form a batch)."""
        kept, self._kept = self._kept, []
        self._read += len(kept)
        return kept

    @property
    def blocks(self) -> bool:
        """Whether a read blocks until rows come (no reader thread: the timeout is moot)."""
        return self._queue is None

    @property
    def rows_list(self) -> list[Any] | None:
        """The rows when they are a plain ``list`` pulled in the stream's thread (no
        reader): the stream's fast path cuts its batches by slicing it, a C copy that
        never blocks, instead of pulling its iterator row by row. Else None."""
        rows = self._rows
        return rows if type(rows) is list and not self._reader else None

    @property
    def iterator(self) -> Iterator[Any]:
        """The sync iterator pulled in the stream's thread (after ``open``, no reader)."""
        assert self._it is not None
        return self._it

    def _take(self, max_rows: int, timeout: float) -> list[Any]:
        q = self._queue
        assert q is not None
        rows: list[Any] = []
        try:
            item = q.get(timeout=timeout) if timeout > 0 else q.get_nowait()
            while True:
                if item is _END:
                    self._done = True
                    break
                if isinstance(item, _Raised):
                    self._done = True
                    if rows:  # hand the rows read first; raise on the next read
                        self._queue = queue.Queue(1)
                        self._queue.put(item)
                        self._done = False
                        break
                    raise item.exc
                rows.append(item)
                if len(rows) >= max_rows:
                    break
                item = q.get_nowait()
        except queue.Empty:
            pass
        return rows

    async def _afill(self, max_rows: int) -> list[Any]:
        ait = self._ait
        assert ait is not None
        rows: list[Any] = []
        async for row in ait:
            rows.append(row)
            if len(rows) >= max_rows:
                return rows
        self._done = True
        return rows

    def reread(self, span: Any) -> Chunk:
        """Impossible: an iterator's rows are gone once read."""
        raise SourceError(
            f"{self.key} cannot read rows {span!r} again: a plain iterable is not durable",
            source=self.key,
            position=span,
            flow=self._flow,
        )

    def position(self, span: Any) -> Any:
        """The rows read up to the end of ``span``."""
        first, count = span
        return int(first) + int(count)

    def close(self) -> None:
        """Stop the reader thread (it ends at its next row) and the private loop."""
        self._closing.set()
        self._done = True
        if self._runner is not None:
            runner, self._runner = self._runner, None
            ait, self._ait = self._ait, None
            aclose = getattr(ait, "aclose", None)
            try:
                if aclose is not None:
                    runner.run(aclose())
            finally:
                runner.close()
