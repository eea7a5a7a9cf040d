"""KisFlow's YAML config folders: import them into flows, export flows back to files.

``load_config_dir(path)`` walks a folder, reads every ``.yml``/``.yaml`` file (with
YAML's safe loader only: no tag can build a Python object), checks every key, links
functions to flows and connectors to functions, builds the enabled flows and registers
them in the pool. It reports every problem of the folder at once: one ``ConfigError``
whose ``errors`` hold one ``ConfigError`` per problem, each naming its file and key.

``export_config(flow, folder)`` writes ``flow-<name>.yaml``, ``func-<fname>.yaml`` and
``conn-<cname>.yaml`` in the shape of KisFlow's own exports.
"""

from __future__ import annotations

import enum
import os
import reprlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import yaml

from kisflow import _faasref, _pool
from kisflow.config import (
    ConnConfig,
    FlowConfig,
    FlowFunctionParam,
    FuncConfig,
    GlobalConfig,
    YamlField,
    yaml_fields,
)
from kisflow.errors import ConfigError, KisFlowError
from kisflow.flow import Flow
from kisflow.modes import Mode

if TYPE_CHECKING:
    from kisflow.metrics import MetricsServer

__all__ = ["KISTYPES", "LoadedConfig", "export_config", "load_config_dir"]

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
    whether they are a list of mappings. Keys outside the table are reported: a typo
    must not be silently ignored, as KisFlow's Go YAML decoder does.
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


class _Problems:
    """Collects one ``ConfigError`` per problem, each naming its file and key."""

    def __init__(self) -> None:
        self.items: list[ConfigError] = []

    def add(
        self, path: Path | str, key: str | None, message: str, cause: BaseException | None = None
    ) -> None:
        where = f"{path}" if key is None else f"{path}: {key}"
        err = ConfigError(f"{where}: {message}", path=str(path), key=key)
        err.__cause__ = cause
        self.items.append(err)

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


def _read_yaml(path: Path, problems: _Problems) -> Any:
    """The file's YAML document, or None after recording why it cannot be read."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.add(path, None, f"is not UTF-8 text: {exc}", exc)
        return None
    except OSError as exc:
        problems.add(path, None, f"cannot be read: {exc}", exc)
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        problems.add(path, None, f"is not valid YAML{at}: {problem}", exc)
        return None
    except RecursionError as exc:
        problems.add(path, None, "is not usable YAML: nested too deeply", exc)
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


def _check_section(
    data: Mapping[Any, Any],
    table: _Table,
    path: Path,
    prefix: str,
    problems: _Problems,
    *,
    ignore: tuple[str, ...] = (),
) -> bool:
    """Report every problem of one section (and its nested ones); True when none."""
    before = len(problems)
    for key in data:
        if key in ignore or key in table.sections:
            continue
        if not isinstance(key, str) or key not in table.checks:
            known = ", ".join(sorted(table.checks))
            problems.add(path, f"{prefix}{key}", f"is not a known key; known keys: {known}")
    for key in table.required:
        if key not in data:
            problems.add(path, f"{prefix}{key}", "is missing")
    for key, check in table.checks.items():
        if key in data:
            why = check(data[key])
            if why is not None:
                problems.add(path, f"{prefix}{key}", f"{why}, got {_show(data[key])}")
    for key, (sub, many) in table.sections.items():
        value = data.get(key)
        if value is None:
            continue
        if many:
            _check_items(value, sub, path, f"{prefix}{key}", problems)
        elif not isinstance(value, dict):
            problems.add(path, f"{prefix}{key}", f"must be a mapping, got {_show(value)}")
        else:
            _check_section(value, sub, path, f"{prefix}{key}.", problems)
    return len(problems) == before


def _check_items(value: Any, table: _Table, path: Path, key: str, problems: _Problems) -> None:
    """Report every problem of a list of mappings such as ``flows``."""
    if not isinstance(value, list):
        shape = "{" + ", ".join(table.keys) + "}"
        problems.add(path, key, f"must be a list of {shape}, got {_show(value)}")
        return
    needs = f" with {', '.join(table.required)}" if table.required else ""
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            problems.add(path, f"{key}[{i}]", f"must be a mapping{needs}, got {_show(item)}")
        else:
            _check_section(item, table, path, f"{key}[{i}].", problems)


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 60
_REPR.maxother = 60


def _show(value: Any) -> str:
    """A short, bounded description of a value (aliases can make YAML values huge)."""
    return f"{type(value).__name__} {_REPR.repr(value)}"


def _parse(path: Path, data: dict[Any, Any], problems: _Problems) -> tuple[str, _Entry] | None:
    """Check one file's mapping and build its config object (None on any problem)."""
    kistype = data.get("kistype")
    if "kistype" not in data:
        problems.add(path, "kistype", f"is missing; expected one of {', '.join(KISTYPES)}")
        return None
    if not isinstance(kistype, str) or kistype.lower() not in KISTYPES:
        problems.add(
            path,
            "kistype",
            f"is {_show(kistype)}; expected one of {', '.join(KISTYPES)}",
        )
        return None
    kind = kistype.lower()
    if not _check_section(data, _TABLES[kind], path, "", problems, ignore=("kistype",)):
        return None
    fields = {k: v for k, v in data.items() if k != "kistype"}
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


