"""The ``kisflow`` command line: validate, run, graph and export YAML-defined flows.

Exit codes: 0 success; 1 the configs have problems (each is listed); 2 usage error
(bad option, unknown flow, unreadable input); 3 the run failed; 4 Graphviz's ``dot`` is
needed and not installed. The only code it runs is what ``--faas FILE`` names (and, with
``--allow-imports``, the ``module:function`` references in the configs).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from kisflow import __version__
from kisflow.configfile import LoadedConfig, export_config, load_config_dir
from kisflow.connectors._base import to_json_text
from kisflow.errors import ConfigError, KisFlowError
from kisflow.flow import Flow
from kisflow.progress import progress_bar
from kisflow.result import RunResult

__all__ = ["EXIT_CONFIG", "EXIT_NO_DOT", "EXIT_RUN", "EXIT_USAGE", "main"]

EXIT_CONFIG = 1
EXIT_USAGE = 2
EXIT_RUN = 3
EXIT_NO_DOT = 4

F = TypeVar("F", bound=Callable[..., Any])


class _Failure(click.ClickException):
    """An error printed as ``kisflow: error: ...`` with its own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # click declares exit_code as a class variable; each failure carries its own.
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"kisflow: error: {self.format_message()}", err=True)


def _import_faas_file(path: Path) -> None:
    """Run a Python file that registers FaaS/CaaS (its folder is importable meanwhile)."""
    name = f"kisflow_faas_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise _Failure(f"--faas {path}: not a Python file", EXIT_USAGE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except KisFlowError as exc:
        raise _Failure(f"--faas {path}: {exc}", EXIT_CONFIG) from exc
    except Exception as exc:
        raise _Failure(f"--faas {path} raised {type(exc).__name__}: {exc}", EXIT_CONFIG) from exc
    finally:
        sys.path.remove(str(path.resolve().parent))


def _config_options(fn: F) -> F:
    """The options every command shares: CONF_DIR, --faas and --allow-imports."""
    fn = click.option(
        "--allow-imports",
        is_flag=True,
        help="Let func configs name their FaaS as 'faas: module:function' (imports code).",
    )(fn)
    fn = click.option(
        "--faas",
        "faas_files",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A Python file that registers FaaS/CaaS; repeat for several.",
    )(fn)
    return click.argument(
        "conf_dir", type=click.Path(exists=True, file_okay=False, path_type=Path)
    )(fn)


def _load(
    conf_dir: Path, faas_files: Sequence[Path], allow_imports: bool, *, check_faas: bool
) -> LoadedConfig:
    for file in faas_files:
        _import_faas_file(file)
    try:
        return load_config_dir(conf_dir, allow_imports=allow_imports, check_faas=check_faas)
    except ConfigError as exc:
        for problem in exc.errors or (exc,):
            click.echo(f"{problem}", err=True)
        n = len(exc.errors) or 1
        raise _Failure(f"{n} problem{'s' if n != 1 else ''} in {conf_dir}", EXIT_CONFIG) from exc


def _pick(config: LoadedConfig, name: str) -> Flow:
    flow = config.flows.get(name)
    if flow is not None:
        return flow
    if name in config.disabled:
        raise _Failure(f"flow {name!r} is disabled (status: 0)", EXIT_USAGE)
    known = ", ".join(sorted(config.flows)) or "none"
    raise _Failure(f"no flow {name!r} in the configs; flows: {known}", EXIT_USAGE)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit codes: 0 ok, 1 config problems, 2 usage error, 3 run failed, "
    "4 Graphviz 'dot' missing.",
)
@click.version_option(__version__, "--version", "-V", prog_name="kisflow")
def main() -> None:
    """Run KisFlow-style flows described in YAML config folders.

    CONF_DIR is a folder of KisFlow YAML files (kistype flow, func, conn, global),
    read recursively. FaaS callbacks come from Python files given with --faas.
    """


@main.command()
@_config_options
def validate(conf_dir: Path, faas_files: tuple[Path, ...], allow_imports: bool) -> None:
    """Check every config file and report all problems at once.

    An unregistered FaaS is a problem (Save/Load stages on a built-in connector need
    none). Prints the flows found; exits 1 when anything is wrong.
    """
    config = _load(conf_dir, faas_files, allow_imports, check_faas=True)
    for name, flow in config.flows.items():
        chain = " -> ".join(f"{s.name}[{s.mode.letter}]" for s in flow.stages)
        click.echo(f"flow {name}: {chain}")
    for name in config.disabled:
        click.echo(f"flow {name}: disabled")
    n = len(config.flows)
    click.echo(f"ok: {n} flow{'s' if n != 1 else ''} in {conf_dir}", err=True)


def _read_rows(stream: IO[str], label: str) -> Iterator[Any]:
    for lineno, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError as exc:
            raise _Failure(f"{label} line {lineno} is not JSON: {exc}", EXIT_USAGE) from exc


