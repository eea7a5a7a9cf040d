"""KisFlow's YAML config folders: import them into flows, export flows back to files.

``load_config_dir(path)`` walks a folder, reads every ``.yml``/``.yaml`` file (plain
data only, within the limits of ``kisflow._yaml``: no tag can build a Python object, no
alias bomb expands, no key is given twice), checks every key, links functions to flows
and connectors to functions, keeps file connectors inside the folder, builds the enabled
flows and registers them in the pool. It reports every problem of the folder at once:
one ``ConfigError`` whose ``errors`` hold one ``ConfigError`` per problem, each naming
its file and key. What KisFlow-Go accepts and kisflow only doubts (an unknown key, a
flow without ``status``) is a warning (``LoadedConfig.warnings``), a problem under
``strict=True``.

``export_config(flow, folder)`` writes ``flow-<name>.yaml``, ``func-<fname>.yaml`` and
``conn-<cname>.yaml`` in the shape of KisFlow's own exports.
"""

from __future__ import annotations

import difflib
import enum
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import yaml
from loguru import logger

from kisflow import _faasref, _pool, _state, _yaml
from kisflow.config import (
    ConnConfig,
    FlowConfig,
    FlowFunctionParam,
    FuncConfig,
    GlobalConfig,
    YamlField,
    show_typed,
    show_value,
    yaml_fields,
)
from kisflow.errors import ConfigError, KisFlowError
from kisflow.flow import Flow
from kisflow.modes import Mode

if TYPE_CHECKING:
    from kisflow.metrics import MetricsServer

__all__ = ["KISTYPES", "ConfigWarning", "LoadedConfig", "export_config", "load_config_dir"]

KISTYPES = ("flow", "func", "conn", "global")
"""The values of ``kistype``, one per kind of config file."""

_SUFFIXES = (".yml", ".yaml")

_Check = Callable[[Any], str | None]


def _is_reference(v: Any) -> str | None:
    """``faas`` is checked further when it is resolved (``_faasref``)."""
    return None if isinstance(v, str) else "must be a string"


@attrs.frozen
class _Table:
    """The loader's checks of one YAML section, derived from its config class's schema.

    ``keys`` are all its keys in schema order; ``checks`` holds the plain ones (the
    "known keys" a report lists), ``sections`` the nested ones with their own tables and
    whether they are a list of mappings. Keys outside the table are reported (a warning
    with a did-you-mean, a problem under ``strict``): KisFlow's Go YAML decoder ignores
    them, so a KisFlow folder with an extra key must load, and a typo must not pass
    unnoticed.
    """

    keys: tuple[str, ...]
    checks: dict[str, _Check]
    sections: dict[str, tuple[_Table, bool]]
    required: tuple[str, ...]


def _table(cls: type[Any], extra: Mapping[str, _Check] | None = None) -> _Table:
    """The table of ``cls``'s YAML keys (``extra``: keys the loader reads itself)."""
    fields = yaml_fields(cls)
    checks = {f.name: f.key.check for f in fields if f.key.check is not None}
    sections = {
        f.name: (_table(f.key.section), f.key.many) for f in fields if f.key.section is not None
    }
    required = tuple(f.name for f in fields if f.required)
    extra = extra or {}
    return _Table(
        keys=(*(f.name for f in fields), *extra),
        checks={**checks, **extra},
        sections=sections,
        required=required,
    )


_KINDS: dict[str, type[Any]] = {
    "flow": FlowConfig,
    "func": FuncConfig,
    "conn": ConnConfig,
    "global": GlobalConfig,
}
"""The config class each ``kistype`` holds; its fields are the file's keys."""

_LOADER_KEYS: dict[str, dict[str, _Check]] = {"func": {"faas": _is_reference}}
"""Keys the loader reads itself, outside the schema: ``faas`` is resolved, not kept."""

_TABLES: dict[str, _Table] = {
    kind: _table(cls, _LOADER_KEYS.get(kind)) for kind, cls in _KINDS.items()
}
"""Each kind of file's checks, derived once from the config classes' schema."""


@attrs.frozen
class ConfigWarning:
    """Something a folder loads with that may not be what was meant: file, key, why."""

    path: str
    key: str | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.key is None else f"{self.path}: {self.key}"
        return f"{where}: {self.message}"


