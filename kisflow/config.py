"""KisFlow's configuration records, as frozen attrs classes named by KisFlow's YAML keys.

A ``FuncConfig`` describes one function (stage), a ``FlowConfig`` an ordered list of
functions with per-flow params, a ``ConnConfig`` a connector and ``GlobalConfig`` the
``kistype: global`` file. Field names and defaults are KisFlow's so that its YAML files
map onto these classes one to one.

These classes are the one schema of KisFlow's YAML files: each field says, in its
metadata, how its key is checked when read and where it is written (see ``YamlKey``).
``kisflow.configfile`` derives its per-section checks and its export writers from that,
so a key is declared once, here.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from kisflow.errors import ConfigError
from kisflow.modes import Mode

__all__ = [
    "MAX_COUNT",
    "NOT_YAML",
    "UNNAMED_SOURCE",
    "ConnConfig",
    "FlowConfig",
    "FlowFunctionParam",
    "FuncConfig",
    "FuncOption",
    "GlobalConfig",
    "Source",
    "YamlCheck",
    "YamlField",
    "YamlKey",
    "yaml_fields",
    "yaml_key",
]

UNNAMED_SOURCE = "unNamedSource"
"""The source name KisFlow gives a function config that declares none."""


# -- the YAML schema ----------------------------------------------------------------------

YamlCheck = Callable[[Any], str | None]
"""Checks one YAML value: ``None`` when it is fine, else why not (``"must be a string"``)."""

_META: Final = "yaml"
"""The attrs metadata key holding a field's ``YamlKey`` (or ``None``: not a YAML key)."""


@attrs.frozen
class YamlKey:
    """How one config field is read from and written to KisFlow's YAML.

    Declare it on the field with ``yaml_key``: a plain value has a ``check``; a nested
    mapping (``source``, ``option``) names the config class it holds as ``section``, and
    with ``many=True`` the value is a list of such mappings (``flows``). A key is
    required exactly when its field has no default. Keys are written in declaration
    order, sorted by ``rank`` first (KisFlow writes ``status`` before ``flow_name``).
    """

    check: YamlCheck | None = None
    section: type[Any] | None = None
    many: bool = False
    rank: int = 0

    def __attrs_post_init__(self) -> None:
        if (self.check is None) == (self.section is None):
            raise TypeError("a YamlKey has either a check or a section, not both or neither")
        if self.many and self.section is None:
            raise TypeError("YamlKey(many=True) needs a section: it is a list of mappings")


def yaml_key(
    check: YamlCheck | None = None,
    *,
    section: type[Any] | None = None,
    many: bool = False,
    rank: int = 0,
) -> dict[str, YamlKey | None]:
    """The attrs ``metadata`` declaring a field a YAML key (arguments as ``YamlKey``)."""
    return {_META: YamlKey(check=check, section=section, many=many, rank=rank)}


NOT_YAML: Final[Mapping[str, YamlKey | None]] = {_META: None}
"""The attrs ``metadata`` of a field that is no YAML key (``FuncConfig.conn``)."""


@attrs.frozen
class YamlField:
    """One YAML key of a config class: the field's name, its ``YamlKey``, if required."""

    name: str
    key: YamlKey
    required: bool


def yaml_fields(cls: type[Any]) -> tuple[YamlField, ...]:
    """The YAML keys of config class ``cls``, in declaration order.

    Raises:
        TypeError: a field has no YAML metadata; every field must say whether it is a
            YAML key (``yaml_key(...)``) or not (``NOT_YAML``), so none is forgotten.
    """
    out: list[YamlField] = []
    for field in attrs.fields(cls):
        if _META not in field.metadata:
            raise TypeError(
                f"{cls.__name__}.{field.name} has no YAML metadata: declare it with "
                f"metadata=yaml_key(...), or metadata=NOT_YAML if it is no YAML key"
            )
        key = field.metadata[_META]
        if key is not None:
            out.append(YamlField(field.name, key, required=field.default is attrs.NOTHING))
    return tuple(out)


# What a YAML value must be, worded for the loader's reports ("<key>: <why>, got ...").

MAX_COUNT: Final = 2**63 - 1
"""The largest ``retry_times``/``return_duration``: KisFlow-Go reads them as 64-bit ints."""


