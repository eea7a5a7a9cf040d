"""The four actions, with KisFlow's semantics minus its bugs, and the step limit."""

from __future__ import annotations

from typing import Any

import pytest

import kisflow as kf


def _flow(*stages: tuple[str, Any]) -> kf.Flow:
    builder = kf.FlowBuilder("acts")
    for name, fn in stages:
        kf.pool.faas(name, fn)
        builder.calculate(name)
    return builder.build()


def _identity(flow: kf.Flow) -> None:
    flow.commit_row_batch(flow.input())


class TestForceEntryNext:
    """force_entry_next goes on with no rows, and keeps rows that were committed."""

    def test_keeps_committed_rows(self) -> None:
        # KisFlow (Go) replaces the committed rows with an empty layer here: a bug.
        def commit_and_force(flow: kf.Flow) -> None:
            flow.commit_row("kept")
            flow.next(kf.actions.force_entry_next)

        result = _flow(("a", commit_and_force), ("b", _identity)).run([1])
        assert result.output == ["kept"]

    def test_without_rows_the_next_stage_sees_an_empty_input(self) -> None:
        seen: list[list[Any]] = []

        def force(flow: kf.Flow) -> None:
            flow.next(kf.actions.force_entry_next)

        def record(flow: kf.Flow) -> None:
            seen.append(list(flow.input()))
            flow.commit_row("done")

        result = _flow(("a", force), ("b", record)).run([1, 2])
        assert seen == [[]]
        assert result.output == ["done"]


class TestDataReuse:
    """data_reuse makes a stage's result its input; an empty input still stops the flow."""

    def test_commits_are_dropped(self) -> None:
        def reuse(flow: kf.Flow) -> None:
            flow.commit_row("dropped")
            flow.next(kf.actions.data_reuse)

        result = _flow(("a", reuse), ("b", _identity)).run([1, 2])
        assert result.output == [1, 2]
        assert result.stage("a").rows_out == 2

    def test_empty_input_stops_unless_forced(self) -> None:
        def reuse(flow: kf.Flow) -> None:
            flow.next(kf.actions.data_reuse)

        def reuse_forced(flow: kf.Flow) -> None:
            flow.next(kf.actions.data_reuse, kf.actions.force_entry_next)

        stopped = _flow(("a", reuse), ("b", _identity)).run([])
        assert (stopped.ended, stopped.stopped_at) == (kf.RunEnd.NO_ROWS, "a")
        kf.pool.reset()
        forced = _flow(("a", reuse_forced), ("b", _identity)).run([])
        assert forced.ended is kf.RunEnd.COMPLETED
        assert forced.stage("b").calls == 1


class TestJumpFunc:
    """jump_func continues at a named stage whose input is its previous stage's result."""

    def test_jump_reads_the_targets_previous_layer_and_metadata_counts(self) -> None:
        def seed(flow: kf.Flow) -> None:
            flow.commit_row("s")

        def work(flow: kf.Flow) -> None:
            n = (flow.get_metadata("n") or 0) + 1
            flow.set_metadata("n", n)
            flow.commit_row_batch([f"{r}{n}" for r in flow.input()])

        def again(flow: kf.Flow) -> None:
            flow.commit_row_batch(flow.input())
            if flow.get_metadata("n") < 3:
                flow.next(kf.actions.jump_func("work"))

        flow = _flow(("seed", seed), ("work", work), ("again", again))
        result = flow.run()
        assert result.output == ["s3"]
        assert result.stage("work").calls == 3
        assert result.steps == 1 + 3 + 3

    def test_forward_jump_skips_stages(self) -> None:
        def skip(flow: kf.Flow) -> None:
            flow.commit_row("from skip")
            flow.next(kf.actions.jump_func("last"))

        result = _flow(("skip", skip), ("middle", _identity), ("last", _identity)).run([1])
        assert result.stage("middle").calls == 0
        # "last" reads the layer of "middle", which never ran: an empty input.
        assert result.stage("last").rows_in == 0

    def test_unknown_target(self) -> None:
        with pytest.raises(
            kf.ActionError, match="asked to jump to 'nowhere', which is not in the flow"
        ) as err:
            _flow(("a", lambda flow: flow.next(kf.actions.jump_func("nowhere")))).run([1])
        assert (err.value.flow, err.value.stage) == ("acts", "a")

    def test_ambiguous_target_and_jump_by_stage_id(self) -> None:
        def jump(flow: kf.Flow) -> None:
            flow.commit_row("j")
            target = flow.get_metadata("target")
            second = flow.get_this_function() == flow.stages[1]
            if second and not flow.get_metadata("jumped"):
                flow.set_metadata("jumped", True)
                flow.next(kf.actions.jump_func(target))

        kf.pool.faas("j", jump)
        flow = kf.FlowBuilder("rep").calculate("j").calculate("j").build()
        flow.set_metadata("target", "j")
        with pytest.raises(kf.ActionError, match="names several stages"):
            flow.run([1])
        flow.set_metadata("jumped", False)
        flow.set_metadata("target", flow.stages[0].id)
        result = flow.run([1])
        assert [s.calls for s in result.stages] == [2, 2]

    def test_loop_error_names_the_cycle(self) -> None:
        def back(flow: kf.Flow) -> None:
            flow.commit_row(1)
            flow.next(kf.actions.jump_func("b"))

        flow = _flow(("a", _identity), ("b", _identity), ("c", back))
        with pytest.raises(kf.FlowLoopError) as err:
            flow.run([1])
        assert err.value.cycle == ("b", "c")
        assert err.value.steps == kf.DEFAULT_MAX_STEPS
        assert "b -> c -> b" in str(err.value)


class TestAbort:
    """abort stops after the stage; combined with jump, abort wins."""

    def test_abort_wins_over_jump(self) -> None:
        def both(flow: kf.Flow) -> None:
            flow.commit_row("x")
            flow.next(kf.actions.jump_func("a"), kf.actions.abort)

        result = _flow(("a", both), ("b", _identity)).run([1])
        assert (result.ended, result.stopped_at, result.output, result.steps) == (
            kf.RunEnd.ABORTED,
            "a",
            ["x"],
            1,
        )

    def test_abort_with_a_jump_to_an_unknown_stage_is_still_an_error(self) -> None:
        def both(flow: kf.Flow) -> None:
            flow.next(kf.actions.jump_func("nowhere"), kf.actions.abort)

        with pytest.raises(kf.ActionError, match="'nowhere', which is not in the flow"):
            _flow(("a", both), ("b", _identity)).run([1])

    def test_actions_reset_between_stages(self) -> None:
        def force(flow: kf.Flow) -> None:
            flow.next(kf.actions.force_entry_next)

        def nothing(flow: kf.Flow) -> None:
            pass

        result = _flow(("a", force), ("b", nothing), ("c", _identity)).run([1])
        assert (result.ended, result.stopped_at) == (kf.RunEnd.NO_ROWS, "b")


class TestActionValues:
    """Actions are values that combine with |."""

    def test_combine(self) -> None:
        combined = kf.actions.data_reuse | kf.actions.jump_func("x") | kf.actions.abort
        assert combined == kf.Action(data_reuse=True, jump_func="x", abort=True)
        assert (kf.actions.jump_func("a") | kf.actions.jump_func("b")).jump_func == "b"
