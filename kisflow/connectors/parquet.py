"""The ``parquet`` connector (extra ``kisflow[polars]``): a folder of Parquet files.

Save writes each call's DataFrame as one Parquet file, Load reads the folder (or one
file) into a DataFrame; idempotent per partition (see ``kisflow.connectors._files``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kisflow.columnar import polars
from kisflow.connectors._files import ColumnarFiles

__all__ = ["ParquetConnector"]


class ParquetConnector(ColumnarFiles):
    """DataFrames as Parquet files in a folder (no server)."""

    type_name = "parquet"
    suffix = ".parquet"

    def write(self, frame: Any, path: Path) -> None:
        frame.write_parquet(path)

    def scan(self, files: list[str]) -> Any:
        return polars().scan_parquet(files)
