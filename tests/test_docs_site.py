"""The documentation site (``make docs``): it builds in strict mode, and strict mode fails.

The site is built once, as ``make docs`` builds it (``mkdocs build --strict``), into a
temporary folder; its pages, API reference and example-flow pictures are checked. Then a
copy of the docs with one fault each (a broken link, a broken anchor, a missing API
reference, a page left out of the nav) must fail to build, naming the fault.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import docs_hooks  # noqa: E402  (tools/ is not a package)


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=config.parent,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built from this tree as ``make docs`` builds it."""
    out = tmp_path_factory.mktemp("site")
    done = _build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    return out


def _nav_pages(nav: list[object]) -> list[str]:
    pages: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            pages.extend(_nav_pages(value))
        else:
            pages.append(str(value))
    return pages


class TestSite:
    """Every page of docs/ is in the site, with the generated reference and pictures."""

    def test_every_page_of_docs_is_in_the_nav(self) -> None:
        config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
        listed = set(_nav_pages(config["nav"]))
        on_disk = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
        assert sorted(on_disk - listed) == []

    def test_pages_are_built(self, site: Path) -> None:
        for page in ("index.html", "tracing/index.html", "logging/index.html"):
            assert (site / page).is_file(), page
        tracing = (site / "tracing" / "index.html").read_text(encoding="utf-8")
        assert 'id="a-parent-from-a-messages-headers"' in tracing

    def test_the_api_reference_has_every_public_module(self, site: Path) -> None:
        modules = docs_hooks.public_modules()
        assert {"kisflow", "kisflow.tracing", "kisflow.runlog", "kisflow.testing"} <= set(modules)
        for module in modules:
            page = site / "reference" / module / "index.html"
            assert page.is_file(), module
            assert f'id="{module}' in page.read_text(encoding="utf-8"), module
        tracing = (site / "reference" / "kisflow.tracing" / "index.html").read_text("utf-8")
        assert 'id="kisflow.tracing.parent_from_headers"' in tracing
        assert "A <code>with</code> block whose runs are children" in tracing
        package = (site / "reference" / "kisflow" / "index.html").read_text("utf-8")
        assert 'id="kisflow.FlowBuilder"' in package

    def test_the_example_flows_are_drawn(self, site: Path) -> None:
        pictures = sorted(p.name for p in (site / "images" / "flows").glob("*.svg"))
        assert {
            "dask--scores-on-dask.svg",
            "observability--Scores.svg",
            "quickstart--CalStuAvgScore.svg",
            "stream--access-log.svg",
            "stream--ticks.svg",
            "yaml_sqlite--CalcAndSave.svg",
            "yaml_sqlite--LoadAndSummarise.svg",
        } <= set(pictures)
        building = {
            folder.name
            for folder in (ROOT / "examples").iterdir()
            if (folder / "conf").is_dir()
            or any("FlowBuilder(" in f.read_text("utf-8") for f in folder.glob("*.py"))
        }
        assert {name.split("--")[0] for name in pictures} == building
        svg = (site / "images" / "flows" / "quickstart--CalStuAvgScore.svg").read_text("utf-8")
        assert svg.lstrip().startswith("<?xml")
        texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
        assert texts == [
            "CalStuAvgScore",
            "AvgStuScore",
            "Calculate (C)",
            "ScoreIn &#45;&gt; ScoreOut",
            "PrintStuAvgScore",
            "Expand (E)",
            "ScoreOut &#45;&gt; Any",
        ]
        page = (site / "examples" / "index.html").read_text(encoding="utf-8")
        shown = re.findall(r'<img alt="flow [^"]+" src="\.\./images/flows/([^"]+)"', page)
        assert shown == pictures

    def test_the_builder_chains_are_read_from_source(self) -> None:
        import ast

        tree = ast.parse('x = kf.FlowBuilder("f").verify("A").dead_letters(d).save("B").build()')
        chains = [docs_hooks._builder_chain(n) for n in ast.walk(tree)]
        assert [c for c in chains if c] == [("f", [("verify", "A"), ("save", "B")])]

    def test_the_changelog_is_a_page(self, site: Path) -> None:
        index = (site / "index.html").read_text(encoding="utf-8")
        assert 'href="changelog/"' in index
        assert (site / "changelog" / "index.html").is_file()


def _copy(tmp: Path) -> Path:
    """A copy of what the site is built from, to break."""
    for name in ("docs", "tools", "examples"):
        shutil.copytree(ROOT / name, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("mkdocs.yml", "CHANGELOG.md"):
        shutil.copy(ROOT / name, tmp / name)
    return tmp / "mkdocs.yml"


class TestStrict:
    """Strict mode turns each kind of fault into a failed build that names it."""

    @pytest.mark.parametrize(
        ("fault", "expected"),
        [
            ("[gone](no-such-page.md)", "contains a link 'no-such-page.md'"),
            ("[gone](logging.md#no-such-heading)", "'#no-such-heading'"),
            ("\n::: kisflow.no_such_module\n", "kisflow.no_such_module could not be found"),
        ],
    )
    def test_a_fault_fails_the_build(self, tmp_path: Path, fault: str, expected: str) -> None:
        config = _copy(tmp_path)
        page = tmp_path / "docs" / "tracing.md"
        page.write_text(page.read_text(encoding="utf-8") + "\n" + fault + "\n", encoding="utf-8")
        done = _build(config, tmp_path / "out")
        assert done.returncode != 0
        assert expected in done.stderr

    def test_a_page_left_out_of_the_nav_fails(self, tmp_path: Path) -> None:
        config = _copy(tmp_path)
        (tmp_path / "docs" / "orphan.md").write_text("# Orphan\n", encoding="utf-8")
        done = _build(config, tmp_path / "out")
        assert done.returncode != 0
        assert "orphan.md" in done.stderr
