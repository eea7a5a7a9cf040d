"""What the ``parquet`` and ``csv`` connectors share: a folder of files, one per Save.

``addrs`` is a folder (a dataset); a Load may also name one file. Each Save call writes
its rows, a Polars DataFrame, as one new file: written beside its final name and renamed
into place, so a crash never leaves half a file. Run by an executor (process pool,
Dask), the file is named after the Save's mark (flow, stage, partition key): a file of
that name already there means the partition was saved, and the Save writes nothing, so
a partition run again after a crash is stored once. Load reads every file of the folder,
in name order, into one DataFrame (``params.where``, ``params.limit``, ``params.columns``).
"""

from __future__ import annotations

import abc
import hashlib
import os
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from kisflow.columnar import frame_of, is_frame, polars
from kisflow.connectors._base import SaveMark, Store
from kisflow.errors import KisFlowError
from kisflow.rows import safe_str

__all__ = ["ColumnarFiles"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


class ColumnarFiles(Store):
    """A folder of columnar files; subclasses say the suffix and how to read and write."""

    takes_frames = True
    suffix: ClassVar[str] = ""

    def check(self) -> None:
        """Check ``addrs``; ``MissingExtraError`` naming ``kisflow[polars]`` without Polars."""
        super().check()
        self.require("polars", "polars")

    @property
    def path(self) -> Path:
        """The folder (or, for a Load, the file) ``addrs`` names."""
        return Path(self.config.addrs).expanduser()

    def file_name(self, mark: SaveMark | None) -> str:
        """The file a Save writes: named after its mark, else new (time-ordered)."""
        if mark is None:
            return f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{self.suffix}"
        digest = hashlib.sha1(mark.as_json().encode("utf-8")).hexdigest()[:16]
        key = _UNSAFE.sub("_", mark.partition)[:40]
        return f"part-{key}-{digest}{self.suffix}"

    def save(
        self, rows: Sequence[Any], params: Mapping[str, Any], mark: SaveMark | None = None
    ) -> int:
        if is_frame(rows):
            frame: Any = rows
        else:
            try:
                frame = frame_of(rows)
            except KisFlowError as exc:
                raise self.error(f"cannot store rows as a DataFrame: {exc}") from exc
        if frame.height == 0:
            return 0
        folder = self.path
        target = folder / self.file_name(mark)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if mark is not None and target.exists():
                return 0  # this partition was saved already
            temp = folder / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                self.write(frame, temp)
                with temp.open("rb") as f:
                    os.fsync(f.fileno())
                os.replace(temp, target)
            finally:
                temp.unlink(missing_ok=True)
        except OSError as exc:
            raise self.unreachable(exc) from exc
        except Exception as exc:  # polars refusing the frame (a nested dtype in CSV, ...)
            raise self.error(
                f"cannot write {target.name!r}: {type(exc).__name__}: {safe_str(exc)}"
            ) from exc
        return int(frame.height)

    def files(self) -> list[Path]:
        """The files a Load reads: ``addrs`` itself, or the folder's files by name."""
        path = self.path
        if path.is_file():
            return [path]
        if not path.is_dir():
            raise self.error(f"has no file or folder {str(path)!r} to load from")
        return sorted(p for p in path.glob(f"*{self.suffix}") if not p.name.startswith("."))

    def load(self, params: Mapping[str, Any]) -> Any:
        where, limit = self.where_limit(params)
        columns = params.get("columns")
        if columns is not None and (
            not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
        ):
            raise self.error(f"params.columns must be a list of column names, got {columns!r}")
        pl = polars()
        files = self.files()
        if not files:
            return pl.DataFrame()
        try:
            lazy = self.scan([str(f) for f in files])
            for name, value in where.items():
                lazy = lazy.filter(pl.col(name) == value)
            if columns is not None:
                lazy = lazy.select(columns)
            if limit is not None:
                lazy = lazy.head(limit)
            return lazy.collect()
        except OSError as exc:
            raise self.unreachable(exc) from exc
        except Exception as exc:
            raise self.error(
                f"cannot read {str(self.path)!r}: {type(exc).__name__}: {safe_str(exc)}"
            ) from exc

    @abc.abstractmethod
    def write(self, frame: Any, path: Path) -> None:
        """Write ``frame`` to ``path``."""

    @abc.abstractmethod
    def scan(self, files: list[str]) -> Any:
        """A LazyFrame over ``files``."""
