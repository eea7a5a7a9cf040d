"""FaaS by reference: a func config may name its callback as ``module:function``.

Importing a module runs its code, so a config file may do this only when the caller
opts in (``allow_imports=True``, or the CLI's ``--allow-imports``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

__all__ = ["REFERENCE", "ReferenceError_", "resolve"]

REFERENCE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
"""``package.module:attr.attr``: dotted Python names on both sides of one colon."""


class ReferenceError_(Exception):
    """A reference cannot be used; the message says why (the caller adds file and key)."""


def resolve(reference: Any, *, allow_imports: bool) -> Callable[..., Any]:
    """The callable ``reference`` names, importing its module when allowed.

    Raises:
        ReferenceError_: not ``module:function``, imports not allowed, the import
            failed, or the name is missing or not callable.
    """
    if not isinstance(reference, str) or not REFERENCE.match(reference):
        raise ReferenceError_(f"must be 'module:function' (dotted Python names), got {reference!r}")
    if not allow_imports:
        raise ReferenceError_(
            f"names {reference!r}, which would import Python code; pass "
            f"allow_imports=True (CLI: --allow-imports) to allow it, or register the "
            f"FaaS yourself"
        )
    module_name, _, attr_path = reference.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ReferenceError_(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ReferenceError_(f"{reference!r}: {part!r} not found") from exc
    if not callable(obj):
        raise ReferenceError_(f"{reference!r} is a {type(obj).__name__}, not a function")
    return obj  # type: ignore[no-any-return]
