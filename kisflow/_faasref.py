"""FaaS by reference: a func config may name its callback as ``module:function``.

Importing a module runs its code, so a config file may do this only when the caller
opts in (``allow_imports=True``, or the CLI's ``--allow-imports``). A reference that
cannot be used raises ``ConfigError`` with ``key="faas"``; the caller adds the file.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from kisflow.errors import ConfigError

__all__ = ["REFERENCE", "resolve"]

REFERENCE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
"""``package.module:attr.attr``: dotted Python names on both sides of one colon."""


def resolve(reference: Any, *, allow_imports: bool) -> Callable[..., Any]:
    """The callable ``reference`` names, importing its module when allowed.

    Raises:
        ConfigError: (``key="faas"``) not ``module:function``, imports not allowed, the
            import failed (chained to its error), or the name is missing or not callable.
    """
    if not isinstance(reference, str) or not REFERENCE.match(reference):
        raise _refused(f"must be 'module:function' (dotted Python names), got {reference!r}")
    if not allow_imports:
        raise _refused(
            f"names {reference!r}, which would import Python code; pass "
            f"allow_imports=True (CLI: --allow-imports) to allow it, or register the "
            f"FaaS yourself"
        )
    module_name, _, attr_path = reference.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise _refused(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise _refused(f"{reference!r}: {part!r} not found") from exc
    if not callable(obj):
        raise _refused(f"{reference!r} is a {type(obj).__name__}, not a function")
    return obj  # type: ignore[no-any-return]


def _refused(message: str) -> ConfigError:
    """The error for an unusable reference: the message says why, the key is ``faas``."""
    return ConfigError(message, key="faas")
