"""The ``kisflow`` command line: validate, run, graph and export YAML-defined flows.

Exit codes: 0 success; 1 the configs have problems (each is listed); 2 usage error
(bad option, unknown flow, unreadable input); 3 the run failed; 4 Graphviz's ``dot`` is
needed and not installed; 130 ``run`` was stopped by Ctrl-C. The only code it runs is
what ``--faas FILE`` names (and, with ``--allow-imports``, the ``module:function``
references in the configs).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import traceback
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TextIO, TypeVar, cast
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import click

import kisflow.metrics
from kisflow import __version__, sources
from kisflow.columnar import as_rows
from kisflow.configfile import LoadedConfig, export_config, load_config_dir
from kisflow.connectors._base import to_json_text
from kisflow.deadletter import DeadLetter, JsonlSink
from kisflow.errors import (
    CheckpointError,
    ConfigError,
    DeliveryError,
    InputLineError,
    KisFlowError,
    MissingExtraError,
    SourceError,
)
from kisflow.executors.stream import DEFAULT_BATCH_SIZE, StreamSummary, run_jsonl_stream
from kisflow.flow import Flow
from kisflow.options import RunOptions
from kisflow.progress import RunProgress
from kisflow.result import RunResult

__all__ = [
    "EXIT_CONFIG",
    "EXIT_INTERRUPTED",
    "EXIT_NO_DOT",
    "EXIT_RUN",
    "EXIT_USAGE",
    "main",
]

EXIT_CONFIG = 1
EXIT_USAGE = 2
EXIT_RUN = 3
EXIT_NO_DOT = 4
EXIT_INTERRUPTED = 130
FOLLOW_MAX_WAIT = 1.0
"""``--max-wait`` when ``--follow`` or ``--source`` is given without it (seconds)."""

F = TypeVar("F", bound=Callable[..., Any])


class _Failure(click.ClickException):
    """An error printed as ``kisflow: error: ...`` with its own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # click declares exit_code as a class variable; each failure carries its own.
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"kisflow: error: {self.format_message()}", err=True)


_KISFLOW_DIR = str(Path(__file__).resolve().parent) + os.sep
_LIBRARY_DIRS = tuple(
    str(Path(sysconfig.get_path(name)).resolve()) + os.sep
    for name in ("purelib", "platlib", "stdlib", "platstdlib")
)


def _is_kisflow(filename: str) -> bool:
    """Whether a frame's file is one of kisflow's own modules."""
    return os.path.abspath(filename).startswith(_KISFLOW_DIR)


def _is_users(filename: str) -> bool:
    """Whether a frame's file is the user's code: not kisflow, the stdlib or an installed
    package, nor code without a file (a frozen module, code cattrs generated)."""
    if filename.startswith("<"):
        return False
    path = os.path.abspath(filename)
    return not path.startswith(_KISFLOW_DIR) and not path.startswith(_LIBRARY_DIRS)


def _user_frame(exc: BaseException) -> str | None:
    """``file:line in function`` of the user's code an error came from, or None.

    The error's chain is searched from its innermost cause out; in each traceback, the
    frames inside kisflow's calls (after the first kisflow frame, so not the command
    line's callers) are searched from the deepest up, for the first of the user's. A
    ``SyntaxError`` names its own file and line.
    """
    chain: list[BaseException] = []
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    for error in reversed(chain):
        if isinstance(error, SyntaxError) and error.filename and _is_users(error.filename):
            return f"{error.filename}:{error.lineno}"
        frames = [(frame.f_code, line) for frame, line in traceback.walk_tb(error.__traceback__)]
        inside = [i for i, (code, _) in enumerate(frames) if _is_kisflow(code.co_filename)]
        for code, line in reversed(frames[inside[0] if inside else 0 :]):
            if _is_users(code.co_filename):
                return f"{code.co_filename}:{line} in {code.co_name}"
    return None


