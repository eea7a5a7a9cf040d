"""The five KisFlow function modes: Verify, Save, Load, Calculate, Expand."""

from __future__ import annotations

import enum

from kisflow.errors import ConfigError

__all__ = ["Mode"]


class Mode(enum.Enum):
    """A stage's mode; values are KisFlow's YAML ``fmode`` words so configs round-trip."""

    VERIFY = "Verify"
    SAVE = "Save"
    LOAD = "Load"
    CALCULATE = "Calculate"
    EXPAND = "Expand"

    @property
    def letter(self) -> str:
        """KisFlow's one-letter name: V, S, L, C or E."""
        return self.value[0]

    @classmethod
    def parse(cls, value: Mode | str) -> Mode:
        """Accept a Mode, its YAML word (any case) or its letter (V/S/L/C/E).

        Raises:
            ConfigError: for anything else, listing the five allowed values.
        """
        if isinstance(value, Mode):
            return value
        if isinstance(value, str):
            found = _BY_NAME.get(value.strip().lower())
            if found is not None:
                return found
        allowed = ", ".join(m.value for m in cls)
        raise ConfigError(
            f"unknown fmode {value!r}; expected one of {allowed} (or V, S, L, C, E)",
            key="fmode",
        )

    def __str__(self) -> str:
        return self.value


_BY_NAME: dict[str, Mode] = {m.value.lower(): m for m in Mode} | {m.letter.lower(): m for m in Mode}
