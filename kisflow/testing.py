"""Test helpers: an isolated pool per test, and a check that a FaaS registers as typed.

Installed as a pytest plugin (entry point ``kisflow``), so the ``kf_pool`` fixture is
available in any test suite once kisflow is installed::

    def test_my_flow(kf_pool):
        kisflow.faas("Double", double)       # lands in kf_pool, not the global pool
        assert_faas_registered("Double", rows=int)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from kisflow import _pool
from kisflow._pool import FaaSSpec, Pool
from kisflow.rows import describe_type

__all__ = ["assert_faas_registered", "isolated_pool", "kf_pool"]

_UNSET: Any = object()


@contextmanager
def isolated_pool() -> Iterator[Pool]:
    """A fresh, empty pool that is the current pool inside the ``with`` block."""
    with _pool.use(Pool()) as pool:
        yield pool


@pytest.fixture
def kf_pool() -> Iterator[Pool]:
    """A fresh pool for one test: registrations never leak between tests."""
    with isolated_pool() as pool:
        yield pool


def assert_faas_registered(
    name: str,
    *,
    rows: Any = _UNSET,
    output: Any = _UNSET,
    takes_ctx: bool | None = None,
    pool: Pool | None = None,
) -> FaaSSpec:
    """Assert FaaS ``name`` is registered, with the given row and output types.

    Raises:
        AssertionError: naming what was expected and what is registered.
    """
    spec = (pool or _pool.current()).get_faas(name)
    if spec is None:
        raise AssertionError(f"faas {name!r} is not registered")
    sig = spec.signature
    if rows is not _UNSET and sig.rows_type != rows:
        raise AssertionError(
            f"faas {name!r} takes rows of {describe_type(sig.rows_type)}, "
            f"expected {describe_type(rows)}"
        )
    if output is not _UNSET and sig.output_type != output:
        got = "undeclared" if sig.output_type is None else describe_type(sig.output_type)
        raise AssertionError(f"faas {name!r} outputs {got}, expected {describe_type(output)}")
    if takes_ctx is not None and sig.takes_ctx != takes_ctx:
        raise AssertionError(
            f"faas {name!r} {'takes' if sig.takes_ctx else 'does not take'} a context argument"
        )
    return spec