def _describe(exc: BaseException, *, kind: bool = True) -> str:
    """An error for stderr: ``Type: message``, its notes (the batch, input lines) and
    the line of the user's code it came from, each on a line of its own."""
    lines = [f"{type(exc).__name__}: {exc}" if kind else str(exc)]
    lines += [f"  {note}" for note in getattr(exc, "__notes__", ())]
    where = _user_frame(exc)
    if where is not None:
        lines.append(f"  at {where}")
    return "\n".join(lines)


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
        raise _Failure(f"--faas {path}: {_describe(exc, kind=False)}", EXIT_CONFIG) from exc
    except Exception as exc:
        raise _Failure(f"--faas {path} raised {_describe(exc)}", EXIT_CONFIG) from exc
    finally:
        sys.path.remove(str(path.resolve().parent))


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Keep a loading option in the context for ``_load`` (no command takes it itself)."""
    ctx.meta[f"kisflow.{param.name}"] = value
    return value


def _config_options(fn: F) -> F:
    """The options every command shares: CONF_DIR, --faas, --allow-imports, --allow-path
    and --strict (the last two kept in the context for ``_load``)."""
    fn = click.option(
        "--strict",
        is_flag=True,
        expose_value=False,
        callback=_remember,
        help="Make warnings (unknown keys, a flow without status) problems.",
    )(fn)
    fn = click.option(
        "--allow-path",
        "allow_paths",
        multiple=True,
        metavar="DIR",
        type=click.Path(path_type=Path),
        expose_value=False,
        callback=_remember,
        help="A place outside CONF_DIR that file connectors (jsonl, sqlite) may use; "
        "repeat for several.",
    )(fn)
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
    meta = click.get_current_context().meta
    try:
        config = load_config_dir(
            conf_dir,
            allow_imports=allow_imports,
            check_faas=check_faas,
            allow_paths=meta.get("kisflow.allow_paths", ()),
            strict=meta.get("kisflow.strict", False),
        )
    except ConfigError as exc:
        for problem in exc.errors or (exc,):
            click.echo(f"{problem}", err=True)
        for note in getattr(exc, "__notes__", ()):  # the warnings, which may say why
            click.echo(note, err=True)
        n = len(exc.errors) or 1
        raise _Failure(f"{n} problem{'s' if n != 1 else ''} in {conf_dir}", EXIT_CONFIG) from exc
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=True)
    return config


def _pick(config: LoadedConfig, name: str) -> Flow:
    """The flow ``--flow`` names; a usage error naming the flows there are otherwise."""
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
    "4 Graphviz 'dot' missing, 130 interrupted.",
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

    An unregistered FaaS is a problem (Save/Load stages on a registered connector type need
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


class _Totals:
    """Per-stage figures summed over the batches of a run: all the CLI keeps of results.

    Memory stays bounded whatever the input's length: each batch's ``RunResult`` is
    folded in and dropped.
    """

    def __init__(self, flow: str) -> None:
        self.flow = flow
        self.batches = 0
        self.rows_in = 0
        self.rows_out = 0
        self.failed = False
        """The command failed: the summary says so, not how the batches before it ended."""
        self.interrupted = False
        """Ctrl-C stopped the command."""
        self.ends: dict[str, int] = {}
        self.stopped_at: set[str] = set()
        self.letters: _CountingSink | None = None
        """Where ``--dead-letters`` went, with how many were written."""
        # stage id -> [name, mode, calls, rows_in, rows_out, dead, retries, seconds]
        self.stages: dict[str, list[Any]] = {}

    def add(self, result: RunResult) -> None:
        """Fold one batch's result into the totals."""
        self.batches += 1
        self.rows_in += result.stages[0].rows_in if result.stages else 0
        self.rows_out += len(result.output)
        self.ends[result.ended.value] = self.ends.get(result.ended.value, 0) + 1
        if result.stopped_at is not None:
            self.stopped_at.add(result.stopped_at)
        for s in result.stages:
            cells = self.stages.get(s.stage_id)
            if cells is None:
                cells = self.stages[s.stage_id] = [s.name, s.mode.value, 0, 0, 0, 0, 0, 0.0]
            cells[2] += s.calls
            cells[3] += s.rows_in
            cells[4] += s.rows_out
            cells[5] += s.dead_letters
            cells[6] += s.retries
            cells[7] += s.duration

    def text(self) -> str:
        """The summary printed on stderr: one line for the run, one per stage.

        The first word says how the command ended: ``failed`` or ``interrupted`` when it
        did, else how the batches' runs ended (``completed``, ``no_rows``...); the rows
        and batches are those that finished.
        """
        if self.failed:
            ended = "failed"
        elif self.interrupted:
            ended = "interrupted"
        elif not self.ends:
            return "\n".join([f"flow {self.flow}: no batch ran", *self._letters()])
        elif len(self.ends) == 1:
            ended = next(iter(self.ends))
        else:
            ended = ", ".join(f"{end} x{n}" for end, n in self.ends.items())
        head = f"flow {self.flow}: {ended}, {self.rows_out} rows out"
        if self.batches != 1 or self.failed or self.interrupted:
            head += f" in {self.batches} batch{'es' if self.batches != 1 else ''}"
        if self.stopped_at:
            head += f" (stopped at {', '.join(sorted(self.stopped_at))})"
        lines = [head]
        for name, mode, calls, rows_in, rows_out, dead, retries, seconds in self.stages.values():
            line = (
                f"  {name:<24} {mode:<9} calls={calls:<3} in={rows_in:<6} "
                f"out={rows_out:<6} {seconds * 1000:.1f} ms"
            )
            if dead or retries:
                line += f" dead={dead} retries={retries}"
            lines.append(line)
        return "\n".join([*lines, *self._letters()])

    def _letters(self) -> list[str]:
        if self.letters is None:
            return []
        n = self.letters.count
        return [f"  {n} dead letter{'s' if n != 1 else ''} written to {self.letters.path}"]


