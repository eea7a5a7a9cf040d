"""The ``demo`` flow the tracing and debug-log tests watch: Keep (even rows), then Double."""

from __future__ import annotations

import kisflow as kf


def demo_builder() -> kf.FlowBuilder:
    """``demo``: Verify ``Keep`` (drops odd rows), then Calculate ``Double`` (doubles each).

    Both FaaS are registered in the default pool; callers add stages or build it.
    """

    @kf.faas("Keep")
    def keep(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(r for r in rows if r % 2 == 0)

    @kf.faas("Double")
    def double(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(r * 2 for r in rows)

    return kf.FlowBuilder("demo").verify("Keep").calculate("Double")
