"""The windowed submit/collect loop the process pool and Dask share.

An executor gives the loop a ``Backend``: how to submit one partition, wait for some of
those running to finish, read and release a finished one, and give up on the rest. The
loop keeps at most ``window`` partitions in flight (so a huge list of descriptions is
never all queued at once), settles each finished task as soon as it is done (results are
reported as they complete, returned in partition order) and turns every failure into a
``KisFlowError``: a partition's own failure or a lost task into ``PartitionError``, an
error of the caller's callbacks or iterable into ``RunError``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from kisflow.errors import KisFlowError, PartitionError, RunError
from kisflow.executors._partition import Partition, PartitionResult, result_of
from kisflow.executors._ship import loads
from kisflow.progress import progress_bar

__all__ = ["Backend", "run_window", "settle"]

F = TypeVar("F")


class Backend(Protocol[F]):
    """An executor as the loop sees it; ``F`` is its future type."""

    def submit(self, partition: Partition) -> F:
        """Start running ``partition``; the future resolves to the worker's bytes."""

    def wait(self, running: Collection[F]) -> Iterable[F]:
        """Block until at least one of ``running`` is done; return those done."""

    def result(self, future: F) -> bytes:
        """The worker's bytes of a done future (raises if the task was lost)."""

    def release(self, future: F) -> None:
        """Forget a settled future (Dask: so a dead worker's result is not recomputed)."""

    def stop(self, running: Collection[F]) -> None:
        """Cancel what has not started and let the rest end (the loop is leaving)."""


def settle(flow: str, partition: Partition, get: Callable[[], bytes]) -> PartitionResult:
    """The result of a finished task (``get`` is its ``future.result``), or PartitionError.

    A task that returned a failure, or that the executor lost (its worker process died,
    too often for Dask), raises ``PartitionError`` naming flow and partition.
    """
    try:
        data = get()
    except Exception as exc:  # BrokenProcessPool, distributed.KilledWorker, ...
        raise _lost(flow, partition, "failed on", exc) from exc
    try:
        value = loads(data)
    except Exception as exc:  # a row class this process cannot import, say
        raise _lost(flow, partition, "could not unpickle the result of", exc) from exc
    try:
        return result_of(value)
    except TypeError as exc:
        raise _lost(flow, partition, "got no result for", exc) from exc


def _lost(flow: str, partition: Partition, what: str, exc: BaseException) -> PartitionError:
    """A task the executor lost, or whose result is unusable, as ``PartitionError``."""
    return PartitionError(
        f"flow {flow!r} {what} partition {partition.key!r} (index "
        f"{partition.index}): {type(exc).__name__}: {exc}",
        flow=flow,
        stage=None,
        partition=partition.key,
    )


def _callback_error(flow: str, what: str, exc: Exception) -> RunError:
    return RunError(f"flow {flow!r}: {what} raised {type(exc).__name__}: {exc}", flow=flow)


def run_window(
    flow: str,
    partitions: Iterable[Partition],
    backend: Backend[F],
    window: int,
    *,
    on_result: Callable[[PartitionResult], None] | None,
    on_error: Callable[[PartitionError], None] | None,
    progress: bool | None,
) -> list[PartitionResult]:
    """Run every partition through ``backend``, at most ``window`` at once; in order.

    Without ``on_error`` the first failure is raised and the partitions not yet started
    are cancelled; with it, each ``PartitionError`` goes to it and the others go on.
    """
    loop = _Window(flow, iter(partitions), on_result, on_error)
    running: dict[F, Partition] = {}
    loop.bar = progress_bar(desc=f"{flow} partitions", enabled=progress)
    try:
        while True:
            while len(running) < window and (part := loop.next_partition()) is not None:
                try:
                    future = backend.submit(part)
                except Exception as exc:  # a broken or shut-down pool, a closed client
                    err = _lost(flow, part, "could not submit", exc)
                    err.__cause__ = exc
                    loop.failed(err)
                    continue
                running[future] = part
            if not running:
                break
            for future in backend.wait(running):
                part = running.pop(future)
                try:
                    loop.settled(part, functools.partial(backend.result, future))
                finally:
                    backend.release(future)
    finally:
        backend.stop(running)
        loop.bar.close()
    return [loop.results[i] for i in sorted(loop.results)]


class _Window:
    """The loop's bookkeeping: the partitions left, results so far, the caller's hooks."""

    def __init__(
        self,
        flow: str,
        todo: Iterator[Partition],
        on_result: Callable[[PartitionResult], None] | None,
        on_error: Callable[[PartitionError], None] | None,
    ) -> None:
        self.flow = flow
        self.todo = todo
        self.on_result = on_result
        self.on_error = on_error
        self.results: dict[int, PartitionResult] = {}
        self.bar: Any = None

    def next_partition(self) -> Partition | None:
        """The next partition to submit, None when all were (a failing iterable raises)."""
        try:
            return next(self.todo, None)
        except KisFlowError:
            raise
        except Exception as exc:  # the caller's iterable or key= raised
            raise _callback_error(self.flow, "reading the partitions", exc) from exc

    def settled(self, partition: Partition, get: Callable[[], bytes]) -> None:
        """Keep (and report) a finished task's result, or hand its failure on."""
        try:
            value = settle(self.flow, partition, get)
        except PartitionError as err:
            self.failed(err)
            return
        self.results[value.partition.index] = value
        self.bar.update(1)
        self._call("on_result", self.on_result, value)

    def failed(self, err: PartitionError) -> None:
        """Give ``err`` to ``on_error``, or raise it without one."""
        if self.on_error is None:
            raise err
        self._call("on_error", self.on_error, err)

    def _call(self, what: str, hook: Callable[[Any], None] | None, value: Any) -> None:
        if hook is None:
            return
        try:
            hook(value)
        except KisFlowError:
            raise
        except Exception as exc:
            raise _callback_error(self.flow, what, exc) from exc