def _start_metrics(config: LoadedConfig, choice: bool, address: str | None) -> bool:
    """Turn metrics on and serve them when ``--metrics`` (or ``--metrics-address``) asks.

    Off by default, even when the folder's global file enables them: a one-off command
    should not open a port (KisFlow's own file says 0.0.0.0:20004) by surprise; a note
    says how to turn them on. Returns whether this command turned them on.
    """
    g = config.global_config
    if not choice and address is None:
        if g is not None and g.prometheus_enable:
            click.echo(
                "note: the global config enables metrics; pass --metrics to serve them "
                "during this run",
                err=True,
            )
        return False
    if kisflow.metrics.enabled():
        return False
    source = "--metrics-address"
    if address is None:
        address = (g.prometheus_serve if g is not None else "") or kisflow.metrics.DEFAULT_ADDRESS
        source = str(config.files.get("global:global", "the default address"))
    try:
        server = kisflow.metrics.enable(serve=True, address=address)
    except (ConfigError, MissingExtraError) as exc:
        raise _Failure(f"metrics (address from {source}): {exc}", EXIT_CONFIG) from exc
    assert server is not None
    click.echo(f"metrics served at {server.url} while the run lasts", err=True)
    return True


def _only_flow(config: LoadedConfig, conf_dir: Path) -> str:
    """The name of the folder's one enabled flow, for a ``run`` without ``--flow``."""
    if len(config.flows) == 1:
        return next(iter(config.flows))
    if config.flows:
        names = ", ".join(sorted(config.flows))
        raise _Failure(
            f"{conf_dir} has {len(config.flows)} enabled flows ({names}); pick one with --flow",
            EXIT_USAGE,
        )
    disabled = f" (disabled: {', '.join(sorted(config.disabled))})" if config.disabled else ""
    raise _Failure(f"{conf_dir} has no enabled flow to run{disabled}", EXIT_USAGE)


