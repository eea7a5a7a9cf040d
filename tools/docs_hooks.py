"""MkDocs hooks of the documentation site (mkdocs.yml): what is generated at build time.

- The API reference: a page per public module (``kisflow`` itself, each public submodule
  and ``kisflow.testing``), rendered from the docstrings by mkdocstrings, added to the nav.
- The changelog: ``CHANGELOG.md`` of the repository as a page (links into docs/ mended).
- The example flows: each flow built by ``examples/*`` drawn as SVG by Graphviz's ``dot``
  from ``Flow.to_dot()``, shown on ``examples.md`` with the example's README summary.

Flows are found without running the examples, in an isolated pool: each example's files
are imported (not run as ``__main__``: their module-level FaaS register, nothing runs), a
YAML example's ``conf/`` folder is loaded, and in Python files every
``FlowBuilder("name").verify("A")...build()`` chain is read from the source and rebuilt
(a FaaS defined inside a function gets a stand-in), so the pictures follow the examples.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import runpy
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MARKER = "<!-- example flow pictures -->"
STAGE_METHODS = ("verify", "save", "load", "calculate", "expand")
REFERENCE_TITLE = "API reference (docstrings)"

_built: dict[str, list[tuple[str, str]]] = {}
"""The example flows of the build under way (made in on_files, shown by on_page_markdown)."""


def public_modules() -> list[str]:
    """``kisflow``, then its public submodules (``kisflow.__all__``), then ``kisflow.testing``."""
    kisflow = importlib.import_module("kisflow")
    names = ["kisflow"]
    for name in sorted(kisflow.__all__):
        if _is_module(name):
            names.append(f"kisflow.{name}")
    names.append("kisflow.testing")
    return names


def _is_module(name: str) -> bool:
    """Whether ``kisflow.<name>`` is a submodule (found, not imported: some load lazily)."""
    return importlib.util.find_spec(f"kisflow.{name}") is not None


def _reference_page(module: str) -> str:
    if module == "kisflow":
        kisflow = importlib.import_module("kisflow")
        members = [n for n in kisflow.__all__ if not n.startswith("_") and not _is_module(n)]
        listed = "\n".join(f"        - {n}" for n in members)
        return (
            "# kisflow\n\nThe public API, re-exported from the package (`import kisflow as kf`)."
            "\n\n::: kisflow\n    options:\n      show_root_heading: false\n"
            f"      members:\n{listed}\n"
        )
    return f"# {module}\n\n::: {module}\n    options:\n      show_root_heading: false\n"


def _reference_index(modules: list[str]) -> str:
    rows = "\n".join(f"- [`{m}`]({m}.md)" for m in modules)
    return (
        "# API reference (from the docstrings)\n\n"
        "Generated from the code's docstrings when the site is built; the hand-written "
        "reference, with examples, is [api.md](../api.md).\n\n"
        f"{rows}\n"
    )


def on_config(config: Any) -> Any:
    """Add the generated reference pages to the nav."""
    pages = ["reference/index.md", *(f"reference/{m}.md" for m in public_modules())]
    nav = [e for e in config["nav"] if not (isinstance(e, dict) and REFERENCE_TITLE in e)]
    nav.append({REFERENCE_TITLE: pages})
    config["nav"] = nav
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the reference pages and the example flows' SVG pictures to the site."""
    modules = public_modules()
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "changelog.md", content=changelog.replace("](docs/", "](")))
    files.append(File.generated(config, "reference/index.md", content=_reference_index(modules)))
    for module in modules:
        files.append(
            File.generated(config, f"reference/{module}.md", content=_reference_page(module))
        )
    _built.clear()
    _built.update(example_flows())
    for flows in _built.values():
        for picture, dot_text in flows:
            files.append(File.generated(config, picture, content=_svg(dot_text, picture)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """On examples.md, put each example's summary and pictures where the marker is; links
    to the repository's CHANGELOG.md go to its page in the site."""
    markdown = markdown.replace("](../CHANGELOG.md)", "](changelog.md)")
    if page.file.src_uri != "examples.md":
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"docs/examples.md lost its marker {MARKER!r}")
    return markdown.replace(MARKER, _examples_markdown())


def _examples_markdown() -> str:
    parts = []
    for example, flows in _built.items():
        readme = EXAMPLES / example / "README.md"
        title, summary = _summary(readme)
        parts.append(f"## {title}\n\n`examples/{example}/`: {summary}\n")
        for picture, _dot in flows:
            name = Path(picture).stem.split("--", 1)[1]
            parts.append(f"![flow {name}]({picture})\n")
    return "\n".join(parts)


def _summary(readme: Path) -> tuple[str, str]:
    """The README's title and first paragraph."""
    if not readme.is_file():
        return readme.parent.name, ""
    lines = readme.read_text(encoding="utf-8").splitlines()
    title = readme.parent.name
    paragraph: list[str] = []
    for line in lines:
        if line.startswith("# ") and not paragraph:
            title = line[2:].strip()
        elif line.strip() and not line.startswith(("#", "```", "|", "-")):
            paragraph.append(line.strip())
        elif paragraph:
            break
    return title, " ".join(paragraph)


def example_flows() -> dict[str, list[tuple[str, str]]]:
    """Per example folder: (picture path in the site, DOT text) of each flow it builds."""
    from kisflow.testing import isolated_pool

    found: dict[str, list[tuple[str, str]]] = {}
    for folder in sorted(p for p in EXAMPLES.iterdir() if p.is_dir()):
        dots: dict[str, str] = {}
        sources = sorted(folder.glob("*.py"))
        with isolated_pool():
            for source in sources:  # module-level FaaS, for the row types the nodes show
                try:
                    runpy.run_path(str(source), run_name="kisflow_docs_example")
                except Exception as exc:
                    raise PluginError(f"{source} does not import: {exc!r}") from exc
            if (folder / "conf").is_dir():
                dots.update(_yaml_flows(folder / "conf"))
            for source in sources:
                dots.update(_python_flows(source))
        if dots:
            found[folder.name] = [
                (f"images/flows/{folder.name}--{name}.svg", text)
                for name, text in sorted(dots.items())
            ]
    if not found:
        raise PluginError(f"no example flow found under {EXAMPLES}")
    return found


def _yaml_flows(conf: Path) -> dict[str, str]:
    import kisflow as kf

    loaded = kf.load_config_dir(conf, check_faas=False)
    return {name: flow.to_dot() for name, flow in loaded.flows.items()}


def _python_flows(source: Path) -> dict[str, str]:
    import kisflow as kf

    tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
    dots: dict[str, str] = {}
    for node in ast.walk(tree):
        chain = _builder_chain(node)
        if chain is None:
            continue
        name, stages = chain
        builder = kf.FlowBuilder(name)
        for method, fname in stages:
            if kf.pool.get_faas(fname) is None:
                kf.faas(fname, _stand_in)
            getattr(builder, method)(fname)
        dots[name] = builder.build().to_dot()
    return dots


def _builder_chain(node: ast.AST) -> tuple[str, list[tuple[str, str]]] | None:
    """``FlowBuilder("n").verify("A")...build()``: the flow's name and (method, fname)s."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "build"
    ):
        return None
    stages: list[tuple[str, str]] = []
    current: ast.AST = node.func.value
    while isinstance(current, ast.Call) and isinstance(current.func, ast.Attribute):
        method = current.func.attr
        if method == "FlowBuilder":
            break
        if method in STAGE_METHODS:
            if not (current.args and isinstance(current.args[0], ast.Constant)):
                return None
            stages.append((method, str(current.args[0].value)))
        current = current.func.value
    if not isinstance(current, ast.Call):
        return None
    func = current.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called != "FlowBuilder" or not current.args:
        return None
    first = current.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)) or not stages:
        return None
    return first.value, stages[::-1]


def _stand_in(flow: Any) -> None:
    """The FaaS of a pictured stage: never called (the docs only draw the flows)."""


def _svg(dot_text: str, picture: str) -> bytes:
    dot = shutil.which("dot")
    if dot is None:
        raise PluginError(
            "the docs draw the example flows with Graphviz's 'dot', which is not on PATH; "
            "install Graphviz (make system-deps, or apt-get install graphviz)"
        )
    done = subprocess.run(
        [dot, "-Tsvg"], input=dot_text.encode(), capture_output=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise PluginError(f"dot failed on {picture}: {done.stderr.decode(errors='replace')}")
    return done.stdout
