"""The ``jsonl`` connector: ``addrs`` is a JSON-lines file; Save appends, Load reads.

Each row is one line of JSON (attrs and dataclass instances as objects). Load returns
the rows in file order, optionally filtered by ``params.where`` and cut by
``params.limit``; a line that is not JSON is an error naming the file and line.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kisflow.connectors._base import BuiltinConnector, Unreachable, matches, to_json_text

__all__ = ["JSONLConnector"]


class JSONLConnector(BuiltinConnector):
    """Rows as lines of JSON in a file (no server, no extra)."""

    type_name = "jsonl"

    def check(self) -> None:
        super().check()
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The file, from ``addrs``."""
        return Path(self.config.addrs).expanduser()

    def save(self, rows: Sequence[Any], params: Mapping[str, Any]) -> int:
        lines = []
        for i, row in enumerate(rows):
            try:
                lines.append(to_json_text(row) + "\n")
            except (TypeError, ValueError) as exc:
                raise self.error(f"cannot store row {i} as JSON: {exc}") from exc
        if not lines:
            return 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One append per batch, one batch at a time: lines of batches never interleave.
            with self._lock, self.path.open("a", encoding="utf-8") as f:
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise Unreachable(str(exc)) from exc
        return len(lines)

    def load(self, params: Mapping[str, Any]) -> list[Any]:
        where, limit = self.where_limit(params)
        try:
            with self.path.open(encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError as exc:
            raise self.error(f"has no file {str(self.path)!r} to load from") from exc
        except UnicodeDecodeError as exc:
            raise self.error(f"file {str(self.path)!r} is not UTF-8 text: {exc}") from exc
        except OSError as exc:
            raise Unreachable(str(exc)) from exc
        out: list[Any] = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if limit is not None and len(out) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise self.error(
                    f"file {str(self.path)!r} line {lineno} is not JSON: {exc}"
                ) from exc
            if matches(row, where):
                out.append(row)
        return out
