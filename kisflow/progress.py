"""Progress bars for long runs: shown on a terminal, silent when output is not one."""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, Any

from tqdm import tqdm

from kisflow.observers import Observer

if TYPE_CHECKING:
    from kisflow.result import RunResult

__all__ = ["RunProgress", "progress_bar"]


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


class RunProgress(Observer):
    """A rows bar fed by run results: what the CLI and the stream runner show per batch.

    Each ``add(result)`` advances the bar by the rows the run took in (its first stage's
    ``rows_in``) and shows the dead letters and retries so far. It is an observer: given
    in a stream's ``RunOptions(observers=...)`` it is fed each batch (``batch_done``).
    Like ``progress_bar`` it draws only on a terminal, so a piped or logged run stays
    quiet::

        with RunProgress(total=len(rows)) as progress:
            for batch in batches:
                progress.add(flow.run(batch))
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        desc: str = "rows",
        file: IO[str] | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.bar = progress_bar(total, desc=desc, file=file, enabled=enabled)
        self.rows = 0
        self.runs = 0
        self.dead_letters = 0
        self.retries = 0

    def add(self, result: RunResult) -> None:
        """Count one run's input rows, dead letters and retries."""
        rows = result.stages[0].rows_in if result.stages else 0
        self.rows += rows
        self.runs += 1
        dead, retries = result.dead_letters, result.retries
        if dead or retries:
            self.dead_letters += dead
            self.retries += retries
            self.bar.set_postfix(dead=self.dead_letters, retries=self.retries, refresh=False)
        self.bar.update(rows)

    def batch_done(self, flow: str, batch: int, result: RunResult) -> None:
        """A stream yielded a batch: count it."""
        self.add(result)

    def close(self) -> None:
        """Draw the final state and release the terminal line."""
        self.bar.close()

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
