"""Dead letters: sinks, where they are configured, and the per-stage accounting."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kisflow as kf
from kisflow import actions
from kisflow.deadletter import (
    CallableSink,
    DeadLetter,
    JsonlSink,
    ListSink,
    as_sink,
)
from kisflow.testing import isolated_pool

# Rows nested past the recursion limit can make the interpreter's own handling of an object
# finalised at that depth fail ("Failed to process unraisable exception"): Python at its
# limit, not kisflow, whose outcomes these tests assert.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@attrs.define
class Item:
    """A row with one int field."""

    n: int


def _register_keep_even() -> None:
    @kf.faas("KeepEven")
    def keep_even(flow: kf.Flow, rows: list[Item]) -> None:
        for r in rows:
            if r.n < 0:
                flow.dead_letter(r, "negative")
            elif r.n % 2 == 0:
                flow.commit_row(r)


def _register_copy(name: str = "Copy") -> None:
    @kf.faas(name)
    def copy(flow: kf.Flow, rows: list[Item]) -> None:
        flow.commit_row_batch(rows)


class TestAsSink:
    """as_sink turns lists, paths, callables and put() objects into sinks, and rejects the rest."""

    def test_kinds(self, tmp_path: Path) -> None:
        target: list[Any] = []
        assert isinstance(as_sink(target), ListSink)
        assert as_sink(target).letters is target  # type: ignore[attr-defined]
        assert isinstance(as_sink(str(tmp_path / "a.jsonl")), JsonlSink)
        assert isinstance(as_sink(tmp_path / "a.jsonl"), JsonlSink)
        assert isinstance(as_sink(print), CallableSink)
        sink = ListSink()
        assert as_sink(sink) is sink

    def test_rejects_other_objects(self) -> None:
        with pytest.raises(kf.ConfigError, match="dead-letter sink must be a list"):
            as_sink(42)

    def test_letter_to_json_keeps_json_rows_and_reprs_others(self) -> None:
        letter = DeadLetter("f", "s", "id", 3, {"a": [1]}, "conversion", "bad", "TypeError")
        assert letter.to_json()["row"] == {"a": [1]}
        odd = attrs.evolve(letter, row=object)
        assert odd.to_json()["row"] == repr(object)
        assert attrs.evolve(letter, row=Item(4)).to_json()["row"] == {"n": 4}


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@dataclasses.dataclass
class DataItem:
    """A dataclass row."""

    n: int


def _deep(depth: int) -> list[Any]:
    row: list[Any] = []
    for _ in range(depth):
        row = [row]
    return row


class TestLettersOfHostileRows:
    """A letter prints, turns into JSON and is written whatever its row holds."""

    def _letter(self, row: Any, error: str = "bad") -> DeadLetter:
        return DeadLetter("f", "s", "id", 0, row, "rejected", error, "ValueError")

    @pytest.mark.parametrize(
        ("row", "text"),
        [
            (10**5000, "<int of about 5001 digits>"),
            (_deep(10_000), "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
            (_BadRepr(), "<_BadRepr object: repr raised RuntimeError>"),
            ({"n": float("nan")}, "{'n': nan}"),
            (Item(10**5000), "Item(n=<int of about 5001 digits>)"),
            (b"\xff", "b'\\xff'"),
        ],
        ids=["int-5000-digits", "list-10000-deep", "repr-raises", "nan", "record-bigint", "bytes"],
    )
    def test_to_json_gives_a_bounded_safe_repr(self, row: Any, text: str) -> None:
        letter = self._letter(row)
        shown = letter.to_json()["row"]
        assert isinstance(shown, str)
        assert shown.startswith(text)
        assert len(shown) <= 10_000
        assert len(repr(letter)) < 400
        assert "row=" in repr(letter)

    def test_records_are_json_objects(self) -> None:
        assert self._letter(Item(4)).to_json()["row"] == {"n": 4}
        assert self._letter(DataItem(5)).to_json()["row"] == {"n": 5}

    def test_jsonl_sink_writes_what_utf8_cannot_hold_as_escapes(self, tmp_path: Path) -> None:
        sink = JsonlSink(tmp_path / "dead.jsonl")
        sink.put(self._letter("\ud800 lone", error="caf\u00e9 \udcff"))
        sink.put(self._letter("caf\u00e9"))
        first, second = sink.read()
        assert first["row"] == "\ud800 lone"
        assert first["error"] == "caf\u00e9 \udcff"
        assert second["row"] == "caf\u00e9"
        assert "café" in (tmp_path / "dead.jsonl").read_text(encoding="utf-8")

    def test_jsonl_sink_writes_every_hostile_row(self, tmp_path: Path) -> None:
        sink = JsonlSink(tmp_path / "dead.jsonl")
        rows = [10**5000, _deep(10_000), _BadRepr(), {"n": [10**5000]}]
        for row in rows:
            sink.put(self._letter(row))
        written = sink.read()
        assert [w["row"][:12] for w in written] == [
            "<int of abou",
            "[[[[[[[[[[[[",
            "<_BadRepr ob",
            "{'n': [<int ",
        ]


class TestConversionDeadLetters:
    """Rows that fail conversion go to the sink with their index and error; the run goes on."""

    def test_bad_rows_are_dead_lettered_and_counted(self) -> None:
        _register_copy()
        flow = kf.FlowBuilder("f").calculate("Copy").build()
        sink: list[DeadLetter] = []
        result = flow.run([{"n": 1}, "not json", {"n": "x"}, Item(4)], dead_letters=sink)
        assert result.output == [Item(1), Item(4)]
        assert [(d.row_index, d.row, d.reason) for d in sink] == [
            (1, "not json", "conversion"),
            (2, {"n": "x"}, "conversion"),
        ]
        assert sink[0].error_type == "ValueError"
        assert "JSON" in sink[0].error
        assert "cannot be converted to Item" in sink[1].error
        assert (sink[0].flow, sink[0].stage, sink[0].stage_id) == ("f", "Copy", flow.stages[0].id)
        stats = result.stage("Copy")
        assert (stats.rows_in, stats.rows_out, stats.dead_letters, stats.filtered) == (4, 2, 2, 0)
        assert result.dead_letters == 2

    def test_without_a_sink_it_is_still_an_error(self) -> None:
        _register_copy()
        flow = kf.FlowBuilder("f").calculate("Copy").build()
        with pytest.raises(kf.RowConversionError, match="row 1 cannot be converted") as info:
            flow.run([{"n": 1}, "not json"])
        assert (info.value.flow, info.value.stage, info.value.row_index) == ("f", "Copy", 1)

    def test_input_and_data_reuse_see_only_good_rows(self) -> None:
        seen: list[Any] = []

        @kf.faas("Reuse")
        def reuse(flow: kf.Flow, rows: list[Item]) -> None:
            seen.extend(flow.input())
            flow.next(actions.data_reuse)

        flow = kf.FlowBuilder("f").verify("Reuse").build()
        sink: list[DeadLetter] = []
        result = flow.run([{"n": 1}, "bad", {"n": 2}], dead_letters=sink)
        assert seen == [{"n": 1}, {"n": 2}]
        assert result.output == [{"n": 1}, {"n": 2}]
        assert result.stage("Reuse").filtered == 0
        assert len(sink) == 1

    def test_all_rows_bad_stops_the_flow_for_no_rows(self) -> None:
        _register_copy()
        _register_copy("Copy2")
        flow = kf.FlowBuilder("f").calculate("Copy").calculate("Copy2").build()
        sink: list[DeadLetter] = []
        result = flow.run(["x", "y"], dead_letters=sink)
        assert result.ended is kf.RunEnd.NO_ROWS
        assert result.stopped_at == "Copy"
        assert len(sink) == 2


class TestRejectedRows:
    """flow.dead_letter() rejects a row from inside a FaaS."""

    def test_rejected_rows_carry_reason_and_input_index(self) -> None:
        _register_keep_even()
        flow = kf.FlowBuilder("f").verify("KeepEven").build()
        sink: list[DeadLetter] = []
        result = flow.run([{"n": 2}, "bad", {"n": -5}, {"n": 3}], dead_letters=sink)
        assert result.output == [Item(2)]
        assert [(d.row_index, d.reason, d.error) for d in sink][1] == (2, "rejected", "negative")
        assert sink[1].row == Item(-5)
        stats = result.stage("KeepEven")
        assert (stats.rows_in, stats.rows_out, stats.dead_letters, stats.filtered) == (4, 1, 2, 1)

    def test_data_reuse_does_not_pass_rejected_rows_on(self) -> None:
        @kf.faas("Gate")
        def gate(flow: kf.Flow, rows: list[Item]) -> None:
            for r in rows:
                if r.n < 0:
                    flow.dead_letter(r, "negative")
            flow.next(actions.data_reuse)

        flow = kf.FlowBuilder("f").verify("Gate").build()
        sink: list[DeadLetter] = []
        result = flow.run([{"n": 1}, "bad", {"n": -2}, {"n": 3}], dead_letters=sink)
        assert result.output == [{"n": 1}, {"n": 3}]
        assert sorted(d.row_index for d in sink) == [1, 2]
        stats = result.stage("Gate")
        assert (stats.rows_in, stats.rows_out, stats.dead_letters, stats.filtered) == (4, 2, 2, 0)
        assert stats.added == 0

    def test_exception_as_reason(self) -> None:
        @kf.faas("Check")
        def check(flow: kf.Flow, rows: list[Item]) -> None:
            for r in rows:
                flow.dead_letter(r, ValueError(f"n={r.n} is not allowed"))

        flow = kf.FlowBuilder("f").verify("Check").build()
        sink: list[DeadLetter] = []
        flow.run([{"n": 7}], dead_letters=sink)
        assert (sink[0].error, sink[0].error_type) == ("n=7 is not allowed", "ValueError")

    def test_reject_without_sink_is_an_error(self) -> None:
        _register_keep_even()
        flow = kf.FlowBuilder("f").verify("KeepEven").build()
        with pytest.raises(kf.RowRejectedError, match="rejected row Item") as info:
            flow.run([{"n": -1}])
        assert (info.value.flow, info.value.stage, info.value.row) == ("f", "KeepEven", Item(-1))

    def test_dead_letter_outside_a_run_is_an_error(self) -> None:
        _register_copy()
        flow = kf.FlowBuilder("f").calculate("Copy").build()
        with pytest.raises(kf.RunError, match="only valid inside a FaaS"):
            flow.dead_letter({"n": 1})

    def test_retry_discards_rejects_of_the_failed_attempt(self) -> None:
        calls = {"n": 0}

        @kf.faas("Flaky")
        def flaky(flow: kf.Flow, rows: list[Item]) -> None:
            calls["n"] += 1
            for r in rows:
                if r.n < 0:
                    flow.dead_letter(r, "negative")
                else:
                    flow.commit_row(r)
            if calls["n"] < 3:
                raise OSError("store down")

        option = kf.FuncOption(retry_times=2)
        flow = kf.FlowBuilder("f").verify("Flaky", option=option).build()
        sink: list[DeadLetter] = []
        result = flow.run([{"n": 1}, {"n": -1}, {"n": 2}], dead_letters=sink)
        assert calls["n"] == 3
        assert result.output == [Item(1), Item(2)]
        assert len(sink) == 1
        stats = result.stage("Flaky")
        assert (stats.retries, stats.dead_letters, stats.rows_out) == (2, 1, 2)


class TestUntypedAndRepeatedStages:
    """Stages reading flow.input() can reject rows; a stage run twice sums its figures."""

    def test_untyped_stage_rejects_by_input_index(self) -> None:
        @kf.faas("Raw")
        def raw(flow: kf.Flow) -> None:
            for row in flow.input():
                if row == "drop me":
                    flow.dead_letter(row, "unwanted")
                else:
                    flow.commit_row(row)

        flow = kf.FlowBuilder("f").verify("Raw").build()
        sink: list[DeadLetter] = []
        result = flow.run(["a", "drop me", "b"], dead_letters=sink)
        assert result.output == ["a", "b"]
        assert [(d.row_index, d.error) for d in sink] == [(1, "unwanted")]

    def test_jumped_stage_sums_calls(self) -> None:
        passes = {"n": 0}

        @kf.faas("Halve")
        def halve(flow: kf.Flow, rows: list[Item]) -> None:
            for r in rows:
                if r.n < 0:
                    flow.dead_letter(r, "negative")
                elif r.n % 2 == 0:
                    flow.commit_row(Item(r.n // 2))

        @kf.faas("Again")
        def again(flow: kf.Flow, rows: list[Item]) -> None:
            passes["n"] += 1
            flow.commit_row_batch([*rows, Item(-1)])
            if passes["n"] < 2:
                flow.next(actions.jump_func("Halve"))

        flow = kf.FlowBuilder("f").verify("Halve").calculate("Again").build()
        sink: list[DeadLetter] = []
        result = flow.run([{"n": 8}, {"n": 3}, {"n": 4}], dead_letters=sink)
        # Pass 1: Halve 3 in -> 2 out (8->4, 4->2), 1 filtered; Again 2 in -> 3 out.
        # Jump: Halve takes Again's input layer, the same 3 rows as before.
        halve_stats = result.stage("Halve")
        assert halve_stats.calls == 2
        assert (halve_stats.rows_in, halve_stats.rows_out) == (6, 4)
        assert (halve_stats.filtered, halve_stats.dead_letters) == (2, 0)
        again_stats = result.stage("Again")
        assert (again_stats.calls, again_stats.rows_in, again_stats.rows_out) == (2, 4, 6)
        assert again_stats.added == 2
        assert again_stats.balanced()
        assert halve_stats.balanced()


class TestSinkKinds:
    """JSONL files, callables and put() objects receive the same letters as a list."""

    def test_jsonl_file(self, tmp_path: Path) -> None:
        _register_copy()
        flow = kf.FlowBuilder("f").calculate("Copy").build()
        path = tmp_path / "dead.jsonl"
        flow.run([{"n": 1}, "oops", {"n": 1.5}], dead_letters=path)
        flow.run(["again"], dead_letters=str(path))
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 3
        first = json.loads(lines[0])
        assert first["row"] == "oops"
        assert first["row_index"] == 1
        assert first["stage"] == "Copy"
        assert first["reason"] == "conversion"
        assert json.loads(lines[1])["row"] == {"n": 1.5}
        assert JsonlSink(path).read()[2]["row"] == "again"

    def test_callable_and_put_object(self) -> None:
        _register_copy()
        flow = kf.FlowBuilder("f").calculate("Copy").build()
        got: list[int] = []
        flow.run(["a", "b"], dead_letters=lambda letter: got.append(letter.row_index))
        assert got == [0, 1]

        class Store:
            def __init__(self) -> None:
                self.rows: list[Any] = []

            def put(self, letter: DeadLetter) -> None:
                self.rows.append(letter.row)

        store = Store()
        flow.run(["c", {"n": 1}], dead_letters=store)
        assert store.rows == ["c"]

    def test_failing_sink_is_an_error_and_not_counted(self) -> None:
        _register_copy()
        flow = kf.FlowBuilder("f").calculate("Copy").build()

        def broken(letter: DeadLetter) -> None:
            raise OSError("disk full")

        with pytest.raises(kf.DeadLetterError, match="disk full") as info:
            flow.run(["x"], dead_letters=broken)
        assert info.value.stage == "Copy"
        assert isinstance(info.value.__cause__, OSError)


class TestWhereSinksAreSet:
    """A stage's own sink wins over the run's, which wins over the flow's default."""

    def _flow(self) -> kf.Flow:
        _register_copy("A")
        _register_copy("B")
        return kf.FlowBuilder("f").calculate("A").calculate("B").build()

    def test_precedence(self) -> None:
        flow = self._flow()
        flow_default: list[DeadLetter] = []
        for_b: list[DeadLetter] = []
        for_run: list[DeadLetter] = []
        flow.set_dead_letters(flow_default).set_dead_letters(for_b, stage="B")

        @kf.faas("A", replace=True)
        def a(flow: kf.Flow, rows: list[Item]) -> None:
            flow.commit_row_batch([*rows, "bad for B"])

        flow.run(["bad for A", {"n": 1}])
        assert [d.stage for d in flow_default] == ["A"]
        assert [d.stage for d in for_b] == ["B"]
        flow.run(["bad for A", {"n": 1}], dead_letters=for_run)
        assert [d.stage for d in for_run] == ["A"]
        assert [d.stage for d in for_b] == ["B", "B"]
        assert len(flow_default) == 1

    def test_builder_and_removal(self) -> None:
        _register_copy("A")
        sink: list[DeadLetter] = []
        flow = kf.FlowBuilder("f").calculate("A").dead_letters(sink, stage="A").build()
        flow.run(["bad"])
        assert len(sink) == 1
        flow.set_dead_letters(None, stage="A")
        with pytest.raises(kf.RowConversionError):
            flow.run(["bad"])

    def test_fork_keeps_sinks(self) -> None:
        _register_copy("A")
        sink: list[DeadLetter] = []
        flow = kf.FlowBuilder("f").calculate("A").dead_letters(sink).build()
        flow.fork().run(["bad"])
        assert len(sink) == 1

    def test_unknown_stage_and_duplicate_setting_are_errors(self) -> None:
        flow = self._flow()
        with pytest.raises(kf.FlowDefinitionError, match="no stage 'C'"):
            flow.set_dead_letters([], stage="C")
        builder = kf.FlowBuilder("g").dead_letters([])
        with pytest.raises(kf.FlowDefinitionError, match="already set for the flow"):
            builder.dead_letters([])