def _is_str(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be a string"


def _is_name(v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be a string"
    return None if v.strip() else "must not be empty"


def _is_count(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int):
        return "must be an integer"
    if v < 0:
        return "must be >= 0"
    return None if v <= MAX_COUNT else f"must be at most {MAX_COUNT} (a 64-bit integer)"


def _is_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _is_mapping(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, Mapping):
        return "must be a mapping of key: value"
    if not all(isinstance(k, str | int | float | bool) for k in v):
        return "keys must be plain scalars (strings or numbers)"
    return None


def _is_names(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        return "must be a list of names"
    return None


def _is_status(v: Any) -> str | None:
    if isinstance(v, bool) or v not in (0, 1):
        return "must be 1 (enabled) or 0 (disabled)"
    return None


def _is_fmode(v: Any) -> str | None:
    try:
        Mode.parse(v)
    except ConfigError:
        return "must be one of " + ", ".join(m.value for m in Mode)
    return None


# -- the config classes -------------------------------------------------------------------


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 60
_REPR.maxother = 60


def show_value(value: Any) -> str:
    """A value for an error message: bounded, and never failing (an int of 5,000 digits);
    configfile's messages use it too."""
    try:
        return _REPR.repr(value)
    except Exception:  # str() of an int beyond Python's digit limit, a repr that raises
        return f"<{type(value).__name__} that cannot be shown>"


def show_typed(value: Any) -> str:
    """``show_value`` after the value's type name (``int 5``), as config errors say it."""
    return f"{type(value).__name__} {show_value(value)}"


def _typed(kind: type | tuple[type, ...]) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator that raises ``ConfigError`` naming the key on a wrong type."""
    names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            raise ConfigError(
                f"{type(instance).__name__}.{attribute.name} must be {names}, "
                f"got {show_typed(value)}",
                key=attribute.name,
            )

    return check


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _count(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    why = _is_count(value)
    if why is not None:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} {why}, got {show_value(value)}",
            key=attribute.name,
        )


def _non_empty(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must not be empty", key=attribute.name
        )


def _params(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """Copy a params mapping; KisFlow writes an absent or empty one as ``null``/``{}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"params must be a mapping, got {show_typed(value)}",
            key="params",
        )
    return {str(k): v for k, v in value.items()}


def _names(value: Iterable[str] | None, key: str) -> tuple[str, ...]:
    """A tuple of names; anything but a list of strings raises ``ConfigError`` naming ``key``."""
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(f"{key}: expected a list of names, got {show_value(value)}", key=key)
    out = tuple(value)
    for name in out:
        if not isinstance(name, str):
            raise ConfigError(
                f"{key}: expected a list of names, got {show_typed(name)} in it",
                key=key,
            )
    return out


def _must(value: Iterable[str] | None) -> tuple[str, ...]:
    return _names(value, "must")


def _load(value: Iterable[str] | None) -> tuple[str, ...]:
    return _names(value, "load")


def _save(value: Iterable[str] | None) -> tuple[str, ...]:
    return _names(value, "save")


def _from_mapping(cls: type[Any], value: Mapping[str, Any], key: str) -> Any:
    """Build ``cls`` from a YAML mapping; unknown or missing keys raise ``ConfigError``."""
    known = {f.name for f in attrs.fields(cls)}
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise ConfigError(
            f"{key} has unknown keys {unknown}; expected some of {sorted(known)}", key=key
        )
    try:
        return cls(**value)
    except TypeError as exc:
        raise ConfigError(f"{key} is incomplete: {exc}", key=key) from exc


@attrs.frozen
class Source:
    """Where a function's rows come from: a name and the fields its rows are expected to
    carry (recorded, not checked: KisFlow does not check them either)."""

    name: str = attrs.field(
        default=UNNAMED_SOURCE, validator=_typed(str), metadata=yaml_key(_is_str)
    )
    must: tuple[str, ...] = attrs.field(
        factory=tuple, converter=_must, metadata=yaml_key(_is_names)
    )


@attrs.frozen
class FuncOption:
    """A function's options: connector, retries (``return_duration`` in ms) and params."""

    cname: str = attrs.field(default="", validator=_typed(str), metadata=yaml_key(_is_str))
    retry_times: int = attrs.field(
        default=0, validator=[_typed(int), _count], metadata=yaml_key(_is_count)
    )
    return_duration: int = attrs.field(
        default=0, validator=[_typed(int), _count], metadata=yaml_key(_is_count)
    )
    default_params: dict[str, Any] = attrs.field(
        factory=dict, converter=_params, metadata=yaml_key(_is_mapping)
    )


@attrs.frozen
class ConnConfig:
    """A connector: a store's address, type and key, plus the functions bound to it."""

    cname: str = attrs.field(validator=[_typed(str), _non_empty], metadata=yaml_key(_is_name))
    addrs: str = attrs.field(default="", validator=_typed(str), metadata=yaml_key(_is_str))
    type: str = attrs.field(default="", validator=_typed(str), metadata=yaml_key(_is_str))
    key: str = attrs.field(default="", validator=_typed(str), metadata=yaml_key(_is_str))
    params: dict[str, Any] = attrs.field(
        factory=dict, converter=_params, metadata=yaml_key(_is_mapping)
    )
    load: tuple[str, ...] = attrs.field(
        factory=tuple, converter=_load, metadata=yaml_key(_is_names)
    )
    save: tuple[str, ...] = attrs.field(
        factory=tuple, converter=_save, metadata=yaml_key(_is_names)
    )


def _mode(value: Mode | str) -> Mode:
    return Mode.parse(value)


def _source(value: Source | Mapping[str, Any] | None) -> Source:
    if value is None:
        return Source()
    if isinstance(value, Mapping):
        return _from_mapping(Source, value, "source")  # type: ignore[no-any-return]
    if not isinstance(value, Source):
        raise ConfigError(
            f"source must be a Source or a mapping, got {show_typed(value)}",
            key="source",
        )
    return value


def _option(value: FuncOption | Mapping[str, Any] | None) -> FuncOption:
    if value is None:
        return FuncOption()
    if isinstance(value, Mapping):
        return _from_mapping(FuncOption, value, "option")  # type: ignore[no-any-return]
    if not isinstance(value, FuncOption):
        raise ConfigError(
            f"option must be a FuncOption or a mapping, got {show_typed(value)}",
            key="option",
        )
    return value


@attrs.frozen
class FuncConfig:
    """One function of a flow: its name, mode, source and options.

    ``conn`` binds the connector config named by ``option.cname``; it is not part of the
    function's YAML (KisFlow keeps it beside the config, in its own file).
    """

    fname: str = attrs.field(validator=[_typed(str), _non_empty], metadata=yaml_key(_is_name))
    fmode: Mode = attrs.field(converter=_mode, metadata=yaml_key(_is_fmode))
    source: Source = attrs.field(
        factory=Source, converter=_source, metadata=yaml_key(section=Source)
    )
    option: FuncOption = attrs.field(
        factory=FuncOption, converter=_option, metadata=yaml_key(section=FuncOption)
    )
    conn: ConnConfig | None = attrs.field(
        default=None,
        repr=False,
        validator=attrs.validators.optional(_typed(ConnConfig)),
        metadata=NOT_YAML,
    )

    def __attrs_post_init__(self) -> None:
        if self.conn is not None and self.conn.cname != self.option.cname:
            raise ConfigError(
                f"function {self.fname!r} names connector {self.option.cname!r} "
                f"but is bound to {self.conn.cname!r}",
                key="option.cname",
            )

    def with_connector(self, conn: ConnConfig) -> FuncConfig:
        """Return a copy bound to ``conn`` (and naming it in ``option.cname``)."""
        option = attrs.evolve(self.option, cname=conn.cname)
        return attrs.evolve(self, option=option, conn=conn)


def _flow_params(
    value: Iterable[FlowFunctionParam | Mapping[str, Any]] | None,
) -> tuple[FlowFunctionParam, ...]:
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(f"flows must be a list, got {show_value(value)}", key="flows")
    out: list[FlowFunctionParam] = []
    for item in value:
        if isinstance(item, FlowFunctionParam):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(_from_mapping(FlowFunctionParam, item, "flows"))
        else:
            raise ConfigError(
                f"each entry of flows must be a mapping with fname, got {show_value(item)}",
                key="flows",
            )
    return tuple(out)


@attrs.frozen
class FlowFunctionParam:
    """One entry of a flow's ``flows`` list: a function name and the flow's params for it."""

    fname: str = attrs.field(validator=[_typed(str), _non_empty], metadata=yaml_key(_is_name))
    params: dict[str, Any] = attrs.field(
        factory=dict, converter=_params, metadata=yaml_key(_is_mapping)
    )


def _status(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value not in (0, 1):
        raise ConfigError(
            f"FlowConfig.status must be 1 (enabled) or 0 (disabled), got {show_value(value)}",
            key="status",
        )


@attrs.frozen
class FlowConfig:
    """A flow: its name, whether it is enabled (``status`` 1/0) and its functions in order."""

    flow_name: str = attrs.field(validator=[_typed(str), _non_empty], metadata=yaml_key(_is_name))
    # KisFlow's Go struct, and so its exports, put status first.
    status: int = attrs.field(
        default=1, validator=[_typed(int), _status], metadata=yaml_key(_is_status, rank=-1)
    )
    flows: tuple[FlowFunctionParam, ...] = attrs.field(
        factory=tuple,
        converter=_flow_params,
        metadata=yaml_key(section=FlowFunctionParam, many=True),
    )

    @property
    def enabled(self) -> bool:
        """Whether runs of this flow do anything (``status == 1``)."""
        return self.status == 1


@attrs.frozen
class GlobalConfig:
    """The ``kistype: global`` settings: Prometheus metrics switches and address."""

    prometheus_enable: bool = attrs.field(
        default=False, validator=_typed(bool), metadata=yaml_key(_is_bool)
    )
    prometheus_listen: bool = attrs.field(
        default=False, validator=_typed(bool), metadata=yaml_key(_is_bool)
    )
    prometheus_serve: str = attrs.field(
        default="", validator=_typed(str), metadata=yaml_key(_is_str)
    )