@main.command()
@_config_options
@click.option(
    "--flow",
    "flow_name",
    help="The flow to run; may be left out when the configs have one enabled flow.",
)
@click.option(
    "--input",
    "input_file",
    type=click.File("rb"),
    default="-",
    show_default=True,
    help="JSON-lines rows (UTF-8) for the flow's source ('-' is stdin).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=0),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Rows per run; memory stays bounded by it. 0 runs all rows at once "
    "(aggregating flows need that).",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A checkpoint file (SQLite): each batch's input position is committed with its "
    "effects, and a rerun resumes after the last committed batch.",
)
@click.option(
    "--follow",
    is_flag=True,
    help="Tail the --input file: wait for lines appended to it (until Ctrl-C or --idle-timeout).",
)
@click.option(
    "--source",
    "source_url",
    metavar="URL",
    help="Read a broker instead of --input: redis://HOST:PORT/DB?stream=S&group=G"
    "&consumer=C or kafka://HOST:PORT/TOPIC?group=G.",
)
@click.option(
    "--max-wait",
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="Run a batch at most S seconds after its first row arrived, full or not "
    "(default with --follow or --source: 1).",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    metavar="S",
    help="End the run once the source has been empty S seconds (with --follow or --source).",
)
@click.option(
    "--dead-letters",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.jsonl",
    help="Write bad input lines and rejected or unconvertible rows here (one JSON object "
    "per line) and go on; the summary counts them.",
)
@click.option(
    "--metrics/--no-metrics",
    default=False,
    show_default=True,
    help="Count Prometheus metrics and serve them while the run lasts, at the global "
    "config's prometheus_serve (else 127.0.0.1:20004).",
)
@click.option(
    "--metrics-address",
    metavar="HOST:PORT",
    help="Serve metrics here instead (implies --metrics); port 0 picks a free one.",
)
def run(
    conf_dir: Path,
    faas_files: tuple[Path, ...],
    allow_imports: bool,
    flow_name: str | None,
    input_file: IO[bytes],
    batch_size: int,
    checkpoint: Path | None,
    follow: bool,
    source_url: str | None,
    max_wait: float | None,
    idle_timeout: float | None,
    dead_letters: Path | None,
    metrics: bool,
    metrics_address: str | None,
) -> None:
    """Run a flow on JSON-lines input and print its output rows as JSON lines.

    Only the rows go to stdout: a short per-stage summary, anything the FaaS print, and
    a progress bar (on a terminal) go to stderr. Rows stream through the flow one batch
    at a time; Ctrl-C stops after the batch under way (exit 130). Without --flow, the
    configs' one enabled flow runs. --checkpoint makes the run resumable (a rerun goes
    on after the last committed batch), --source reads a Redis stream or Kafka topic.
    """
    name = getattr(input_file, "name", "-")  # click's stdin may have no name
    label = "stdin" if name in ("<stdin>", "-") else str(name)
    gave_input = (
        click.get_current_context().get_parameter_source("input_file")
        is not click.core.ParameterSource.DEFAULT
    )
    durable = _Durable(
        checkpoint, follow, source_url, max_wait, idle_timeout, dead_letters, label, gave_input
    )
    durable.check()
    config = _load(conf_dir, faas_files, allow_imports, check_faas=True)
    if flow_name is None:
        flow_name = _only_flow(config, conf_dir)
    flow = _pick(config, flow_name)
    if label == "stdin" and source_url is None and input_file.isatty():
        click.echo(
            "reading JSON lines from the terminal, one row per line; end with Ctrl-D, "
            "or give --input FILE",
            err=True,
        )
    totals = _Totals(flow_name)
    totals.letters = durable.sink
    rows_out = sys.stdout
    started_metrics = _start_metrics(config, metrics, metrics_address)
    interrupted = ""
    ctrl_c = _CtrlC()
    try:
        # stdout carries only the output rows: whatever a FaaS prints goes to stderr.
        with RunProgress(desc=flow_name) as progress, contextlib.redirect_stdout(sys.stderr):
            # The bar is an observer: the stream tells it of each batch (batch_done).
            options = RunOptions(observers=(progress,))

            def on_result(result: RunResult) -> None:
                totals.add(result)
                ctrl_c.check()

            try:
                with ctrl_c:
                    if durable.wanted:
                        summary = durable.run(
                            flow, input_file, rows_out, batch_size, options, on_result
                        )
                    else:
                        summary = _stream(
                            flow, input_file, rows_out, batch_size, label, options, on_result
                        )
            except KeyboardInterrupt:
                # Ctrl-C while a batch's rows were written: that batch is done and counted.
                how = "the batch under way finished" if ctrl_c.presses < 2 else "aborted"
                interrupted = f"stopped after {totals.rows_in} rows in {totals.batches} batches"
                interrupted += f" ({how})"
            else:
                if summary.interrupted or ctrl_c.presses:
                    interrupted = (
                        f"stopped after {summary.rows_in} rows in {summary.batches} batches "
                        f"(the batch under way finished)"
                    )
                elif summary.batches == 0 and not durable.wanted:
                    # No input rows: run once on none, so a flow that loads its rows runs.
                    on_result(_run_empty(flow, rows_out, options))
            totals.interrupted = bool(interrupted)
    except KeyboardInterrupt:
        totals.interrupted = True
        raise
    except BaseException:
        totals.failed = True
        raise
    finally:
        click.echo(totals.text(), err=True)
        if started_metrics:
            kisflow.metrics.disable()
    if interrupted:
        raise _Failure(f"interrupted: {interrupted}", EXIT_INTERRUPTED)


