"""Run reports: the text table and the DOT graph annotated with a run's figures."""

from __future__ import annotations

import textwrap

import pytest

import kisflow as kf
from kisflow import report
from kisflow.modes import Mode


def _demo_flow() -> kf.Flow:
    @kf.faas("KeepEven")
    def keep_even(flow: kf.Flow, rows: list[int]) -> None:
        for r in rows:
            if r < 0:
                flow.dead_letter(r, "negative")
            elif r % 2 == 0:
                flow.commit_row(r)

    @kf.faas("Twice")
    def twice(flow: kf.Flow, rows: list[int]) -> None:
        for r in rows:
            flow.commit_row_batch([r, r])

    return kf.FlowBuilder("demo").verify("KeepEven").expand("Twice").build()


class TestTable:
    """The table lists each stage's figures in aligned columns and ends with a summary."""

    def test_exact_text(self) -> None:
        stats = (
            kf.StageStats("id-1", "KeepEven", Mode.VERIFY, 1, 6, 3, 0.0012, 2, 1, 0, 0),
            kf.StageStats("id-2", "SaveScores", Mode.SAVE, 2, 3, 3, 1.5, 0, 0, 0, 4),
        )
        result = kf.RunResult(
            flow="demo",
            output=[1, 2, 3],
            ended=kf.RunEnd.COMPLETED,
            stopped_at=None,
            stages=stats,
            steps=3,
            duration=1.5021,
        )
        expected = textwrap.dedent(
            """\
            stage       mode    calls  in  out  filtered  added  dead  retries    ms
            KeepEven    Verify      1   6    3         1      0     2        0   1.2
            SaveScores  Save        2   3    3         0      0     0        4  1500
            run 'demo': completed after 3 steps, 3 rows out, 2 dead letters, 4 retries, 1502 ms"""
        )
        assert report.table(result) == expected

    def test_stopped_run_names_the_stage(self) -> None:
        flow = _demo_flow()
        result = flow.run([1, 3])
        last = report.table(result).splitlines()[-1]
        assert last.startswith("run 'demo': no_rows at 'KeepEven' after 1 steps, 0 rows out")

    def test_figures_of_a_real_run(self) -> None:
        flow = _demo_flow()
        result = flow.run([1, 2, "x", -4, 6], dead_letters=[])
        lines = report.table(result).splitlines()
        assert lines[1].split()[:9] == ["KeepEven", "Verify", "1", "5", "2", "1", "0", "2", "0"]
        assert lines[2].split()[:9] == ["Twice", "Expand", "1", "2", "4", "0", "2", "0", "0"]


class TestDot:
    """The annotated DOT carries one figures line per stage node."""

    def test_exact_dot(self) -> None:
        flow = _demo_flow()
        result = flow.run([1, 2, "x", -4, 6], dead_letters=[])
        expected = textwrap.dedent(
            """\
            strict digraph {
            rankdir=LR;
            label="demo";
            labelloc=t;
            node [style=filled, fontname=Helvetica];
            "KeepEven" [label="KeepEven\\nVerify (V)\\nint -> Any\\n5 in, 2 out, 1 filtered, 2 dead", shape=diamond, fillcolor="#fff2cc"];
            "Twice" [label="Twice\\nExpand (E)\\nint -> Any\\n2 in, 4 out, 2 added", shape=hexagon, fillcolor="#f8cecc"];
            "KeepEven" -> "Twice";
            }
            """  # noqa: E501
        )
        assert report.to_dot(flow, result) == expected

    def test_labels_mention_retries_and_calls(self) -> None:
        stats = kf.StageStats("i", "S", Mode.SAVE, 3, 9, 9, 0.1, 0, 0, 0, 2)
        assert report.stage_label(stats) == "9 in, 9 out, 2 retries, 3 calls"

    def test_result_of_another_flow_is_rejected(self) -> None:
        flow = _demo_flow()
        result = flow.run([2])
        with pytest.raises(kf.FlowDefinitionError, match="has no figures for stage 'KeepEven'"):
            report.to_dot(flow.fork(), result)

    def test_stages_that_did_not_run(self) -> None:
        flow = _demo_flow()
        disabled = kf.RunResult("demo", [], kf.RunEnd.DISABLED, None, (), 0, 0.0)
        assert report.to_dot(flow, disabled).count("\\nnot run") == 2