class _Problems:
    """Collects one ``ConfigError`` per problem and the warnings, each naming file and key.

    Under ``strict`` a warning is a problem too.
    """

    def __init__(self, *, strict: bool = False) -> None:
        self.items: list[ConfigError] = []
        self.warnings: list[ConfigWarning] = []
        self.strict = strict

    def add(
        self, path: Path | str, key: str | None, message: str, cause: BaseException | None = None
    ) -> None:
        where = f"{path}" if key is None else f"{path}: {key}"
        err = ConfigError(f"{where}: {message}", path=str(path), key=key)
        err.__cause__ = cause
        self.items.append(err)

    def warn(self, path: Path | str, key: str | None, message: str) -> None:
        if self.strict:
            self.add(path, key, message)
        else:
            self.warnings.append(ConfigWarning(str(path), key, message))

    def __len__(self) -> int:
        return len(self.items)


@attrs.frozen
class _Entry:
    """One parsed file's config object, with the file it came from."""

    path: Path
    config: Any
    faas: str | None = None


@attrs.frozen
class LoadedConfig:
    """What ``load_config_dir`` read: the flows it built and every config by name."""

    root: Path
    flows: dict[str, Flow]
    """The enabled flows, built and registered in the pool."""
    disabled: tuple[str, ...]
    """Names of flows with ``status: 0`` (read and checked, not built: KisFlow skips them)."""
    funcs: dict[str, FuncConfig]
    """Every function config, bound to its connector config."""
    conns: dict[str, ConnConfig]
    global_config: GlobalConfig | None
    files: dict[str, Path]
    """``"<kistype>:<name>"`` -> the file that defined it (``"global"`` for the global file)."""
    warnings: tuple[ConfigWarning, ...] = ()
    """What loaded but may not be meant: unknown keys (ignored, as KisFlow-Go does) and
    flows without ``status`` (enabled); each names file and key. ``strict=True`` makes
    them problems instead."""

    def enable_metrics(self) -> MetricsServer | None:
        """Turn metrics on as the folder's global config says; loading alone never does.

        Nothing happens without a global file or with ``prometheus_enable`` false. With
        ``prometheus_listen`` true the ``/metrics`` endpoint starts at
        ``prometheus_serve`` (127.0.0.1:20004 when empty) and is returned; stop it with
        ``kisflow.metrics.disable()``.

        Raises:
            ConfigError: bad or busy address, or prometheus_client missing; names the file.
        """
        from kisflow import metrics

        if self.global_config is None or not self.global_config.prometheus_enable:
            return None
        try:
            return metrics.enable(self.global_config)  # a failed start changes nothing
        except ConfigError as exc:
            path = str(self.files.get("global:global", self.root))
            raise ConfigError(f"{path}: {exc}", path=path, key=exc.key) from exc


def _yaml_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(_SUFFIXES))
    return found


def _read_yaml(path: Path, problems: _Problems, claimed: list[tuple[str, str]]) -> Any:
    """The file's YAML document, or None after recording why it cannot be read.

    At most ``_yaml.MAX_FILE_BYTES`` are read, whatever the file claims to be (a FIFO
    or ``/dev/zero`` behind a link), and the document is built by ``_yaml.load``. When
    it fails part way, ``claimed`` gets the names its keys read so far define.
    """
    limit = _yaml.MAX_FILE_BYTES
    chunks: list[bytes] = []
    size = 0
    try:
        with path.open("rb") as f:
            while size <= limit and (chunk := f.read(1 << 20)):  # no 32 MiB buffer per file
                chunks.append(chunk)
                size += len(chunk)
    except OSError as exc:
        problems.add(path, None, f"cannot be read: {exc}", exc)
        return None
    raw = b"".join(chunks)
    if size > limit:
        problems.add(
            path,
            None,
            f"is larger than {limit // (1024 * 1024)} MiB, the most a config file may be",
        )
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.add(path, None, f"is not UTF-8 text: {exc}", exc)
        return None
    read: dict[Any, Any] = {}
    try:
        data = _yaml.load(text, read)
    except _yaml.Refused as exc:
        problems.add(path, exc.key, f"line {exc.line}: {exc.reason}", exc)
        claimed.extend(_claimed_names(read))
        return None
    except yaml.YAMLError as exc:
        claimed.extend(_claimed_names(read))
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        problems.add(path, None, f"is not valid YAML{at}: {problem}", exc)
        return None
    if data is None:
        problems.add(path, "kistype", "is empty; expected a mapping with kistype: flow, func, ...")
        return None
    if not isinstance(data, dict):
        problems.add(
            path,
            None,
            f"must hold a mapping with a kistype key, got a {type(data).__name__}",
        )
        return None
    return data


