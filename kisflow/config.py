"""KisFlow's configuration records, as frozen attrs classes named by KisFlow's YAML keys.

A ``FuncConfig`` describes one function (stage), a ``FlowConfig`` an ordered list of
functions with per-flow params, a ``ConnConfig`` a connector and ``GlobalConfig`` the
``kistype: global`` file. Field names and defaults are KisFlow's so that its YAML files
map onto these classes one to one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from kisflow.errors import ConfigError
from kisflow.modes import Mode

__all__ = [
    "UNNAMED_SOURCE",
    "ConnConfig",
    "FlowConfig",
    "FlowFunctionParam",
    "FuncConfig",
    "FuncOption",
    "GlobalConfig",
    "Source",
]

UNNAMED_SOURCE = "unNamedSource"
"""The source name KisFlow gives a function config that declares none."""


def _typed(kind: type | tuple[type, ...]) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator that raises ``ConfigError`` naming the key on a wrong type."""
    names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            raise ConfigError(
                f"{type(instance).__name__}.{attribute.name} must be {names}, "
                f"got {type(value).__name__} {value!r}",
                key=attribute.name,
            )

    return check


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _non_negative(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 0:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be >= 0, got {value!r}",
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
            f"params must be a mapping, got {type(value).__name__} {value!r}", key="params"
        )
    return {str(k): v for k, v in value.items()}


def _names(value: Iterable[str] | None, key: str) -> tuple[str, ...]:
    """A tuple of names; anything but a list of strings raises ``ConfigError`` naming ``key``."""
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(f"{key}: expected a list of names, got {value!r}", key=key)
    out = tuple(value)
    for name in out:
        if not isinstance(name, str):
            raise ConfigError(
                f"{key}: expected a list of names, got {type(name).__name__} {name!r} in it",
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
    """Where a function's rows come from: a name and the fields every row must carry."""

    name: str = attrs.field(default=UNNAMED_SOURCE, validator=_typed(str))
    must: tuple[str, ...] = attrs.field(factory=tuple, converter=_must)


@attrs.frozen
class FuncOption:
    """A function's options: connector, retries (``return_duration`` in ms) and params."""

    cname: str = attrs.field(default="", validator=_typed(str))
    retry_times: int = attrs.field(default=0, validator=[_typed(int), _non_negative])
    return_duration: int = attrs.field(default=0, validator=[_typed(int), _non_negative])
    default_params: dict[str, Any] = attrs.field(factory=dict, converter=_params)


@attrs.frozen
class ConnConfig:
    """A connector: a store's address, type and key, plus the functions bound to it."""

    cname: str = attrs.field(validator=[_typed(str), _non_empty])
    addrs: str = attrs.field(default="", validator=_typed(str))
    type: str = attrs.field(default="", validator=_typed(str))
    key: str = attrs.field(default="", validator=_typed(str))
    params: dict[str, Any] = attrs.field(factory=dict, converter=_params)
    load: tuple[str, ...] = attrs.field(factory=tuple, converter=_load)
    save: tuple[str, ...] = attrs.field(factory=tuple, converter=_save)


def _mode(value: Mode | str) -> Mode:
    return Mode.parse(value)


def _source(value: Source | Mapping[str, Any] | None) -> Source:
    if value is None:
        return Source()
    if isinstance(value, Mapping):
        return _from_mapping(Source, value, "source")  # type: ignore[no-any-return]
    if not isinstance(value, Source):
        raise ConfigError(
            f"source must be a Source or a mapping, got {type(value).__name__} {value!r}",
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
            f"option must be a FuncOption or a mapping, got {type(value).__name__} {value!r}",
            key="option",
        )
    return value


@attrs.frozen
class FuncConfig:
    """One function of a flow: its name, mode, source and options.

    ``conn`` binds the connector config named by ``option.cname``; it is not part of the
    function's YAML (KisFlow keeps it beside the config, in its own file).
    """

    fname: str = attrs.field(validator=[_typed(str), _non_empty])
    fmode: Mode = attrs.field(converter=_mode)
    source: Source = attrs.field(factory=Source, converter=_source)
    option: FuncOption = attrs.field(factory=FuncOption, converter=_option)
    conn: ConnConfig | None = attrs.field(
        default=None, repr=False, validator=attrs.validators.optional(_typed(ConnConfig))
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
        raise ConfigError(f"flows must be a list, got {value!r}", key="flows")
    out: list[FlowFunctionParam] = []
    for item in value:
        if isinstance(item, FlowFunctionParam):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(_from_mapping(FlowFunctionParam, item, "flows"))
        else:
            raise ConfigError(
                f"each entry of flows must be a mapping with fname, got {item!r}", key="flows"
            )
    return tuple(out)


@attrs.frozen
class FlowFunctionParam:
    """One entry of a flow's ``flows`` list: a function name and the flow's params for it."""

    fname: str = attrs.field(validator=[_typed(str), _non_empty])
    params: dict[str, Any] = attrs.field(factory=dict, converter=_params)


def _status(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value not in (0, 1):
        raise ConfigError(
            f"FlowConfig.status must be 1 (enabled) or 0 (disabled), got {value!r}",
            key="status",
        )


@attrs.frozen
class FlowConfig:
    """A flow: its name, whether it is enabled (``status`` 1/0) and its functions in order."""

    flow_name: str = attrs.field(validator=[_typed(str), _non_empty])
    status: int = attrs.field(default=1, validator=[_typed(int), _status])
    flows: tuple[FlowFunctionParam, ...] = attrs.field(factory=tuple, converter=_flow_params)

    @property
    def enabled(self) -> bool:
        """Whether runs of this flow do anything (``status == 1``)."""
        return self.status == 1


@attrs.frozen
class GlobalConfig:
    """The ``kistype: global`` settings: Prometheus metrics switches and address."""

    prometheus_enable: bool = attrs.field(default=False, validator=_typed(bool))
    prometheus_listen: bool = attrs.field(default=False, validator=_typed(bool))
    prometheus_serve: str = attrs.field(default="", validator=_typed(str))