def _absolute_addrs(conn: ConnConfig, path: Path, pool: _pool.Pool) -> ConnConfig:
    """A file connector's relative ``addrs``, made relative to its conn file's folder.

    Which types take a file is the registry's say (``ConnectorType.file_path``), so a
    pool's own or an installed type resolves its path as the built-ins do.
    """
    from kisflow.connector import find_type

    conn_type = find_type(conn.type, pool)
    if conn_type is None or not conn_type.file_path or not conn.addrs:
        return conn
    addr = Path(conn.addrs).expanduser()
    if addr.is_absolute():
        return conn
    return attrs.evolve(conn, addrs=str((path.parent / addr).resolve()))


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
) -> LoadedConfig:
    """Import a folder of KisFlow YAML configs: build its enabled flows and register them.

    Args:
        path: the folder, walked recursively (hidden folders skipped).
        pool: where to register the flows and look FaaS up (default: the current pool).
        allow_imports: let a func config name its FaaS as ``faas: module:function``
            (importing runs code, so it is off by default).
        check_faas: report functions with no FaaS registered (Save/Load stages on a
            registered connector type need none); off lets you register FaaS after loading.

    Returns:
        The flows built and every config read, by name.

    Raises:
        ConfigError: listing every problem of the folder; ``errors`` holds one
            ``ConfigError`` per problem with its ``path`` and ``key``. Nothing is
            registered when there is any problem.
    """
    root = Path(path)
    target = pool if pool is not None else _pool.current()
    problems = _Problems()
    if not root.is_dir():
        problems.add(root, None, "is not a folder of config files")
        raise _summary(root, problems)
    files = _yaml_files(root)
    if not files:
        problems.add(root, None, "holds no .yml or .yaml files")
        raise _summary(root, problems)

    seen: dict[str, dict[str, _Entry]] = {k: {} for k in KISTYPES}
    for file in files:
        data = _read_yaml(file, problems)
        if data is None:
            continue
        try:
            parsed = _parse(file, data, problems)
        except RecursionError as exc:
            problems.add(file, None, "is not usable: nested too deeply", exc)
            continue
        if parsed is None:
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
            entry = attrs.evolve(entry, config=_absolute_addrs(entry.config, file, target))
        seen[kind][name] = entry

    conns = _link_connectors(seen, problems)
    funcs = {name: e.config for name, e in seen["func"].items()}
    for name, entry in seen["func"].items():
        cname = entry.config.option.cname
        if cname and cname in conns:
            funcs[name] = entry.config.with_connector(conns[cname])
    _check_flow_functions(seen, problems)
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
    )


