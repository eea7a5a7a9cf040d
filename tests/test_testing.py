"""Tests for kisflow.testing: the ``kf_pool`` pytest fixture and ``assert_faas_registered``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import attrs
import pytest

import kisflow as kf
from kisflow import _pool
from kisflow._pool import Pool
from kisflow.testing import assert_faas_registered, isolated_pool


@attrs.define
class In:
    """Input rows."""

    n: int


@attrs.define
class Out:
    """Output rows."""

    total: int


def summed(flow: kf.Flow, rows: list[In]) -> None:
    """Declared output ``Out``."""


def with_ctx(ctx: Any, flow: kf.Flow, rows: list[int]) -> None:
    """Takes a context."""


class TestAssertFaaSRegistered:
    """The helper passes on a match and fails naming what was expected and what is there."""

    def test_passes_and_returns_the_spec(self) -> None:
        kf.faas("Sum", summed, output=Out)
        spec = assert_faas_registered("Sum", rows=In, output=Out, takes_ctx=False)
        assert spec.fn is summed
        assert assert_faas_registered("Sum") is spec

    def test_ctx(self) -> None:
        kf.faas("Ctx", with_ctx)
        assert assert_faas_registered("Ctx", rows=int, output=None, takes_ctx=True).fn is with_ctx

    def test_not_registered(self) -> None:
        with pytest.raises(AssertionError, match=r"^faas 'Nope' is not registered$"):
            assert_faas_registered("Nope")

    def test_wrong_rows(self) -> None:
        kf.faas("Sum", summed, output=Out)
        with pytest.raises(
            AssertionError, match=r"^faas 'Sum' takes rows of In, expected dict\[str, int\]$"
        ):
            assert_faas_registered("Sum", rows=dict[str, int])

    def test_wrong_output(self) -> None:
        kf.faas("Sum", summed, output=Out)
        with pytest.raises(AssertionError, match=r"^faas 'Sum' outputs Out, expected In$"):
            assert_faas_registered("Sum", output=In)

    def test_undeclared_output(self) -> None:
        kf.faas("Sum", summed)
        with pytest.raises(AssertionError, match=r"^faas 'Sum' outputs undeclared, expected Out$"):
            assert_faas_registered("Sum", output=Out)

    def test_wrong_ctx(self) -> None:
        kf.faas("Sum", summed)
        kf.faas("Ctx", with_ctx)
        with pytest.raises(AssertionError, match=r"^faas 'Sum' does not take a context argument$"):
            assert_faas_registered("Sum", takes_ctx=True)
        with pytest.raises(AssertionError, match=r"^faas 'Ctx' takes a context argument$"):
            assert_faas_registered("Ctx", takes_ctx=False)

    def test_explicit_pool(self) -> None:
        other = Pool()
        other.faas("Sum", summed)
        assert assert_faas_registered("Sum", rows=In, pool=other).fn is summed
        with pytest.raises(AssertionError, match="not registered"):
            assert_faas_registered("Sum")


class TestKfPoolFixture:
    """``kf_pool`` gives a test its own current pool, gone after the test."""

    def test_registrations_land_in_kf_pool(self, kf_pool: Pool, pool: Pool) -> None:
        assert _pool.current() is kf_pool
        assert kf_pool is not pool
        kf.faas("Sum", summed)
        assert kf_pool.faas_names() == ["Sum"]
        assert pool.faas_names() == []

    def test_isolated_pool_inside_kf_pool(self, kf_pool: Pool) -> None:
        kf.faas("Outer", summed)
        with isolated_pool() as inner:
            assert kf.pool.faas_names() == []
            kf.faas("Inner", summed)
        assert _pool.current() is kf_pool
        assert kf_pool.faas_names() == ["Outer"]
        assert inner.faas_names() == ["Inner"]


class TestPytestPlugin:
    """kisflow.testing is the ``kisflow`` pytest11 entry point, so any suite gets ``kf_pool``."""

    def test_entry_point(self) -> None:
        found = [ep for ep in entry_points(group="pytest11") if ep.name == "kisflow"]
        assert [ep.value for ep in found] == ["kisflow.testing"]

    def test_fixture_isolates_in_a_foreign_suite(self, tmp_path: Path) -> None:
        (tmp_path / "test_user.py").write_text(
            textwrap.dedent(
                """
                import kisflow as kf
                from kisflow.testing import assert_faas_registered

                def double(flow: kf.Flow, rows: list[int]) -> None:
                    flow.commit_row_batch(r * 2 for r in rows)

                def test_first(kf_pool):
                    kf.faas("Double", double)
                    assert_faas_registered("Double", rows=int)
                    assert kf.FlowBuilder("F").calculate("Double").build().run([2]).output == [4]

                def test_second_sees_nothing(kf_pool):
                    assert kf.pool.faas_names() == []
                    kf.faas("Double", double)  # no DuplicateRegistrationError

                def test_global_pool_untouched():
                    assert kf.pool.faas_names() == []
                """
            )
        )
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "3 passed" in proc.stdout