def _unknown(key: Any, table: _Table, kind: str, prefix: str, *, strict: bool) -> str:
    """Why ``key`` is unknown here: a did-you-mean and the keys this section knows."""
    known = [*table.keys, *(["kistype"] if not prefix else [])]
    text = str(key)
    section = f"{prefix.rstrip('.')} in " if prefix else ""
    why = f"is not a key of {section}a {kind} file"
    if not strict:
        why += " (ignored, as KisFlow-Go does)"
    guess = difflib.get_close_matches(text, known, n=1, cutoff=0.6)
    nested = [f"{name}.{text}" for name, (sub, _) in table.sections.items() if text in sub.keys]
    others = [other for other, t in _TABLES.items() if other != kind and text in t.keys]
    if guess:
        why += f"; did you mean {guess[0]!r}?"
    elif nested:
        why += f"; did you mean {nested[0]!r}? It belongs under {nested[0].split('.')[0]}:."
    elif others and not prefix:
        why += f"; it is a key of {others[0]} files: is kistype right?"
    else:
        why += "."
    return f"{why} Known keys: {', '.join(known)}"


def _clean_section(
    data: Mapping[Any, Any],
    table: _Table,
    kind: str,
    path: Path,
    prefix: str,
    problems: _Problems,
) -> dict[Any, Any] | None:
    """The section's known keys (and its nested ones'), reporting every problem; None if any.

    An unknown key is a warning and left out (KisFlow-Go ignores it), a problem under
    ``strict``.
    """
    before = len(problems)
    clean: dict[Any, Any] = {}
    unknown: list[str] = []
    for key, value in data.items():
        if isinstance(key, str) and (key in table.checks or key in table.sections):
            clean[key] = value
        elif not (key == "kistype" and not prefix):
            why = _unknown(key, table, kind, prefix, strict=problems.strict)
            problems.warn(path, f"{prefix}{key}", why)
            unknown.append(str(key))
    for key in table.required:
        if key not in clean:
            typo = difflib.get_close_matches(key, unknown, n=1, cutoff=0.6)
            given = f" (the file gives {prefix}{typo[0]}: a typo of {key}?)" if typo else ""
            problems.add(path, f"{prefix}{key}", f"is missing{given}")
    for key, check in table.checks.items():
        if key in clean:
            wrong = check(clean[key])
            if wrong is not None:
                problems.add(path, f"{prefix}{key}", f"{wrong}, got {show_typed(clean[key])}")
    for key, (sub, many) in table.sections.items():
        value = clean.get(key)
        if value is None:
            continue
        if many:
            clean[key] = _clean_items(value, sub, kind, path, f"{prefix}{key}", problems)
        elif not isinstance(value, dict):
            problems.add(path, f"{prefix}{key}", f"must be a mapping, got {show_typed(value)}")
        else:
            clean[key] = _clean_section(value, sub, kind, path, f"{prefix}{key}.", problems)
    return clean if len(problems) == before else None


def _clean_items(
    value: Any, table: _Table, kind: str, path: Path, key: str, problems: _Problems
) -> list[Any] | None:
    """Check a list of mappings such as ``flows`` as ``_clean_section`` does each one."""
    if not isinstance(value, list):
        shape = "{" + ", ".join(table.keys) + "}"
        problems.add(path, key, f"must be a list of {shape}, got {show_typed(value)}")
        return None
    needs = f" with {', '.join(table.required)}" if table.required else ""
    out: list[Any] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            problems.add(path, f"{key}[{i}]", f"must be a mapping{needs}, got {show_typed(item)}")
        else:
            out.append(_clean_section(item, table, kind, path, f"{key}[{i}].", problems))
    return out


def _parse(path: Path, data: dict[Any, Any], problems: _Problems) -> tuple[str, _Entry] | None:
    """Check one file's mapping and build its config object (None on any problem)."""
    kistype = data.get("kistype")
    if "kistype" not in data:
        looks = [k for k, t in _TABLES.items() if any(r in data for r in t.required)]
        like = f"; its keys are those of a {looks[0]} file (kistype: {looks[0]})" if looks else ""
        problems.add(path, "kistype", f"is missing; expected one of {', '.join(KISTYPES)}{like}")
        return None
    if not isinstance(kistype, str) or kistype.lower() not in KISTYPES:
        guess = difflib.get_close_matches(str(kistype).lower(), KISTYPES, n=1, cutoff=0.5)
        mean = f"; did you mean {guess[0]!r}?" if guess else ""
        problems.add(
            path,
            "kistype",
            f"is {show_typed(kistype)}; expected one of {', '.join(KISTYPES)}{mean}",
        )
        return None
    kind = kistype.lower()
    fields = _clean_section(data, _TABLES[kind], kind, path, "", problems)
    if fields is None:
        return None
    if kind == "flow" and "status" not in fields:
        problems.warn(
            path,
            "status",
            "is missing: kisflow enables the flow, KisFlow-Go would leave it disabled; "
            "write status: 1 (or 0) to say which",
        )
    faas = fields.pop("faas", None)
    try:
        config = _KINDS[kind](**fields)
    except (ConfigError, TypeError) as exc:  # the checks above should catch these first
        problems.add(path, getattr(exc, "key", None), str(exc), exc)
        return None
    return kind, _Entry(path=path, config=config, faas=faas)


