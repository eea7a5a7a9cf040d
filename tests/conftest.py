"""Shared test setup: every test gets a fresh, isolated pool unless it opts out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kisflow._pool import Pool
from kisflow.testing import isolated_pool


@pytest.fixture(autouse=True)
def pool() -> Iterator[Pool]:
    """A fresh current pool for each test, so registrations never leak between tests."""
    with isolated_pool() as p:
        yield p