def _link_connectors(
    seen: dict[str, dict[str, _Entry]], problems: _Problems
) -> dict[str, ConnConfig]:
    bound: dict[str, list[FuncConfig]] = {}
    for name, entry in seen["func"].items():
        cname = entry.config.option.cname
        if not cname:
            continue
        if cname not in seen["conn"]:
            known = ", ".join(sorted(seen["conn"])) or "none"
            problems.add(
                entry.path,
                "option.cname",
                f"function {name!r} names connector {cname!r}, which no conn file defines "
                f"(connectors: {known})",
            )
            continue
        bound.setdefault(cname, []).append(entry.config)
    return {
        cname: _bind(entry.config, bound.get(cname, [])) for cname, entry in seen["conn"].items()
    }


def _check_flow_functions(seen: dict[str, dict[str, _Entry]], problems: _Problems) -> None:
    for flow_name, entry in seen["flow"].items():
        for i, item in enumerate(entry.config.flows):
            if item.fname not in seen["func"]:
                problems.add(
                    entry.path,
                    f"flows[{i}].fname",
                    f"flow {flow_name!r} names function {item.fname!r}, which no func file defines",
                )


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

    for flow_name, entry in seen["flow"].items():
        if not entry.config.enabled:
            continue
        for i, item in enumerate(entry.config.flows):
            func = funcs.get(item.fname)
            if func is None or item.fname in refs or pool.get_faas(item.fname) is not None:
                continue
            if func.option.cname and func.conn is None:
                continue  # its missing connector is reported already
            if (
                func.fmode in (Mode.SAVE, Mode.LOAD)
                and func.conn is not None
                and find_type(func.conn.type, pool) is not None
            ):
                continue  # a registered connector type serves it (kisflow._plan's default)
            problems.add(
                entry.path,
                f"flows[{i}].fname",
                f"flow {flow_name!r} function {item.fname!r} "
                f"({seen['func'][item.fname].path}) has no FaaS registered; register it with "
                f"kisflow.faas({item.fname!r}) (CLI: --faas FILE) before loading",
            )


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
    n = len(problems.items)
    lines = "\n".join(f"  - {p}" for p in problems.items)
    return ConfigError(
        f"{n} problem{'s' if n != 1 else ''} in config folder {root}:\n{lines}",
        path=str(root),
        key=problems.items[0].key if n == 1 else None,
        errors=problems.items,
    )


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


def export_config(flow: Flow, folder: str | os.PathLike[str]) -> list[Path]:
    """Write ``flow`` as KisFlow config files into ``folder`` (created if missing).

    Writes ``flow-<name>.yaml``, one ``func-<fname>.yaml`` per function and one
    ``conn-<cname>.yaml`` per connector; ``load_config_dir`` on the folder gives back an
    equal flow. Returns the files written, in that order.

    Raises:
        ConfigError: a name cannot be a file name, or two functions (or connectors) of
            the flow share a name with different configs.
    """
    out = Path(folder)
    funcs: dict[str, FuncConfig] = {}
    conns: dict[str, ConnConfig] = {}
    for stage in flow.stages:
        func = stage.config
        if funcs.setdefault(func.fname, func) != func:
            raise ConfigError(
                f"flow {flow.name!r} has two functions named {func.fname!r} with different "
                f"configs; KisFlow's files key functions by name",
                key="fname",
            )
        if func.conn is not None:
            cname = func.conn.cname
            conn = _bind(
                func.conn,
                [s.config for s in flow.stages if s.config.conn and s.config.conn.cname == cname],
            )
            if conns.setdefault(conn.cname, conn) != conn:
                raise ConfigError(
                    f"flow {flow.name!r} has two connectors named {conn.cname!r} with "
                    f"different configs",
                    key="cname",
                )
    # The flow file lists the stages the flow runs (what link/append_function built).
    config = attrs.evolve(
        flow.config,
        flows=tuple(
            FlowFunctionParam(fname=s.name, params=dict(s.flow_params)) for s in flow.stages
        ),
    )
    texts: list[tuple[Path, str]] = [(out / _file_name("flow", flow.name), flow_yaml(config))]
    texts += [(out / _file_name("func", n), func_yaml(c)) for n, c in funcs.items()]
    texts += [(out / _file_name("conn", n), conn_yaml(c)) for n, c in conns.items()]
    out.mkdir(parents=True, exist_ok=True)
    for file, text in texts:
        file.write_text(text, encoding="utf-8")
    return [file for file, _ in texts]