class _CtrlC:
    """Between the stream's batches, a first Ctrl-C waits for the batch's rows and figures.

    The stream runner handles Ctrl-C while it reads and runs a batch; while the CLI writes
    that batch's rows and adds up its figures, this handler only notes the press, and
    ``check()`` (after the figures) ends the run. A second press interrupts at once.
    """

    def __init__(self) -> None:
        self.presses = 0
        self._previous: Any = None

    def _on_sigint(self, signum: int, frame: types.FrameType | None) -> None:
        self.presses += 1
        if self.presses > 1:
            raise KeyboardInterrupt

    def check(self) -> None:
        """End the run (KeyboardInterrupt) if Ctrl-C was pressed since the batch began."""
        if self.presses:
            raise KeyboardInterrupt

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _stream(
    flow: Flow,
    lines: IO[bytes],
    out: IO[str],
    batch_size: int,
    label: str,
    options: RunOptions,
    on_result: Callable[[RunResult], None],
) -> StreamSummary:
    """Stream the JSON lines through the flow, mapping errors to the documented exit codes."""
    try:
        return run_jsonl_stream(
            flow,
            lines,
            cast("TextIO", out),
            batch_size=batch_size or sys.maxsize,
            progress=False,
            source=label,
            on_result=on_result,
            options=options,
        )
    except InputLineError as exc:
        # Bad input is a usage error; the message names the input and line number.
        raise _Failure(str(exc), EXIT_USAGE) from exc
    except KisFlowError as exc:
        raise _Failure(_describe(exc), EXIT_RUN) from exc


