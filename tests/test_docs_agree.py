"""The README and the docs agree with each other and with the Makefile and the tests."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _run_target_examples() -> list[str]:
    """The example folders ``make run`` runs, read from the Makefile's recipe."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert recipe is not None, "the Makefile has a run target"
    return re.findall(r"\b(examples/\w+)/main\.py", recipe.group(1))


def _make_run_lines(text: str) -> list[str]:
    """The lines of a page that say what ``make run`` does."""
    return [line for line in text.splitlines() if "make run" in line]


class TestMakeRun:
    """Every description of ``make run`` names the examples the Makefile runs."""

    def test_the_makefile_runs_three_examples(self) -> None:
        assert _run_target_examples() == [
            "examples/quickstart",
            "examples/yaml_sqlite",
            "examples/stream_checkpoint",
        ]

    def test_every_description_names_them(self) -> None:
        examples = _run_target_examples()
        for page in (ROOT / "README.md", DOCS / "index.md", DOCS / "getting-started.md"):
            lines = _make_run_lines(page.read_text(encoding="utf-8"))
            assert lines, f"{page.name} describes make run"
            described = [line for line in lines if "examples/" in line or "two examples" in line]
            assert described, f"{page.name}: {lines}"
            for line in lines:
                if "#" in line:  # a shell comment says what the command does
                    comment = line.split("#", 1)[1]
                    assert all(e in comment for e in examples), f"{page.name}: {line!r}"
                    assert "installs" in comment, f"{page.name}: {line!r}"


class TestReadme:
    """The README says what a new user needs before the tests and the command line."""

    README = (ROOT / "README.md").read_text(encoding="utf-8")

    def test_says_where_the_kisflow_command_is(self) -> None:
        assert ".venv/bin/kisflow" in self.README
        assert "python -P -m kisflow" in self.README

    def test_says_some_tests_read_kisflows_configs_from_shared(self) -> None:
        conftest = (ROOT / "tests" / "conftest.py").read_text(encoding="utf-8")
        assert 'ROOT.parent / "shared" / "kisflow-go"' in conftest  # what the README says
        assert "`../shared/kisflow-go/`" in self.README
        assert "KISFLOW_GO_CONF" in self.README
        assert "skipped" in self.README


class TestSourceMust:
    """``source.must`` is described one way everywhere: recorded, not checked, as in KisFlow."""

    def test_no_page_says_rows_must_carry_the_fields(self) -> None:
        """Each table row describing it (config-format, api) says it is not checked."""
        pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
        for page in pages:
            text = page.read_text(encoding="utf-8")
            for line in text.splitlines():
                if line.startswith("|") and ("source.must" in line or "must=()" in line):
                    assert "not checked" in line, f"{page.name}: {line!r}"
                    assert "every row must carry" not in line, f"{page.name}: {line!r}"

    def test_the_config_format_says_kisflow_does_not_check_it_either(self) -> None:
        text = (DOCS / "config-format.md").read_text(encoding="utf-8")
        (line,) = [line for line in text.splitlines() if line.startswith("| `source.must`")]
        assert "recorded, not checked (KisFlow does not check it either)" in line
