"""The one bridge from sync code to async code: a private event loop, never a nested one.

A sync run with an async stage, and a sync stream over an async source, both run the
coroutine on a private ``asyncio.Runner``; inside a running event loop that would block
the loop (or fail), so both refuse with a ``RunError`` pointing at the async form.
"""

from __future__ import annotations

import asyncio

from kisflow.errors import RunError

__all__ = ["private_runner"]


def private_runner(message: str, *, flow: str, stage: str | None = None) -> asyncio.Runner:
    """A new private event loop, or ``RunError(message)`` when one is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.Runner()
    raise RunError(message, flow=flow, stage=stage)