_ROWS = st.one_of(
    st.builds(lambda n: {"n": n}, st.integers(-50, 50)),
    st.builds(lambda n: json.dumps({"n": n}), st.integers(-50, 50)),
    st.builds(Item, st.integers(-50, 50)),
    st.text(max_size=5),
    st.builds(lambda x: {"n": x}, st.floats(allow_nan=False).filter(lambda x: not x.is_integer())),
    st.none(),
)


def _expected(row: Any) -> int | None:
    """The row's n when it converts to Item, else None (computed without kisflow)."""
    if isinstance(row, Item):
        return row.n
    if isinstance(row, str):
        try:
            row = json.loads(row)
        except ValueError:
            return None
    if isinstance(row, dict) and type(row.get("n")) is int:
        return int(row["n"])
    return None


class TestAccounting:
    """Per stage, rows in = out + filtered + dead-lettered, against figures computed apart."""

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rows=st.lists(_ROWS, max_size=40), dup=st.integers(0, 3))
    def test_equation_holds_on_generated_rows(self, rows: list[Any], dup: int) -> None:
        with isolated_pool():
            _register_keep_even()

            @kf.faas("Dup")
            def dup_rows(flow: kf.Flow, rows: list[Item]) -> None:
                for r in rows:
                    flow.commit_row_batch([r] * dup)

            flow = kf.FlowBuilder("acc").verify("KeepEven").expand("Dup").build()
            sink: list[DeadLetter] = []
            result = flow.run(rows, dead_letters=sink)

        values = [_expected(r) for r in rows]
        bad = sum(v is None for v in values)
        negative = sum(v is not None and v < 0 for v in values)
        even = [v for v in values if v is not None and v >= 0 and v % 2 == 0]
        odd = len(rows) - bad - negative - len(even)

        verify = result.stage("KeepEven")
        assert verify.rows_in == len(rows)
        assert verify.dead_letters == bad + negative == len(sink)
        assert verify.rows_out == len(even)
        assert verify.filtered == odd
        assert verify.added == 0
        assert verify.rows_in == verify.rows_out + verify.filtered + verify.dead_letters
        assert sorted(d.row_index for d in sink) == sorted(
            i for i, v in enumerate(values) if v is None or v < 0
        )
        if even:
            expand = result.stage("Dup")
            assert expand.rows_in == len(even)
            assert expand.rows_out == len(even) * dup
            assert expand.filtered == max(0, len(even) - len(even) * dup)
            assert expand.added == max(0, len(even) * dup - len(even))
            assert expand.rows_in + expand.added == (
                expand.rows_out + expand.filtered + expand.dead_letters
            )
            assert expand.balanced()
        else:
            assert result.ended is kf.RunEnd.NO_ROWS