def _name_of(kind: str, config: Any) -> str:
    if kind == "flow":
        return str(config.flow_name)
    if kind == "func":
        return str(config.fname)
    if kind == "conn":
        return str(config.cname)
    return "global"


def _inside(path: Path, places: Iterable[Path]) -> bool:
    return any(path == place or path.is_relative_to(place) for place in places)


def _place_addrs(
    conn: ConnConfig,
    path: Path,
    places: Sequence[Path],
    pool: _pool.Pool,
    problems: _Problems,
) -> ConnConfig:
    """A file connector's ``addrs``, resolved from its conn file's folder and kept inside.

    Which types take a file is the registry's say (``ConnectorType.file_path``), so a
    pool's own or an installed type is placed as the built-ins are. The resolved path
    (links followed) must be inside ``places``: the config folder, then the places the
    caller allows; one that leaves them (``..``, ``~``, an absolute path, a link) is a
    problem naming the file and ``addrs``, since a row written there could be run as
    code (``~/.bashrc``).
    """
    from kisflow.connector import find_type

    conn_type = find_type(conn.type, pool)
    if conn_type is None or not conn_type.file_path or not conn.addrs:
        return conn
    try:
        resolved = (path.parent / Path(conn.addrs).expanduser()).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a link loop, a NUL in the path
        why = f"{show_value(conn.addrs)} is not a usable file path: {exc}"
        problems.add(path, "addrs", why, exc)
        return conn
    if not _inside(resolved, places):
        allowed = ", ".join(str(p) for p in places[1:])
        problems.add(
            path,
            "addrs",
            f"connector {conn.cname!r} ({conn.type}): {show_value(conn.addrs)} resolves to "
            f"{resolved}, outside the config folder {places[0]}"
            + (f" and the allowed places ({allowed})" if allowed else "")
            + "; keep file connectors inside the folder, or allow the place with "
            "allow_paths=[...] (CLI: --allow-path DIR)",
        )
        return conn
    return attrs.evolve(conn, addrs=str(resolved))


def _bind(conn: ConnConfig, funcs: list[FuncConfig]) -> ConnConfig:
    """Record the Save/Load functions bound to ``conn`` in its save/load lists."""
    save, load = list(conn.save), list(conn.load)
    for func in funcs:
        if func.fmode is Mode.SAVE and func.fname not in save:
            save.append(func.fname)
        elif func.fmode is Mode.LOAD and func.fname not in load:
            load.append(func.fname)
    return attrs.evolve(conn, save=tuple(save), load=tuple(load))


