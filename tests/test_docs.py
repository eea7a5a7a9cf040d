"""The documentation's Python examples run as shown, so the docs cannot drift from the code.

Every fenced ```python block of the pages in ``PAGES`` is run on its own, as a module of
its own, inside a fresh ``kisflow.testing.isolated_pool()``. A ```python block followed
directly (only blank lines between) by an ```output block must print exactly that text.
Blocks that are deliberately not runnable are fenced ```text or ```pycon.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import attrs
import pytest
from loguru import logger

import kisflow
from kisflow import _pool
from kisflow.testing import isolated_pool

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

PAGES = (
    "index.md",
    "getting-started.md",
    "concepts.md",
    "api.md",
    "kisflow-compat.md",
    "testing.md",
    "logging.md",
    "tracing.md",
    "streaming.md",
    "async.md",
    "dask.md",
    "extending.md",
    "dashboard.md",
    "columnar.md",
    "state.md",
)
"""The pages about the core engine whose examples this module runs."""

PENDING_PAGES = frozenset(
    {
        "config-format.md",
        "connectors.md",
        "cli.md",
        "metrics.md",
        "errors.md",
    }
)
"""Pages other engineers write in parallel; index.md links them, they may not exist yet."""

_FENCE = re.compile(
    r"^(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL
)


@attrs.frozen
class Block:
    """One ```python block: where it is, its code and the output it must print (if given)."""

    page: str
    line: int
    code: str
    output: str | None = None
    pytest: bool = False
    """Fenced ```python pytest: also run as a test file by pytest, with kisflow's plugin."""

    @property
    def id(self) -> str:
        """``page:line``, the test id and the file name in tracebacks."""
        return f"{self.page}:{self.line}"