def _summary(result: RunResult) -> str:
    lines = [f"flow {result.flow}: {result.ended.value}, {len(result.output)} rows out"]
    if result.stopped_at is not None:
        lines[0] += f" (stopped at {result.stopped_at})"
    for s in result.stages:
        lines.append(
            f"  {s.name:<24} {s.mode.value:<9} calls={s.calls:<3} in={s.rows_in:<6} "
            f"out={s.rows_out:<6} {s.duration * 1000:.1f} ms"
        )
    return "\n".join(lines)


@main.command()
@_config_options
@click.option("--flow", "flow_name", required=True, help="The flow to run.")
@click.option(
    "--input",
    "input_file",
    type=click.File("r", encoding="utf-8"),
    default="-",
    show_default=True,
    help="JSON-lines rows for the flow's source ('-' is stdin).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Rows per run; 0 runs all rows at once (aggregating flows need that).",
)
def run(
    conf_dir: Path,
    faas_files: tuple[Path, ...],
    allow_imports: bool,
    flow_name: str,
    input_file: IO[str],
    batch_size: int,
) -> None:
    """Run a flow on JSON-lines input and print its output rows as JSON lines.

    Only the rows go to stdout: a short per-stage summary, anything the FaaS print, and
    a progress bar (on a terminal) go to stderr.
    """
    config = _load(conf_dir, faas_files, allow_imports, check_faas=True)
    flow = _pick(config, flow_name)
    label = "stdin" if input_file.name == "<stdin>" else input_file.name
    bar = progress_bar(desc=f"{flow_name}")
    results: list[RunResult] = []
    rows_out = sys.stdout
    try:
        # stdout carries only the output rows: whatever a FaaS prints goes to stderr.
        with bar, contextlib.redirect_stdout(sys.stderr):
            batch: list[Any] = []
            for row in _read_rows(input_file, label):
                batch.append(row)
                if batch_size and len(batch) >= batch_size:
                    results.append(_run_batch(flow, batch, rows_out))
                    bar.update(len(batch))
                    batch = []
            if batch or not results:
                results.append(_run_batch(flow, batch, rows_out))
                bar.update(len(batch))
    finally:
        for result in results:
            click.echo(_summary(result), err=True)


def _run_batch(flow: Flow, rows: list[Any], out: IO[str]) -> RunResult:
    try:
        result = flow.run(rows)
    except KisFlowError as exc:
        raise _Failure(f"{type(exc).__name__}: {exc}", EXIT_RUN) from exc
    for row in result.output:
        try:
            out.write(to_json_text(row) + "\n")
        except (TypeError, ValueError):
            out.write(json.dumps(repr(row)) + "\n")
    out.flush()
    return result


@main.command()
@_config_options
@click.option("--flow", "flow_name", required=True, help="The flow to draw.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dot", "svg", "png"]),
    default="dot",
    show_default=True,
    help="DOT text, or a picture rendered by Graphviz's dot.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write."
)
def graph(
    conf_dir: Path,
    faas_files: tuple[Path, ...],
    allow_imports: bool,
    flow_name: str,
    fmt: str,
    output: Path | None,
) -> None:
    """Draw a flow: DOT text, or SVG/PNG when Graphviz's ``dot`` is installed."""
    config = _load(conf_dir, faas_files, allow_imports, check_faas=False)
    text = _pick(config, flow_name).to_dot()
    if fmt == "dot":
        data = text.encode()
    else:
        dot = shutil.which("dot")
        if dot is None:
            raise _Failure(
                f"--format {fmt} needs Graphviz's 'dot' program, which is not on PATH; "
                f"install Graphviz (Debian: apt-get install graphviz) or use --format dot",
                EXIT_NO_DOT,
            )
        proc = subprocess.run([dot, f"-T{fmt}"], input=text.encode(), capture_output=True)
        if proc.returncode != 0:
            raise _Failure(f"dot failed: {proc.stderr.decode(errors='replace')}", EXIT_RUN)
        data = proc.stdout
    if output is None:
        if fmt == "png" and sys.stdout.isatty():
            raise _Failure("refusing to write PNG to a terminal; use -o FILE", EXIT_USAGE)
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        output.write_bytes(data)
        click.echo(f"wrote {output}", err=True)


@main.command("export")
@_config_options
@click.option("--flow", "flow_name", required=True, help="The flow to export.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the YAML files into (created if missing).",
)
def export_cmd(
    conf_dir: Path,
    faas_files: tuple[Path, ...],
    allow_imports: bool,
    flow_name: str,
    output: Path,
) -> None:
    """Write a flow as KisFlow YAML files: flow-, func- and conn-<name>.yaml."""
    config = _load(conf_dir, faas_files, allow_imports, check_faas=False)
    try:
        files = export_config(_pick(config, flow_name), output)
    except ConfigError as exc:
        raise _Failure(str(exc), EXIT_CONFIG) from exc
    for file in files:
        click.echo(str(file))