def load_config_dir(
    path: str | os.PathLike[str],
    pool: _pool.Pool | None = None,
    *,
    allow_imports: bool = False,
    check_faas: bool = True,
    allow_paths: Iterable[str | os.PathLike[str]] = (),
    strict: bool = False,
) -> LoadedConfig:
    """Import a folder of KisFlow YAML configs: build its enabled flows and register them.

    Args:
        path: the folder, walked recursively (hidden folders skipped).
        pool: where to register the flows and look FaaS up (default: the current pool).
        allow_imports: let a func config name its FaaS as ``faas: module:function``
            (importing runs code, so it is off by default).
        check_faas: report functions with no FaaS registered (Save/Load stages on a
            registered connector type need none); off lets you register FaaS after loading.
        allow_paths: folders (or files) outside ``path`` that file connectors (``jsonl``,
            ``sqlite``) may use; by default their ``addrs`` must stay inside ``path``.
        strict: make every warning a problem: unknown keys, a flow without ``status``.

    Returns:
        The flows built and every config read, by name, with the warnings.

    Raises:
        ConfigError: listing every problem of the folder; ``errors`` holds one
            ``ConfigError`` per problem with its ``path`` and ``key``. Nothing is
            registered when there is any problem.
    """
    root = Path(path)
    target = pool if pool is not None else _pool.current()
    problems = _Problems(strict=strict)
    if not root.is_dir():
        problems.add(root, None, "is not a folder of config files")
        raise _summary(root, problems)
    files = _yaml_files(root)
    if not files:
        problems.add(root, None, "holds no .yml or .yaml files")
        raise _summary(root, problems)
    places = [root.resolve(), *(Path(p).expanduser().resolve() for p in allow_paths)]

    seen: dict[str, dict[str, _Entry]] = {k: {} for k in KISTYPES}
    broken: dict[str, set[str]] = {k: set() for k in KISTYPES}
    for file in files:
        claimed: list[tuple[str, str]] = []
        data = _read_yaml(file, problems, claimed)
        parsed = None if data is None else _parse(file, data, problems)
        if parsed is None:
            for kind, name in claimed if data is None else _claimed_names(data):
                broken[kind].add(name)
            continue
        kind, entry = parsed
        name = _name_of(kind, entry.config)
        first = seen[kind].get(name)
        if first is not None:
            key = {"flow": "flow_name", "func": "fname", "conn": "cname"}.get(kind, "kistype")
            what = "a second global config" if kind == "global" else f"{kind} {name!r} again"
            problems.add(file, key, f"defines {what}; it is already defined in {first.path}")
            continue
        if kind == "conn":
            placed = _place_addrs(entry.config, file, places, target, problems)
            entry = attrs.evolve(entry, config=placed)
        seen[kind][name] = entry

    conns = _link_connectors(seen, broken, problems)
    funcs = {name: e.config for name, e in seen["func"].items()}
    for name, entry in seen["func"].items():
        cname = entry.config.option.cname
        if cname and cname in conns:
            funcs[name] = entry.config.with_connector(conns[cname])
    _check_flow_functions(seen, broken, problems)
    refs = _resolve_references(seen, target, allow_imports, problems)
    if check_faas:
        _check_faas(seen, funcs, refs, target, problems)
    if problems:
        raise _summary(root, problems)

    for fname, fn in refs.items():
        if target.get_faas(fname) is None:
            target.faas(fname, fn)
    flows = _build_flows(seen, funcs, pool, check_faas, problems)
    for name in flows:
        if target.get_flow(name) is not None:
            problems.add(
                seen["flow"][name].path, "flow_name", f"flow {name!r} is already in the pool"
            )
    if problems:
        raise _summary(root, problems)
    for name, flow in flows.items():
        target.add_flow(name, flow)
    for warning in problems.warnings:
        logger.warning("config: {}", warning)
    global_entry = seen["global"].get("global")
    files_by_name = {f"{k}:{n}": e.path for k in KISTYPES for n, e in seen[k].items()}
    return LoadedConfig(
        root=root,
        flows=flows,
        disabled=tuple(n for n, e in seen["flow"].items() if not e.config.enabled),
        funcs=funcs,
        conns=conns,
        global_config=None if global_entry is None else global_entry.config,
        files=files_by_name,
        warnings=tuple(problems.warnings),
    )


def _claimed_names(data: Mapping[Any, Any]) -> list[tuple[str, str]]:
    """The (kind, name)s a file that has problems meant to define, as far as it says.

    Other files naming them are not told "no func file defines ...": the cause is that
    file's own problem, already reported.
    """
    kistype = data.get("kistype")
    kind = kistype.lower() if isinstance(kistype, str) else None
    found = []
    for each, key in (("flow", "flow_name"), ("func", "fname"), ("conn", "cname")):
        name = data.get(key)
        if isinstance(name, str) and name and (kind not in KISTYPES or kind == each):
            found.append((each, name))
    return found


def _link_connectors(
    seen: dict[str, dict[str, _Entry]], broken: dict[str, set[str]], problems: _Problems
) -> dict[str, ConnConfig]:
    bound: dict[str, list[FuncConfig]] = {}
    for name, entry in seen["func"].items():
        cname = entry.config.option.cname
        if not cname or cname in broken["conn"]:
            continue
        if cname not in seen["conn"]:
            known = ", ".join(sorted(seen["conn"])) or "none"
            problems.add(
                entry.path,
                "option.cname",
                f"function {name!r} names connector {cname!r}, which no conn file defines"
                f"{_did_you_mean(cname, seen['conn'])} (connectors: {known})",
            )
            continue
        bound.setdefault(cname, []).append(entry.config)
    return {
        cname: _bind(entry.config, bound.get(cname, [])) for cname, entry in seen["conn"].items()
    }


