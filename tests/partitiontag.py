"""A one-stage flow tagging each row with the partition it runs in, for the executor tests."""

from __future__ import annotations

from typing import Any

import kisflow as kf
from kisflow.executors import current_partition


def partition_tag_flow(name: str, stage: str) -> kf.Flow:
    """Flow ``name`` whose stage ``stage`` turns row ``r`` into ``"index/key/r"``.

    Registered in the current default pool; the stage asserts it runs inside a partition.
    """

    @kf.faas(stage)
    def tag(flow: kf.Flow, rows: list[Any]) -> None:
        part = current_partition()
        assert part is not None
        flow.commit_row_batch(f"{part.index}/{part.key}/{r}" for r in rows)

    return kf.FlowBuilder(name).calculate(stage).build()
