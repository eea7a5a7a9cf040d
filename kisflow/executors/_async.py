"""The async driver: the same ``Run.calls()`` loop as ``run_sync``, awaited.

Async FaaS are awaited on the caller's loop, async generators drained there, and sync
FaaS (plain or generators) run in a worker thread through ``asyncio.to_thread`` so a
blocking stage never stalls the loop. Only one thread touches the run's buffer at a time:
the loop waits for the thread before ``end`` reads it.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from kisflow._pool import FaaSSpec
from kisflow._run import Run
from kisflow._signature import CallKind
from kisflow.result import RunResult

__all__ = ["run_async"]


async def run_async(run: Run) -> RunResult:
    """Carry out ``run`` on the running event loop; mirrors ``kisflow._run.run_sync``.

    Retries wait with ``asyncio.sleep``, so a stage backing off never blocks the loop.
    """
    try:
        for spec, args in run.calls():
            while True:
                try:
                    await _call(run, spec, args)
                    break
                except Exception as exc:
                    delay = run.retry(exc)
                    if delay is None:
                        raise run.failure(exc)  # noqa: B904 - failure() chains exc itself
                    if delay > 0:
                        await asyncio.sleep(delay)
        return run.result()
    finally:
        run.close()


async def _call(run: Run, spec: FaaSSpec, args: tuple[Any, ...]) -> None:
    """Call one FaaS without blocking the loop and collect what it commits or yields."""
    kind = spec.signature.kind
    if kind is CallKind.ASYNC:
        await spec.fn(*args)
        return
    if kind is CallKind.ASYNC_GENERATOR:
        out = spec.fn(*args)
    elif kind is CallKind.GENERATOR:
        buf = run.buffer
        await asyncio.to_thread(lambda: buf.extend(spec.fn(*args)))
        return
    else:
        out = await asyncio.to_thread(spec.fn, *args)
    if out is None:
        return
    # An unannotated callable may still hand back a coroutine or a generator.
    if inspect.isasyncgen(out):
        buf = run.buffer
        async for row in out:
            buf.append(row)
    elif inspect.isawaitable(out):
        await out
    elif inspect.isgenerator(out):
        buf = run.buffer
        gen = out
        await asyncio.to_thread(lambda: buf.extend(gen))
    else:
        raise TypeError(
            f"a FaaS must return None (commit rows with flow.commit_row), got {type(out).__name__}"
        )