class _CountingSink:
    """``--dead-letters FILE``: letters written as JSON lines there, and counted for the
    summary (bad input lines and rejected or unconvertible rows alike)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._sink = JsonlSink(path)

    def put(self, letter: DeadLetter) -> None:
        self._sink.put(letter)
        self.count += 1


_REDIS_KEYS = {"stream", "group", "consumer", "min_idle"}


def parse_source_url(url: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """``--source URL`` as the ``kisflow.sources`` factory to call, with its arguments.

    ``redis://HOST:PORT/DB?stream=S&group=G&consumer=C[&min_idle=SECONDS]`` is
    ``sources.redis_stream("redis://HOST:PORT/DB", stream=S, group=G, consumer=C)``
    (the consumer defaults to this machine's host name, stable across restarts);
    ``kafka://HOST:PORT/TOPIC?group=G[&librdkafka.setting=V...]`` is
    ``sources.kafka("HOST:PORT", topic=TOPIC, group=G, config={...})``, every query key
    with a dot going to ``config``. Raises ``ConfigError`` saying what is wrong.
    """
    parts = urlsplit(url)
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigError(f"--source {url!r}: the query is not key=value pairs: {exc}") from exc
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in query:
            raise ConfigError(f"--source {url!r}: {key!r} is given twice")
        query[key] = value
    if not parts.hostname:
        raise ConfigError(f"--source {url!r}: no HOST:PORT; e.g. redis://127.0.0.1:6379/0?...")
    if parts.scheme in ("redis", "rediss"):
        unknown = sorted(set(query) - _REDIS_KEYS)
        if unknown:
            raise ConfigError(
                f"--source {url!r}: unknown parameter {', '.join(map(repr, unknown))}; "
                f"a redis URL takes {', '.join(sorted(_REDIS_KEYS))}"
            )
        for key in ("stream", "group"):
            if not query.get(key):
                raise ConfigError(
                    f"--source {url!r}: no {key}=; "
                    f"e.g. redis://HOST:PORT/0?stream=orders&group=billing&consumer=worker-1"
                )
        kwargs: dict[str, Any] = {
            "stream": query["stream"],
            "group": query["group"],
            "consumer": query.get("consumer") or socket.gethostname(),
        }
        if "min_idle" in query:
            try:
                kwargs["min_idle"] = float(query["min_idle"])
            except ValueError:
                raise ConfigError(
                    f"--source {url!r}: min_idle={query['min_idle']!r} is not a number of seconds"
                ) from None
        base = urlunsplit((parts.scheme, parts.netloc, parts.path or "/0", "", ""))
        return "redis_stream", (base,), kwargs
    if parts.scheme == "kafka":
        topic = parts.path.strip("/")
        if not topic or "/" in topic:
            raise ConfigError(
                f"--source {url!r}: give one topic as the path: kafka://HOST:PORT/TOPIC"
            )
        group = query.pop("group", "")
        if not group:
            raise ConfigError(
                f"--source {url!r}: no group=; e.g. kafka://HOST:PORT/orders?group=billing"
            )
        unknown = sorted(k for k in query if "." not in k)
        if unknown:
            raise ConfigError(
                f"--source {url!r}: unknown parameter {', '.join(map(repr, unknown))}; a kafka "
                f"URL takes group= and librdkafka settings (names with a dot, e.g. "
                f"session.timeout.ms=6000)"
            )
        return "kafka", (parts.netloc,), {"topic": topic, "group": group, "config": query}
    raise ConfigError(
        f"--source {url!r}: unknown scheme {parts.scheme!r}; give redis://... or kafka://..."
    )


class _Durable:
    """The options of a stream with positions (``--checkpoint``, ``--follow``,
    ``--source``, ``--max-wait``, ``--idle-timeout``, ``--dead-letters``): any of them
    runs the flow through ``flow.stream(source, ...)`` on a source with positions."""

    def __init__(
        self,
        checkpoint: Path | None,
        follow: bool,
        source_url: str | None,
        max_wait: float | None,
        idle_timeout: float | None,
        dead_letters: Path | None,
        label: str,
        gave_input: bool,
    ) -> None:
        self.checkpoint = checkpoint
        self.follow = follow
        self.source_url = source_url
        self.max_wait = max_wait
        self.idle_timeout = idle_timeout
        self.label = label
        self.gave_input = gave_input
        self.sink = None if dead_letters is None else _CountingSink(dead_letters)
        self.wanted = (
            bool(checkpoint or follow or source_url or dead_letters)
            or max_wait is not None
            or idle_timeout is not None
        )

    def check(self) -> None:
        """Usage errors (exit 2) for options that do not go together."""
        if self.source_url is not None:
            if self.gave_input:
                raise _Failure("give --input FILE or --source URL, not both", EXIT_USAGE)
            if self.follow:
                raise _Failure(
                    "--follow tails an --input file; a --source broker is always followed",
                    EXIT_USAGE,
                )
            try:
                parse_source_url(self.source_url)
            except ConfigError as exc:
                raise _Failure(str(exc), EXIT_USAGE) from exc
        elif self.label == "stdin":
            if self.follow:
                raise _Failure("--follow needs --input FILE: stdin cannot be tailed", EXIT_USAGE)
            if self.checkpoint is not None:
                raise _Failure(
                    "--checkpoint needs --input FILE or --source URL: stdin cannot be read "
                    "again from a position",
                    EXIT_USAGE,
                )

    def _default_wait(self) -> float | None:
        """A followed source's batch waits ``FOLLOW_MAX_WAIT`` seconds at most by default:
        lines come in one by one, and a batch must not wait for 10,000 of them."""
        return FOLLOW_MAX_WAIT if self.follow or self.source_url else None

    def source(self, input_file: IO[bytes]) -> sources.Source:
        """The source the options name: a broker, the --input file, or stdin."""
        if self.source_url is None:
            if self.label == "stdin":
                from kisflow.sources._jsonl import JsonLinesSource

                return JsonLinesSource("<stdin>", name="stdin", stream=cast("Any", input_file))
            return sources.jsonl(self.label, follow=self.follow)
        name, args, kwargs = parse_source_url(self.source_url)
        factory = getattr(sources, name, None)
        if factory is None:
            raise _Failure(
                f"--source {self.source_url}: this kisflow has no {name} source "
                f"(kisflow.sources.{name})",
                EXIT_USAGE,
            )
        try:
            return cast("sources.Source", factory(*args, **kwargs))
        except MissingExtraError as exc:
            raise _Failure(f"--source {self.source_url}: {exc}", EXIT_USAGE) from exc
        except KisFlowError as exc:
            raise _Failure(f"--source {self.source_url}: {exc}", EXIT_USAGE) from exc

    def run(
        self,
        flow: Flow,
        input_file: IO[bytes],
        out: IO[str],
        batch_size: int,
        options: RunOptions,
        on_result: Callable[[RunResult], None],
    ) -> StreamSummary:
        """Stream the source through the flow, writing each committed batch's rows."""
        src = self.source(input_file)
        kwargs: dict[str, Any] = {
            "batch_size": batch_size or sys.maxsize,
            "max_wait": self.max_wait if self.max_wait is not None else self._default_wait(),
            "idle_timeout": self.idle_timeout,
            "progress": False,
            "options": options,
        }
        if self.checkpoint is not None:
            kwargs["checkpoint"] = str(self.checkpoint)
        if self.sink is not None:
            kwargs["dead_letters"] = self.sink
        rows_in = rows_out = batches = 0
        interrupted = False
        try:
            with flow.stream(src, **kwargs) as stream:
                for result in stream:
                    _write_rows(flow, result, out)
                    rows_in += result.stages[0].rows_in if result.stages else 0
                    rows_out += len(result.output)
                    batches += 1
                    on_result(result)
                interrupted = bool(getattr(stream, "interrupted", False))
            if self.checkpoint is not None:
                click.echo(
                    f"checkpoint {self.checkpoint}: {stream.committed} records committed by "
                    f"this run, at {src.describe()} {json.dumps(stream.position)}",
                    err=True,
                )
        except InputLineError as exc:
            raise _Failure(str(exc), EXIT_USAGE) from exc
        except (SourceError, CheckpointError) as exc:
            code = EXIT_RUN if getattr(exc, "retryable", False) else EXIT_USAGE
            message = _describe(exc)
            if self.sink is None and "dead_letters=" in message:  # a bad input record
                message += "\n  (kisflow run: --dead-letters FILE.jsonl keeps them and goes on)"
            raise _Failure(message, code) from exc
        except DeliveryError as exc:
            raise _Failure(_describe(exc), EXIT_CONFIG) from exc
        except KisFlowError as exc:
            raise _Failure(_describe(exc), EXIT_RUN) from exc
        finally:
            src.close()
        return StreamSummary(
            rows_in=rows_in, rows_out=rows_out, batches=batches, interrupted=interrupted
        )


def _write_rows(flow: Flow, result: RunResult, out: IO[str]) -> None:
    """A batch's output rows as JSON lines, written once all of them are JSON."""
    texts: list[str] = []
    for row in as_rows(result.output):  # a columnar stage's DataFrame: its rows
        try:
            texts.append(to_json_text(row))
        except (TypeError, ValueError, RecursionError) as exc:
            raise _Failure(
                f"flow {flow.name!r}: an output row is not JSON: {type(exc).__name__}: {exc}",
                EXIT_RUN,
            ) from exc
    for text in texts:
        out.write(text + "\n")
    out.flush()


def _run_empty(flow: Flow, out: IO[str], options: RunOptions) -> RunResult:
    """One run on no rows (empty input), its output written like a stream's."""
    try:
        result = flow.run([], options)
    except KisFlowError as exc:
        raise _Failure(_describe(exc), EXIT_RUN) from exc
    _write_rows(flow, result, out)
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
