"""The FaaS and CaaS that KisFlow's own Go tests register, re-created in Python.

Running this file registers them in the current pool (the CLI's ``--faas`` does that;
tests use ``runpy.run_path``). ``SEEN`` records what the
printing stages saw and ``CALLS`` what the connector callbacks got, so tests can assert
on them. The ``ConnName1`` connector (type redis, fake addresses) is served by a user
``caas_init`` and ``caas``: nothing dials out.
"""

from __future__ import annotations

from typing import Any

import attrs

import kisflow as kf
from kisflow import actions

SEEN: list[tuple[str, Any]] = []
"""(function name, row) for each row the printing stages were given."""
CALLS: list[tuple[str, Any]] = []
"""("init", cname) and ("save", row) for each connector callback."""


@attrs.define
class AvgStuScoreIn:
    """KisFlow's proto.StuScores: a student and three scores."""

    stu_id: int
    score_1: int
    score_2: int
    score_3: int


@attrs.define
class AvgStuScoreOut:
    """KisFlow's proto.StuAvgScore."""

    stu_id: int
    avg_score: float


def func_name_1(flow: kf.Flow) -> None:
    """Verify: one result string per input row (KisFlow's FuncDemo1Handler)."""
    name = flow.get_this_func_conf().fname
    for index, row in enumerate(flow.input()):
        SEEN.append((name, row))
        flow.commit_row(f"data from funcName[{name}], index = {index}")


def func_name_2(flow: kf.Flow) -> None:
    """Save: each row through the connector, then a result string (FuncDemo2Handler)."""
    name = flow.get_this_func_conf().fname
    conn = flow.get_connector()
    for index, row in enumerate(flow.input()):
        SEEN.append((name, row))
        conn.call(flow, row)
        flow.commit_row(f"data from funcName[{name}], index = {index}")


def func_name_3(flow: kf.Flow) -> None:
    """Calculate: prints its rows and commits nothing (FuncDemo3Handler)."""
    for row in flow.input():
        SEEN.append((flow.get_this_func_conf().fname, row))


def abort_func(flow: kf.Flow) -> None:
    """Asks the flow to stop after this stage."""
    for row in flow.input():
        SEEN.append(("abortFunc", row))
    flow.next(actions.abort)


def data_reuse_func(flow: kf.Flow) -> None:
    """Commits a row, then asks for its input to be reused as its result."""
    for row in flow.input():
        SEEN.append(("dataReuseFunc", row))
    flow.commit_row("dropped by data_reuse")
    flow.next(actions.data_reuse)


def no_result_func(flow: kf.Flow) -> None:
    """Commits nothing and forces the next stage to run."""
    for row in flow.input():
        SEEN.append(("noResultFunc", row))
    flow.next(actions.force_entry_next)


def jump_func(flow: kf.Flow) -> None:
    """Jumps back to funcName1, every time: KisFlow loops forever, kisflow raises."""
    flow.next(actions.jump_func("funcName1"))


def avg_stu_score(flow: kf.Flow, rows: list[AvgStuScoreIn]) -> None:
    """Calculate: the average of three scores, typed rows in and out."""
    for r in rows:
        flow.commit_row(AvgStuScoreOut(r.stu_id, (r.score_1 + r.score_2 + r.score_3) / 3))


def print_stu_avg_score(flow: kf.Flow, rows: list[AvgStuScoreOut]) -> None:
    """Expand: records each average and passes it on."""
    for r in rows:
        SEEN.append(("PrintStuAvgScore", r))
        flow.commit_row(r)


def init_conn_1(conn: kf.Connector) -> None:
    """KisFlow's InitConnDemo1: remembers it ran (it never dials the fake redis)."""
    CALLS.append(("init", conn.get_name()))


def caas_conn_1_save(conn: kf.Connector, fn: kf.Stage, flow: kf.Flow, args: Any) -> None:
    """KisFlow's CaasDemoHanler1: records the row it was asked to save."""
    CALLS.append(("save", args))


def register() -> None:
    """Register everything above in the current pool."""
    kf.faas("funcName1", func_name_1)
    kf.faas("funcName2", func_name_2)
    kf.faas("funcName3", func_name_3)
    kf.faas("abortFunc", abort_func)
    kf.faas("dataReuseFunc", data_reuse_func)
    kf.faas("noResultFunc", no_result_func)
    kf.faas("jumpFunc", jump_func)
    kf.faas("AvgStuScore", avg_stu_score, output=AvgStuScoreOut)
    kf.faas("PrintStuAvgScore", print_stu_avg_score, output=AvgStuScoreOut)
    kf.caas_init("ConnName1", init_conn_1)
    kf.caas("ConnName1", "funcName2", "Save", caas_conn_1_save)


register()
