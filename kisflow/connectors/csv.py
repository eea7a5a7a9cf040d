"""The ``csv`` connector (extra ``kisflow[polars]``): a folder of CSV files with a header.

Save writes each call's DataFrame as one CSV file, Load reads the folder (or one file)
into a DataFrame, dtypes inferred from the text; idempotent per partition (see
``kisflow.connectors._files``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kisflow.columnar import polars
from kisflow.connectors._files import ColumnarFiles

__all__ = ["CSVConnector"]


class CSVConnector(ColumnarFiles):
    """DataFrames as CSV files in a folder (no server)."""

    type_name = "csv"
    suffix = ".csv"

    def write(self, frame: Any, path: Path) -> None:
        frame.write_csv(path)

    def scan(self, files: list[str]) -> Any:
        return polars().scan_csv(files)
