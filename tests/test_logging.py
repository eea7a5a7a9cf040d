"""Logging: loguru, disabled for the library by default, nothing per row."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loguru import logger

import kisflow as kf


@pytest.fixture
def messages() -> Iterator[list[str]]:
    """Enable kisflow's logger into a list sink for one test, then disable it again."""
    out: list[str] = []
    sink = logger.add(out.append, level="TRACE", format="{level} {message}")
    try:
        yield out
    finally:
        logger.remove(sink)
        logger.disable("kisflow")


class TestLogging:
    """The application decides whether kisflow logs; the library adds no sink."""

    def test_disabled_by_default(self, messages: list[str]) -> None:
        kf.faas("A", lambda flow: flow.commit_row_batch(flow.input()))
        kf.FlowBuilder("f").calculate("A").build().run([1])
        assert messages == []

    def test_enabled_logs_do_not_grow_with_rows(self, messages: list[str]) -> None:
        logger.enable("kisflow")
        kf.faas("A", lambda flow: flow.commit_row_batch(flow.input()))
        flow = kf.FlowBuilder("f").calculate("A").build()
        registered = len(messages)
        assert any("registered faas 'A'" in m for m in messages)
        flow.run(range(10))
        small = len(messages) - registered
        flow.run(range(10_000))
        big = len(messages) - registered - small
        assert big == small
        assert not [m for m in messages if m.startswith("INFO")]
