"""Rows nested ``depth`` levels deep, for the tests of conversion and display limits."""

from __future__ import annotations

from typing import Any


def deep_list(depth: int) -> list[Any]:
    """``[[[...]]]``: ``depth`` lists, each holding the next; the innermost is empty."""
    row: list[Any] = []
    for _ in range(depth):
        row = [row]
    return row


def deep_dict(depth: int, key: str = "a") -> dict[str, Any]:
    """``{key: {key: ...}}``: ``depth`` dicts, each holding the next under ``key``."""
    row: dict[str, Any] = {}
    for _ in range(depth):
        row = {key: row}
    return row