def extract_blocks(text: str, page: str) -> list[Block]:
    """The ```python blocks of ``text``, each with the ```output block right after it."""
    blocks: list[Block] = []
    fences = list(_FENCE.finditer(text))
    for i, match in enumerate(fences):
        info = match["info"].split()
        if not info or info[0] != "python":
            continue
        output: str | None = None
        if i + 1 < len(fences):
            after = fences[i + 1]
            between = text[match.end() : after.start()]
            if after["info"].strip() == "output" and not between.strip():
                output = after["body"]
        line = text.count("\n", 0, match.start("body")) + 1
        blocks.append(
            Block(page=page, line=line, code=match["body"], output=output, pytest="pytest" in info)
        )
    return blocks


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings (lowercase, punctuation dropped)."""
    text = _FENCE.sub("", text)
    headings = re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def run_block(block: Block) -> str:
    """Run ``block`` as a fresh module in a fresh isolated pool; return what it printed.

    The code is compiled with its line numbers in the page, so a traceback points at the
    Markdown line that failed.
    """
    name = "docs_" + re.sub(r"\W", "_", block.id)
    module = types.ModuleType(name)
    module.__file__ = str(DOCS / block.page)
    code = compile("\n" * (block.line - 1) + block.code, str(DOCS / block.page), "exec")
    out = io.StringIO()
    sys.modules[name] = module
    try:
        with isolated_pool(), contextlib.redirect_stdout(out):
            exec(code, module.__dict__)
    finally:
        del sys.modules[name]
        logger.disable("kisflow")  # a logging example must not leave kisflow's logs on
    return out.getvalue()


def _all_blocks() -> list[Block]:
    blocks: list[Block] = []
    for page in PAGES:
        path = DOCS / page
        if path.exists():
            blocks.extend(extract_blocks(path.read_text(encoding="utf-8"), page))
    return blocks


BLOCKS = _all_blocks()


class TestExtraction:
    """The block extractor finds python blocks, their lines and their expected output."""

    TEXT = (
        "# Title\n"  # line 1
        "\n"
        "```python\n"  # line 3
        "print('a')\n"  # line 4
        "```\n"
        "\n"
        "```output\n"
        "a\n"
        "```\n"
        "```text\n"
        "not run\n"
        "```\n"
        "```pycon\n"
        ">>> 1\n"
        "```\n"
        "```python\n"  # line 16
        "x = 1\n"
        "```\n"
        "Some prose.\n"
        "```output\n"
        "ignored: prose comes between\n"
        "```\n"
    )

    def test_finds_only_python_blocks_with_their_lines(self) -> None:
        blocks = extract_blocks(self.TEXT, "p.md")
        assert [(b.line, b.code) for b in blocks] == [(4, "print('a')\n"), (17, "x = 1\n")]

    def test_pytest_marker_is_read_from_the_info_string(self) -> None:
        text = "```python pytest\ndef test_a(): ...\n```\n```python\nx = 1\n```\n"
        assert [b.pytest for b in extract_blocks(text, "p.md")] == [True, False]

    def test_output_block_attaches_only_when_adjacent(self) -> None:
        first, second = extract_blocks(self.TEXT, "p.md")
        assert first.output == "a\n"
        assert second.output is None

    def test_failing_block_reports_its_markdown_line(self) -> None:
        block = Block(page="index.md", line=10, code="x = 1\nraise ValueError('boom')\n")
        with pytest.raises(ValueError, match="boom") as info:
            run_block(block)
        assert info.traceback[-1].lineno + 1 == 11  # pytest's line numbers are 0-based

    def test_error_tree_reads_depth_and_drops_glyphs(self) -> None:
        tree = "Base\n├── A(ValueError)   .x\n│   └── B\n└── C\n"
        assert error_tree(tree) == [(0, "Base"), (1, "A(ValueError) .x"), (2, "B"), (1, "C")]

    def test_heading_anchors_follow_github(self) -> None:
        text = "# Reading a RunResult\n## `kf.actions`\n```text\n# not a heading\n```\n"
        assert heading_anchors(text) == {"reading-a-runresult", "kfactions"}

    def test_block_runs_in_a_fresh_pool(self) -> None:
        outer = _pool.current()
        code = (
            "import kisflow as kf\n"
            "@kf.faas('OnlyInBlock')\n"
            "def f(flow: kf.Flow) -> None: ...\n"
            "print(kf.pool.faas_names())\n"
        )
        assert run_block(Block(page="p.md", line=1, code=code)) == "['OnlyInBlock']\n"
        assert _pool.current() is outer
        assert outer.get_faas("OnlyInBlock") is None


class TestPages:
    """Each core-engine page exists and carries runnable examples where it should."""

    @pytest.mark.parametrize("page", PAGES)
    def test_page_exists(self, page: str) -> None:
        assert (DOCS / page).is_file(), f"docs/{page} is missing"

    @pytest.mark.parametrize("page", PAGES)
    def test_page_has_python_examples(self, page: str) -> None:
        assert any(b.page == page for b in BLOCKS), f"docs/{page} has no ```python block"

    def test_index_maps_every_page(self) -> None:
        text = (DOCS / "index.md").read_text(encoding="utf-8")
        linked = set(re.findall(r"\]\(([\w-]+\.md)\)", text))
        assert sorted((set(PAGES) | PENDING_PAGES) - {"index.md"} - linked) == []

    def test_local_links_resolve(self) -> None:
        """Links to files of this repository point at files that exist, and anchors at
        headings that exist (other engineers' pages, written in parallel, are listed in
        index.md and allowed to be missing)."""
        broken = []
        for page in PAGES:
            text = (DOCS / page).read_text(encoding="utf-8")
            for link in re.findall(r"\]\(([^)\s]+)\)", text):
                target, _, anchor = link.partition("#")
                path = (DOCS / (target or page)).resolve()
                if "://" in target or (target in PENDING_PAGES and not path.exists()):
                    continue
                if not path.exists():
                    broken.append(f"{page} -> {link}")
                elif anchor and anchor not in heading_anchors(path.read_text(encoding="utf-8")):
                    broken.append(f"{page} -> {link} (no such heading)")
        assert broken == []


FAAS_API = (
    "input",
    "commit_row",
    "commit_row_batch",
    "next",
    "get_name",
    "get_id",
    "get_this_function",
    "get_this_func_conf",
    "get_func_config_by_name",
    "get_func_param",
    "get_func_param_all",
    "get_func_params_all_funcs",
    "get_metadata",
    "set_metadata",
    "get_cache",
    "set_cache",
    "get_connector",
    "get_conn_conf",
)
"""The methods a FaaS calls on its flow, as issue 2 lists them."""


def error_tree(text: str) -> list[tuple[int, str]]:
    """(depth, line text) per class of a drawn exception tree, box glyphs dropped."""
    entries = []
    for line in text.strip().splitlines():
        name_at = len(line) - len(line.lstrip("│├└─ "))
        entries.append((name_at // 4, " ".join(line[name_at:].split())))
    return entries


class TestApiReference:
    """api.md documents every public name and every method a FaaS calls on its flow."""

    def _text(self) -> str:
        return (DOCS / "api.md").read_text(encoding="utf-8")

    def test_every_public_name_is_documented(self) -> None:
        text = self._text()
        missing = [
            name
            for name in kisflow.__all__
            if not re.search(rf"`(kf\.)?{re.escape(name)}(?![\w])", text)
        ]
        assert missing == []

    def test_every_faas_method_is_documented_and_exists(self) -> None:
        text = self._text()
        assert [m for m in FAAS_API if f"`{m}(" not in text] == []
        # commit_row and commit_row_batch are attributes bound per run (annotated on Flow)
        declared = set(dir(kisflow.Flow)) | set(kisflow.Flow.__annotations__)
        assert [m for m in FAAS_API if m not in declared] == []

    def test_error_tree_is_copied_from_errors_module(self) -> None:
        """api.md's tree is errors.py's tree, line for line, and names every error."""
        doc = kisflow.errors.__doc__ or ""
        code_tree = error_tree(textwrap.dedent(doc[doc.index("    KisFlowError\n") :]))
        text = self._text()
        start = text.index("```text\nKisFlowError\n") + len("```text\n")
        doc_tree = error_tree(text[start : text.index("```", start)])
        assert doc_tree == code_tree
        assert {line.split()[0].split("(")[0] for _, line in doc_tree} == set(
            kisflow.errors.__all__
        )


PYTEST_BLOCKS = [b for b in BLOCKS if b.pytest]


class TestExamples:
    """Every ```python block of the docs runs and prints the ```output shown after it."""

    @pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
    def test_block_runs(self, block: Block) -> None:
        printed = run_block(block)
        if block.output is not None:
            assert printed == block.output

    @pytest.mark.parametrize("block", PYTEST_BLOCKS, ids=[b.id for b in PYTEST_BLOCKS])
    def test_pytest_block_passes_under_pytest(self, block: Block, tmp_path: Path) -> None:
        """A ```python pytest block is a test file: every test in it passes under pytest,
        with the kf_pool fixture coming from kisflow's installed plugin."""
        (tmp_path / "test_from_docs.py").write_text(block.code, encoding="utf-8")
        tests = block.code.count("\ndef test_")
        assert tests > 0
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_from_docs.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"{tests} passed" in proc.stdout
