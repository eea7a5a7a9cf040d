"""Progress bars for long runs: shown on a terminal, silent when output is not one."""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm import tqdm

__all__ = ["progress_bar"]


def progress_bar(
    total: int | None = None,
    *,
    desc: str = "rows",
    file: IO[str] | None = None,
    enabled: bool | None = None,
) -> tqdm[Any]:
    """A tqdm bar counting rows (with rows/s); disabled unless ``file`` is a terminal.

    Args:
        total: rows expected, when known.
        desc: the label in front of the bar.
        file: where to draw (default: stderr).
        enabled: force the bar on or off; None decides by ``file.isatty()``.
    """
    stream = file if file is not None else sys.stderr
    if enabled is None:
        enabled = bool(getattr(stream, "isatty", lambda: False)())
    return tqdm(
        total=total,
        desc=desc,
        unit="rows",
        unit_scale=True,
        file=stream,
        disable=not enabled,
        dynamic_ncols=True,
    )
