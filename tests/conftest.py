"""Shared test setup: every test gets a fresh, isolated pool unless it opts out."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kisflow._pool import Pool
from kisflow.testing import isolated_pool


@pytest.fixture(autouse=True)
def pool() -> Iterator[Pool]:
    """A fresh current pool for each test, so registrations never leak between tests."""
    with isolated_pool() as p:
        yield p


ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "tests" / "resources"


def _kisflow_go_dir(sub: str) -> Path:
    base = os.environ.get("KISFLOW_GO_CONF")
    if base is not None:
        folder = Path(base) if sub == "load_conf" else Path(base).parent / sub
    else:
        folder = ROOT.parent / "shared" / "kisflow-go" / sub
    if not folder.is_dir():
        pytest.skip(
            f"KisFlow's own configs are not at {folder}; set KISFLOW_GO_CONF to the "
            f"load_conf folder of a KisFlow checkout to run these tests"
        )
    return folder


@pytest.fixture
def kisflow_go_conf() -> Path:
    """KisFlow's own test config folder (``load_conf/``), read in place; skips if absent."""
    return _kisflow_go_dir("load_conf")


@pytest.fixture
def kisflow_go_export() -> Path:
    """KisFlow's own export folder (``export_conf/``), read in place; skips if absent."""
    return _kisflow_go_dir("export_conf")
