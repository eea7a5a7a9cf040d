"""The Stage: one function of a flow, as a frozen node of the flow's graph."""

from __future__ import annotations

import types
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from kisflow.config import FuncConfig
from kisflow.connector import Connector
from kisflow.modes import Mode

__all__ = ["Stage", "new_stage_id"]


def new_stage_id() -> str:
    """A fresh stage id (KisFlow's ``func-<uuid>``): names repeat, ids never do."""
    return f"func-{uuid.uuid4().hex}"


def _frozen_params(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


@attrs.frozen
class Stage:
    """A flow's function: its config, params and connector; equal by ``id`` only.

    ``params`` are the effective params: the function's ``default_params`` overridden
    key by key by the flow's ``flow_params`` for it.
    """

    id: str
    config: FuncConfig = attrs.field(eq=False)
    flow_params: Mapping[str, Any] = attrs.field(eq=False, converter=_frozen_params)
    connector: Connector | None = attrs.field(default=None, eq=False, repr=False)
    params: Mapping[str, Any] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        merged = {**self.config.option.default_params, **self.flow_params}
        object.__setattr__(self, "params", types.MappingProxyType(merged))

    @property
    def name(self) -> str:
        """The function name (``fname``)."""
        return self.config.fname

    @property
    def mode(self) -> Mode:
        """The function mode."""
        return self.config.fmode

    def get_id(self) -> str:
        """KisFlow's ``GetId``."""
        return self.id

    def get_config(self) -> FuncConfig:
        """KisFlow's ``GetConfig``."""
        return self.config