def _check_flow_functions(
    seen: dict[str, dict[str, _Entry]], broken: dict[str, set[str]], problems: _Problems
) -> None:
    for flow_name, entry in seen["flow"].items():
        for i, item in enumerate(entry.config.flows):
            if item.fname not in seen["func"] and item.fname not in broken["func"]:
                problems.add(
                    entry.path,
                    f"flows[{i}].fname",
                    f"flow {flow_name!r} names function {item.fname!r}, which no func file "
                    f"defines{_did_you_mean(item.fname, seen['func'])}",
                )


def _did_you_mean(name: str, names: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``names``, or nothing."""
    guess = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f"; did you mean {guess[0]!r}?" if guess else ""


def _resolve_references(
    seen: dict[str, dict[str, _Entry]],
    pool: _pool.Pool,
    allow_imports: bool,
    problems: _Problems,
) -> dict[str, Callable[..., Any]]:
    refs: dict[str, Callable[..., Any]] = {}
    for fname, entry in seen["func"].items():
        if entry.faas is None:
            continue
        try:
            fn = _faasref.resolve(entry.faas, allow_imports=allow_imports)
        except ConfigError as exc:
            problems.add(entry.path, "faas", str(exc), exc.__cause__)
            continue
        existing = pool.get_faas(fname)
        if existing is not None and existing.fn is not fn:
            problems.add(
                entry.path,
                "faas",
                f"function {fname!r} already has another FaaS registered; "
                f"drop the faas key or the other registration",
            )
            continue
        refs[fname] = fn
    return refs


def _check_faas(
    seen: dict[str, dict[str, _Entry]],
    funcs: dict[str, FuncConfig],
    refs: dict[str, Callable[..., Any]],
    pool: _pool.Pool,
    problems: _Problems,
) -> None:
    from kisflow.connector import find_type

    unknown_types: set[str] = set()  # conns reported once for an unknown type
    for flow_name, entry in seen["flow"].items():
        if not entry.config.enabled:
            continue
        for i, item in enumerate(entry.config.flows):
            func = funcs.get(item.fname)
            if func is None or item.fname in refs or pool.get_faas(item.fname) is not None:
                continue
            if func.option.cname and func.conn is None:
                continue  # its missing connector is reported already
            conn = func.conn
            serves = func.fmode in (Mode.SAVE, Mode.LOAD) and conn is not None
            if serves and conn is not None and find_type(conn.type, pool) is not None:
                continue  # a registered connector type serves it (kisflow._plan's default)
            if serves and conn is not None and _unknown_type(conn, seen, unknown_types, problems):
                continue  # the conn file's type is the cause, reported there
            typed = (
                f" (its connector type {conn.type!r} is not registered, so a FaaS must serve it)"
                if serves and conn is not None and conn.type
                else ""
            )
            problems.add(
                entry.path,
                f"flows[{i}].fname",
                f"flow {flow_name!r} function {item.fname!r} "
                f"({seen['func'][item.fname].path}) has no FaaS registered{typed}; register it "
                f"with kisflow.faas({item.fname!r}) (CLI: --faas FILE) before loading",
            )


def _unknown_type(
    conn: ConnConfig,
    seen: dict[str, dict[str, _Entry]],
    reported: set[str],
    problems: _Problems,
) -> bool:
    """Report a conn ``type`` that looks like a typo of a known type; whether it does.

    A Save/Load function with no FaaS needs its connector's type to serve it, so a
    ``type: sqlit`` is the cause to name, not the missing FaaS. A type like no known one
    (KisFlow's ``mysql``, served by a user's FaaS and CaaS) leaves the FaaS message.
    """
    known = sorted(_state.connector_types)
    guess = difflib.get_close_matches(conn.type.strip().lower(), known, n=1, cutoff=0.6)
    if not guess:
        return False
    if conn.cname not in reported:
        reported.add(conn.cname)
        entry = seen["conn"].get(conn.cname)
        problems.add(
            entry.path if entry is not None else "?",
            "type",
            f"connector {conn.cname!r} has type {conn.type!r}, which is not a known "
            f"connector type; did you mean {guess[0]!r}? Known types: {', '.join(known)} "
            f"(others need their own FaaS, or kisflow.connector_type)",
        )
    return True


def _build_flows(
    seen: dict[str, dict[str, _Entry]],
    funcs: dict[str, FuncConfig],
    pool: _pool.Pool | None,
    check_faas: bool,
    problems: _Problems,
) -> dict[str, Flow]:
    flows: dict[str, Flow] = {}
    for name, entry in seen["flow"].items():
        if not entry.config.enabled:
            continue
        try:
            flow = Flow(entry.config, pool=pool)
            for item in entry.config.flows:
                flow.append_function(funcs[item.fname], item.params)
            if check_faas:
                flow.validate()
        except KisFlowError as exc:
            problems.add(entry.path, "flows", f"flow {name!r} cannot be built: {exc}", exc)
            continue
        flows[name] = flow
    return flows


def _summary(root: Path, problems: _Problems) -> ConfigError:
    """The folder's one error: every problem in ``errors``; each warning is a note."""
    n = len(problems.items)
    lines = "\n".join(f"  - {p}" for p in problems.items)
    error = ConfigError(
        f"{n} problem{'s' if n != 1 else ''} in config folder {root}:\n{lines}",
        path=str(root),
        key=problems.items[0].key if n == 1 else None,
        errors=problems.items,
    )
    for warning in problems.warnings:  # a typo's warning often says what the problem is
        error.add_note(f"warning: {warning}")
    return error


# -- export -----------------------------------------------------------------------------


class _InlineDumper(yaml.SafeDumper):
    """Writes one value on one line (flow style); strings that need it are double-quoted."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if value == "" or not value.isprintable():
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_InlineDumper.add_representer(str, _represent_str)


def _inline(value: Any) -> str:
    text = yaml.dump(
        value,
        Dumper=_InlineDumper,
        default_flow_style=True,
        width=sys.maxsize,
        allow_unicode=True,
        sort_keys=False,
    )
    if text.endswith("\n...\n"):
        text = text[: -len("\n...\n")]
    return text.strip()


def _mapping_lines(key: str, value: Mapping[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    if not value:
        return [f"{pad}{key}: {{}}"]
    return [f"{pad}{key}:"] + [f"{pad}    {_inline(k)}: {_inline(v)}" for k, v in value.items()]


def _list_lines(key: str, values: tuple[str, ...], indent: int) -> list[str]:
    pad = " " * indent
    if not values:
        return [f"{pad}{key}: []"]
    return [f"{pad}{key}:"] + [f"{pad}    - {_inline(v)}" for v in values]


def _key_lines(field: YamlField, value: Any, indent: int) -> list[str]:
    """One key as KisFlow writes it: nested sections and lists indented by four."""
    pad, name = " " * indent, field.name
    if field.key.section is not None and field.key.many:
        if not value:
            return [f"{pad}{name}: []"]
        lines = [f"{pad}{name}:"]
        for item in value:  # "    - " starts the item's first key; the others align to it
            first, *rest = _section_lines(item, indent + 6)
            lines += [f"{pad}    - {first.lstrip()}", *rest]
        return lines
    if field.key.section is not None:
        return [f"{pad}{name}:", *_section_lines(value, indent + 4)]
    if isinstance(value, Mapping):
        return _mapping_lines(name, value, indent)
    if isinstance(value, tuple):
        return _list_lines(name, value, indent)
    if isinstance(value, enum.Enum):
        value = value.value
    return [f"{pad}{name}: {_inline(value)}"]


def _section_lines(config: Any, indent: int) -> list[str]:
    """Every YAML key of ``config``'s schema, by rank then declaration order."""
    fields = sorted(yaml_fields(type(config)), key=lambda f: f.key.rank)
    return [line for f in fields for line in _key_lines(f, getattr(config, f.name), indent)]


def _config_yaml(kind: str, config: Any) -> str:
    """A config as the text of a ``kistype: <kind>`` file."""
    return "\n".join([f"kistype: {kind}", *_section_lines(config, 0)]) + "\n"


def flow_yaml(config: FlowConfig) -> str:
    """A flow config as KisFlow's ``flow-<name>.yaml`` text."""
    return _config_yaml("flow", config)


def func_yaml(config: FuncConfig) -> str:
    """A function config as KisFlow's ``func-<fname>.yaml`` text (``conn`` is its own file)."""
    return _config_yaml("func", config)


def conn_yaml(config: ConnConfig) -> str:
    """A connector config as KisFlow's ``conn-<cname>.yaml`` text."""
    return _config_yaml("conn", config)


def global_yaml(config: GlobalConfig) -> str:
    """The global config as KisFlow's ``kistype: global`` file text."""
    return _config_yaml("global", config)


def _file_name(prefix: str, name: str) -> str:
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00"):
        raise ConfigError(
            f"cannot export {prefix} {name!r}: the name cannot be a file name "
            f"(no '/', '\\\\' or NUL, not '.' or '..')",
            key={"flow": "flow_name", "func": "fname", "conn": "cname"}[prefix],
        )
    return f"{prefix}-{name}.yaml"


def _check_depth(value: Any, above: int, what: str, key: str) -> None:
    """Refuse a value that would nest deeper than ``_yaml.MAX_DEPTH`` in its file.

    ``above`` counts the mappings and lists the file holds it in, so what is written
    is exactly what ``load_config_dir`` accepts (and the writer never recurses deeper
    than that).
    """
    levels = above + _yaml.depth(value)
    if levels > _yaml.MAX_DEPTH:
        shown = "itself (it contains itself)" if levels > sys.maxsize // 2 else f"{levels} levels"
        raise ConfigError(
            f"cannot export {what}: {key} nests {shown} deep in its file; a config file "
            f"nests at most {_yaml.MAX_DEPTH} (load_config_dir refuses more)",
            key=key,
        )


def _relative_addrs(conn: ConnConfig, out: Path, pool: _pool.Pool) -> ConnConfig:
    """A file connector's absolute ``addrs`` inside ``out``, written relative to it.

    So the exported folder loads from anywhere, its files inside it; a path outside
    ``out`` stays absolute (loading it again needs ``allow_paths``).
    """
    from kisflow.connector import find_type

    conn_type = find_type(conn.type, pool)
    if conn_type is None or not conn_type.file_path or not conn.addrs:
        return conn
    addr = Path(conn.addrs)
    if not addr.is_absolute():
        return conn
    try:
        relative = addr.resolve().relative_to(out.resolve())
    except (ValueError, OSError, RuntimeError):
        return conn
    return attrs.evolve(conn, addrs=relative.as_posix())


def export_config(flow: Flow, folder: str | os.PathLike[str]) -> list[Path]:
    """Write ``flow`` as KisFlow config files into ``folder`` (created if missing).

    Writes ``flow-<name>.yaml``, one ``func-<fname>.yaml`` per function and one
    ``conn-<cname>.yaml`` per connector; ``load_config_dir`` on the folder gives back an
    equal flow. A file connector's path inside ``folder`` is written relative to it.
    Returns the files written, in that order; nothing is written on an error.

    Raises:
        ConfigError: a name cannot be a file name, two functions (or connectors) of
            the flow share a name with different configs, params nest deeper than a
            config file may, or a value cannot be written as YAML.
    """
    out = Path(folder)
    funcs: dict[str, FuncConfig] = {}
    conns: dict[str, ConnConfig] = {}
    by_conn: dict[str, list[FuncConfig]] = {}
    for stage in flow.stages:
        if stage.config.conn is not None:
            by_conn.setdefault(stage.config.conn.cname, []).append(stage.config)
    for stage in flow.stages:
        func = stage.config
        if funcs.setdefault(func.fname, func) != func:
            raise ConfigError(
                f"flow {flow.name!r} has two functions named {func.fname!r} with different "
                f"configs; KisFlow's files key functions by name",
                key="fname",
            )
        if func.conn is not None:
            conn = _bind(func.conn, by_conn[func.conn.cname])
            if conns.setdefault(conn.cname, conn) != conn:
                raise ConfigError(
                    f"flow {flow.name!r} has two connectors named {conn.cname!r} with "
                    f"different configs",
                    key="cname",
                )
    conns = {n: _relative_addrs(c, out, flow.pool) for n, c in conns.items()}
    # The flow file lists the stages the flow runs (what link/append_function built).
    config = attrs.evolve(
        flow.config,
        flows=tuple(
            FlowFunctionParam(fname=s.name, params=dict(s.flow_params)) for s in flow.stages
        ),
    )
    # Depths in each file: flow > flows > item > params; func > option > default_params.
    for i, item in enumerate(config.flows):
        _check_depth(item.params, 3, f"flow {flow.name!r}", f"flows[{i}].params")
    for name, func in funcs.items():
        _check_depth(func.option.default_params, 2, f"function {name!r}", "option.default_params")
    for name, conn in conns.items():
        _check_depth(conn.params, 1, f"connector {name!r}", "params")
    names = [_file_name("flow", flow.name)]
    names += [_file_name("func", n) for n in funcs]
    names += [_file_name("conn", n) for n in conns]
    try:
        texts = [flow_yaml(config)]
        texts += [func_yaml(c) for c in funcs.values()]
        texts += [conn_yaml(c) for c in conns.values()]
    except (yaml.YAMLError, ValueError, TypeError) as exc:  # an object, a 5,000-digit int
        raise ConfigError(
            f"cannot export flow {flow.name!r}: a value cannot be written as YAML: "
            f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from exc
    out.mkdir(parents=True, exist_ok=True)
    files = [out / name for name in names]
    for file, text in zip(files, texts, strict=True):
        file.write_text(text, encoding="utf-8")
    return files
