"""The layers contract of ``pyproject.toml`` (``make lint`` runs it) admits no import cycle.

``lint-imports`` is run as ``make lint`` runs it, on the real tree and on copies of
``kisflow/`` with one cycle injected: an import inside a function, one under
``TYPE_CHECKING``, and cycles through a package's ``__init__``. The contracts themselves
are checked too: the imports they allow, each taken on its own, form no cycle, so no
import graph that keeps them has one.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from copy import deepcopy
from pathlib import Path
from typing import Any

import grimp
import networkx as nx
import pytest
from importlinter.application.use_cases import read_user_options
from importlinter.configuration import configure
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract
from importlinter.contracts.protected import ProtectedContract
from importlinter.domain.contract import Contract

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("kisflow", "kisflow.connectors", "kisflow.executors", "kisflow.sources")
"""The packages whose ``__init__`` cannot be a layer; the contracts pin each of them."""


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the real contract, on the ``kisflow`` package found in ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(PYPROJECT)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_real_tree_keeps_the_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


FUNCTION_LEVEL = "\n\ndef _injected() -> None:\n    {statement}  # noqa\n"
UNDER_TYPE_CHECKING = "\n\nif TYPE_CHECKING:\n    {statement}  # noqa\n"

CYCLES = {
    # A bottom module importing one that imports it (through many others).
    "inside a function": ("errors.py", FUNCTION_LEVEL, "import kisflow.flow", "kisflow.flow"),
    # The result of a run annotated with the Flow that returns it: result <-> flow.
    "under TYPE_CHECKING": (
        "result.py",
        UNDER_TYPE_CHECKING,
        "from kisflow.flow import Flow",
        "kisflow.flow",
    ),
    # A built-in store reading its own package, which imports the store on first use.
    "through a package's __init__": (
        "connectors/jsonl.py",
        FUNCTION_LEVEL,
        "from kisflow.connectors import BUILTIN_TYPES",
        "kisflow.connectors",
    ),
    # A module reading the public API, which imports the module.
    "through kisflow itself": ("flow.py", FUNCTION_LEVEL, "import kisflow", "kisflow"),
}


@pytest.mark.parametrize(("file", "template", "statement", "imported"), CYCLES.values(), ids=CYCLES)
def test_an_injected_cycle_breaks_the_contract(
    tmp_path: Path, file: str, template: str, statement: str, imported: str
) -> None:
    shutil.copytree(
        ROOT / "kisflow", tmp_path / "kisflow", ignore=shutil.ignore_patterns("__pycache__")
    )
    path = tmp_path / "kisflow" / file
    text = path.read_text(encoding="utf-8")
    injected = template.format(statement=statement)
    path.write_text(text + injected, encoding="utf-8")
    line = text.count("\n") + injected.count("\n")  # the injected statement's line

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    importer = "kisflow." + file.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> {imported} (l.{line})" in result.stdout, result.stdout


def _contracts() -> list[Contract]:
    configure()
    options = read_user_options(str(PYPROJECT))
    types: dict[str, type[Contract]] = {
        c.type_name: c for c in (LayersContract, ForbiddenContract, ProtectedContract)
    }
    return [
        types[o["type"]](
            name=o["name"], session_options=options.session_options, contract_options=o
        )
        for o in options.contracts_options
    ]


def test_the_imports_the_contract_allows_form_no_cycle() -> None:
    """Every module of kisflow/ has its place, and the places form no cycle.

    For each ordered pair of modules, the contracts are checked on a graph holding just that
    one import. A graph that keeps the contracts holds only imports they allow on their
    own, so if those form no cycle, no graph that keeps the contracts has a cycle: any
    cycle anywhere in kisflow/ breaks the contract.
    """
    contracts = _contracts()
    modules = grimp.build_graph(
        "kisflow", include_external_packages=False, exclude_type_checking_imports=False
    ).modules
    empty = grimp.ImportGraph()
    for module in modules:
        empty.add_module(module)
    # Else every import would be refused and the check below would prove nothing.
    refused = [c.name for c in contracts if not c.check(deepcopy(empty), verbose=False).kept]
    assert refused == [], "broken with no import at all (a module in no layer?)"
    allowed = nx.DiGraph()
    allowed.add_nodes_from(modules)
    for importer, imported in itertools.permutations(sorted(modules), 2):
        graph = deepcopy(empty)
        graph.add_import(importer=importer, imported=imported)
        if all(c.check(deepcopy(graph), verbose=False).kept for c in contracts):
            allowed.add_edge(importer, imported)
    cycles = list(itertools.islice(nx.simple_cycles(allowed), 1))
    assert cycles == [], f"the contract allows the cycle {' -> '.join(cycles[0] + cycles[0][:1])}"


def _layer_modules() -> list[str]:
    """The modules of the layers contract that exist, as written there (relative names)."""
    config: dict[str, Any] = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    [layers] = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    names = [m.strip() for layer in layers["layers"] for m in re.split(r"[|:]", layer)]
    modules = grimp.build_graph("kisflow").modules
    return [m.strip("()") for m in names if f"kisflow.{m.strip('()')}" in modules]


def test_the_architecture_page_draws_every_module() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagram = re.search(r"^## The layers.*?^```text\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert diagram is not None, "docs/architecture.md has no ```text diagram under 'The layers'"
    # A line names its modules in its first column (continuation lines are indented).
    columns = [re.split(r" {2,}", line)[0] for line in diagram[1].splitlines()]
    names = {
        name.strip().removesuffix(" (the package)").strip("()")
        for column in columns
        if column and not column.startswith(" ")
        for name in column.split("|")
    }
    wanted = [*_layer_modules(), *(p.partition(".")[2] or p for p in PACKAGES)]
    assert [m for m in wanted if m not in names] == []
