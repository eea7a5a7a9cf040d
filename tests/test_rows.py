"""Tests for kisflow.rows: strict conversion of input rows to a stage's declared row type."""

from __future__ import annotations

import dataclasses
import json
import types
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kisflow.rows import (
    RowConversionFailure,
    RowType,
    converter,
    describe_type,
    is_record_type,
    is_supported_row_type,
    safe_repr,
    safe_str,
    type_fits,
)
from tests.deeprows import deep_dict, deep_list

# Rows nested past the recursion limit can make the interpreter's own handling of an object
# finalised at that depth fail ("Failed to process unraisable exception"): Python at its
# limit, not kisflow, whose outcomes these tests assert.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


no_deadline = settings(deadline=None)
"""Hypothesis without its per-example deadline: a loaded CI machine is slow, not wrong."""


@attrs.define
class ScoreIn:
    """The issue's input row."""

    stu_id: int
    score_1: int = 0
    score_2: int = 0
    score_3: int = 0


@attrs.define
class ScoreOut:
    """The issue's output row."""

    stu_id: int
    avg_score: float


@attrs.define
class ScoreInPlus(ScoreIn):
    """A subclass: still a ScoreIn."""

    note: str = ""


@dataclasses.dataclass
class ScoreData:
    """A dataclass with the same fields as ScoreIn."""

    stu_id: int
    score_1: int = 0
    score_2: int = 0
    score_3: int = 0


@attrs.define
class Tagged:
    """A record with a nested record and a list field."""

    score: ScoreIn
    tags: list[str] = attrs.field(factory=list)


@attrs.define
class Flag:
    """A bool field."""

    on: bool


@attrs.define
class Named:
    """A str field."""

    name: str


@attrs.define
class MaybeId:
    """An optional field."""

    stu_id: int | None


@attrs.define
class FloatId:
    """The id as a float: never fits an int field."""

    stu_id: float


@attrs.define
class StrId:
    """The id as a string."""

    stu_id: str


@attrs.define
class NoScores:
    """Has no stu_id at all."""

    score_1: int


@attrs.define
class Ints:
    """Only int fields."""

    a: int
    b: int


@attrs.define
class Generated:
    """A row type for the hypothesis round trips."""

    id: int
    name: str
    ratio: float
    ok: bool
    tags: list[str]
    nested: ScoreIn | None = None


def fail(rt: RowType, rows: list[Any]) -> RowConversionFailure:
    """Convert ``rows`` and return the failure (the test fails if nothing fails)."""
    with pytest.raises(RowConversionFailure) as info:
        rt.convert(rows)
    return info.value


class TestRecordRows:
    """Dicts, JSON and other records are structured into an attrs row type."""

    rt = RowType(ScoreIn)

    def test_dict(self) -> None:
        assert self.rt.convert([{"stu_id": 101, "score_1": 100}]) == [ScoreIn(101, 100)]

    def test_json_string_and_bytes(self) -> None:
        rows = ['{"stu_id": 102, "score_1": 100, "score_2": 70}', b'{"stu_id": 103}']
        assert self.rt.convert(rows) == [ScoreIn(102, 100, 70), ScoreIn(103)]

    def test_bytearray(self) -> None:
        assert self.rt.convert([bytearray(b'{"stu_id": 7}')]) == [ScoreIn(7)]

    def test_instance_passes_through_as_the_same_object(self) -> None:
        row = ScoreIn(103, 1, 2, 3)
        out = self.rt.convert([row])
        assert out[0] is row

    def test_subclass_instance_passes_through(self) -> None:
        row = ScoreInPlus(1, note="x")
        assert self.rt.convert([row])[0] is row
        assert self.rt.convert_each([row])[0][0] is row

    def test_mixed_batch_keeps_order(self) -> None:
        rows = [
            {"stu_id": 101, "score_1": 100, "score_2": 90, "score_3": 80},
            '{"stu_id": 102, "score_1": 100, "score_2": 70, "score_3": 60}',
            ScoreIn(103, 1, 2, 3),
        ]
        assert [r.stu_id for r in self.rt.convert(rows)] == [101, 102, 103]

    def test_dataclass_record_is_restructured(self) -> None:
        row = ScoreData(5, 1, 2, 3)
        out = self.rt.convert([row])[0]
        assert type(out) is ScoreIn
        assert out == ScoreIn(5, 1, 2, 3)

    def test_other_attrs_record_is_restructured(self) -> None:
        out = RowType(ScoreData).convert([ScoreIn(6, 9)])[0]
        assert out == ScoreData(6, 9)

    def test_extra_keys_are_ignored(self) -> None:
        assert self.rt.convert([{"stu_id": 1, "class": "3A"}]) == [ScoreIn(1)]

    def test_whole_float_fits_an_int_field(self) -> None:
        assert self.rt.convert([{"stu_id": 1.0}]) == [ScoreIn(1)]
        assert type(self.rt.convert([{"stu_id": 1.0}])[0].stu_id) is int

    def test_int_fits_a_float_field(self) -> None:
        out = RowType(ScoreOut).convert([{"stu_id": 1, "avg_score": 90}])[0]
        assert out.avg_score == 90.0
        assert type(out.avg_score) is float

    def test_nested_records_and_lists(self) -> None:
        rows = [{"score": {"stu_id": 1}, "tags": ["a", "b"]}, '{"score": {"stu_id": 2}}']
        assert RowType(Tagged).convert(rows) == [Tagged(ScoreIn(1), ["a", "b"]), Tagged(ScoreIn(2))]

    def test_optional_field(self) -> None:
        assert RowType(MaybeId).convert([{"stu_id": None}, {"stu_id": 3}]) == [
            MaybeId(None),
            MaybeId(3),
        ]

    def test_tuple_input_gives_a_list(self) -> None:
        out = self.rt.convert(({"stu_id": 1},))
        assert out == [ScoreIn(1)]
        assert isinstance(out, list)


class TestStrictness:
    """Values are never truncated or coerced, and failures give the row's index."""

    rt = RowType(ScoreIn)

    def test_float_never_truncated_into_int(self) -> None:
        failure = fail(self.rt, [{"stu_id": 1}, {"stu_id": 2}, {"stu_id": 101.7}])
        assert failure.index == 2
        assert failure.row == {"stu_id": 101.7}
        assert "expected an int, got float 101.7" in str(failure)

    def test_float_from_json_never_truncated(self) -> None:
        failure = fail(self.rt, ['{"stu_id": 1.5}'])
        assert failure.index == 0
        assert "got float 1.5" in str(failure.cause)

    @pytest.mark.parametrize("value", [True, False])
    def test_bool_is_not_an_int(self, value: bool) -> None:
        failure = fail(self.rt, [{"stu_id": 1}, {"stu_id": value}])
        assert failure.index == 1
        assert f"expected an int, got bool {value}" in str(failure)

    def test_bool_is_not_a_float(self) -> None:
        failure = fail(RowType(ScoreOut), [{"stu_id": 1, "avg_score": True}])
        assert "expected a float, got bool True" in str(failure)

    def test_int_is_not_a_bool(self) -> None:
        failure = fail(RowType(Flag), [{"on": True}, {"on": 1}])
        assert failure.index == 1
        assert "expected a bool, got int 1" in str(failure)

    @pytest.mark.parametrize("value", ["101", None])
    def test_string_or_none_is_not_an_int(self, value: Any) -> None:
        assert fail(self.rt, [{"stu_id": value}]).index == 0

    def test_number_is_not_stringified(self) -> None:
        failure = fail(RowType(Named), [{"name": "a"}, {"name": 5}])
        assert failure.index == 1
        assert "expected a str, got int 5" in str(failure)

    def test_missing_required_field(self) -> None:
        failure = fail(self.rt, [{"stu_id": 1}, {"score_1": 3}])
        assert failure.index == 1
        assert "missing required field 'stu_id' for ScoreIn" in str(failure)

    @pytest.mark.parametrize("text", ["not json", '{"stu_id": 1', "", b"\xff"])
    def test_bad_json(self, text: str | bytes) -> None:
        failure = fail(self.rt, [{"stu_id": 1}, text])
        assert failure.index == 1
        assert failure.row == text
        assert "not valid JSON" in str(failure)

    @pytest.mark.parametrize("row", ["[1, 2]", "3", 5, None, [("stu_id", 1)]])
    def test_not_an_object(self, row: Any) -> None:
        failure = fail(self.rt, [row])
        assert failure.index == 0
        assert "expected a mapping, a JSON object or a record for ScoreIn" in str(failure)

    def test_string_is_not_split_into_a_list(self) -> None:
        failure = fail(RowType(Tagged), [{"score": {"stu_id": 1}, "tags": "ab"}])
        assert "expected a list for list[str], got str 'ab'" in str(failure)

    def test_list_items_are_checked(self) -> None:
        failure = fail(RowType(Tagged), [{"score": {"stu_id": 1}, "tags": ["a", 2]}])
        assert "expected a str, got int 2" in str(failure)

    def test_nested_float_never_truncated(self) -> None:
        failure = fail(RowType(Tagged), [{"score": {"stu_id": 1}}, {"score": {"stu_id": 1.5}}])
        assert failure.index == 1

    def test_first_bad_row_is_reported(self) -> None:
        failure = fail(self.rt, [{"stu_id": 0}, "x", {"stu_id": 2.5}])
        assert failure.index == 1

    def test_failure_carries_cause_and_short_text(self) -> None:
        row = {"stu_id": "x" * 500}
        failure = fail(self.rt, [row])
        assert failure.row is row
        assert isinstance(failure.cause, TypeError)
        assert failure.__cause__ is failure.cause
        text = str(failure)
        assert text.startswith("row 0 (")
        assert "..." in text
        assert len(text) < 300


class TestConvertEach:
    """``convert_each`` converts what it can and reports every failure."""

    def test_good_and_bad(self) -> None:
        rt = RowType(ScoreIn)
        rows = [{"stu_id": 1}, {"stu_id": 1.5}, '{"stu_id": 3}', "bad", ScoreIn(5)]
        good, bad = rt.convert_each(rows)
        assert good == [ScoreIn(1), ScoreIn(3), ScoreIn(5)]
        assert good[2] is rows[4]
        assert [f.index for f in bad] == [1, 3]
        assert [f.row for f in bad] == [{"stu_id": 1.5}, "bad"]
        assert all(isinstance(f, RowConversionFailure) for f in bad)

    def test_all_good(self) -> None:
        good, bad = RowType(int).convert_each([1, "2"])
        assert (good, bad) == ([1, 2], [])

    def test_passthrough(self) -> None:
        rows = [object(), "x"]
        good, bad = RowType(Any).convert_each(rows)
        assert good == rows
        assert bad == []


class TestDictRows:
    """A dict row type takes dicts, JSON objects and records; a parameterised one checks values."""

    def test_dict(self) -> None:
        row = {"a": 1}
        assert RowType(dict).convert([row, '{"b": 2}']) == [{"a": 1}, {"b": 2}]

    def test_other_mappings_become_dicts(self) -> None:
        row = types.MappingProxyType({"a": 1})
        out = RowType(dict[str, int]).convert([row])
        assert out == [{"a": 1}]
        assert type(out[0]) is dict

    def test_record_is_unstructured(self) -> None:
        assert RowType(dict).convert([ScoreIn(1, 2)]) == [
            {"stu_id": 1, "score_1": 2, "score_2": 0, "score_3": 0}
        ]

    def test_parameterised_values_checked(self) -> None:
        rt = RowType(dict[str, int])
        assert rt.convert([{"a": 1}]) == [{"a": 1}]
        failure = fail(rt, [{"a": 1}, {"a": "x"}])
        assert failure.index == 1
        assert "value of key 'a'" in str(failure)

    def test_parameterised_keys_checked(self) -> None:
        assert fail(RowType(dict[str, int]), [{1: 1}]).index == 0

    @pytest.mark.parametrize("row", ["[1]", 3, [1], None])
    def test_not_an_object(self, row: Any) -> None:
        failure = fail(RowType(dict), [row])
        assert "expected a JSON object or a dict" in str(failure)


class TestScalarRows:
    """Scalar row types accept their own values and JSON text, strictly."""

    @pytest.mark.parametrize(
        ("tp", "row", "expected"),
        [
            (int, 5, 5),
            (int, "5", 5),
            (int, b"5", 5),
            (float, 1, 1.0),
            (float, 1.5, 1.5),
            (float, "2.5", 2.5),
            (str, "x", "x"),
            (str, '"quoted"', '"quoted"'),
            (bool, True, True),
            (bool, "false", False),
        ],
    )
    def test_accepted(self, tp: type, row: Any, expected: Any) -> None:
        out = RowType(tp).convert([row])
        assert out == [expected]
        assert type(out[0]) is tp

    @pytest.mark.parametrize(
        ("tp", "row"),
        [
            (int, 1.0),
            (int, 1.5),
            (int, True),
            (int, "1.5"),
            (int, "x"),
            (int, None),
            (float, True),
            (float, None),
            (str, 1),
            (str, b"x"),
            (bool, 1),
            (bool, "1"),
        ],
    )
    def test_rejected(self, tp: type, row: Any) -> None:
        assert fail(RowType(tp), [tp(), row] if tp is not bool else [True, row]).index == 1


class TestPassthrough:
    """``Any`` and ``object`` rows are not converted at all."""

    @pytest.mark.parametrize("tp", [Any, object])
    def test_same_list_back(self, tp: Any) -> None:
        rows = [1, "x", {"a": 1}]
        rt = RowType(tp)
        assert rt.passthrough is True
        assert rt.convert(rows) is rows

    def test_tuple_becomes_list(self) -> None:
        assert RowType(Any).convert((1, 2)) == [1, 2]


class TestTypeFits:
    """``type_fits`` says whether one stage's output can feed the next stage's rows."""

    @pytest.mark.parametrize(
        ("produced", "consumed", "fits"),
        [
            (ScoreIn, Any, True),
            (int, Any, True),
            (ScoreIn, object, True),
            (Any, ScoreIn, True),
            (ScoreIn, ScoreIn, True),
            (ScoreInPlus, ScoreIn, True),
            (ScoreIn, ScoreInPlus, True),  # structurally: note has a default
            (ScoreIn, dict, True),
            (ScoreData, dict, True),
            (ScoreIn, dict[str, int], True),
            (ScoreOut, dict[str, int], False),  # avg_score is a float
            (ScoreOut, dict[str, float], True),
            (dict[str, int], dict, True),
            (dict, dict[str, int], True),
            (dict[str, str], dict[str, int], False),
            (dict, ScoreIn, True),
            (int, dict, False),
            (ScoreData, ScoreIn, True),
            (ScoreIn, ScoreData, True),
            (ScoreIn, ScoreOut, False),  # avg_score is required and missing
            (NoScores, ScoreIn, False),  # stu_id missing
            (ScoreIn, NoScores, True),
            (FloatId, ScoreIn, False),  # a float never goes into an int field
            (StrId, ScoreIn, False),
            (ScoreIn, FloatId, True),  # int -> float field
            (ScoreIn, MaybeId, True),
            (MaybeId, ScoreIn, False),
            (int, float, True),
            (float, int, False),
            (bool, int, False),
            (bool, float, False),
            (bool, bool, True),
            (int, str, False),
            (str, int, False),
            (int, int | None, True),
            (int | None, int, False),
            (int | str, int | str, True),
            (ScoreIn, list[int], False),
        ],
    )
    def test_truth_table(self, produced: Any, consumed: Any, fits: bool) -> None:
        assert type_fits(produced, consumed) is fits

    def test_nested_records_fit_structurally(self) -> None:
        @attrs.define
        class TaggedData:
            score: ScoreData
            tags: list[str]

        assert type_fits(TaggedData, Tagged) is True


class TestTypeHelpers:
    """Row type predicates and their readable names."""

    @pytest.mark.parametrize(
        "tp", [Any, object, ScoreIn, ScoreData, dict, dict[str, int], int, float, str, bool]
    )
    def test_supported(self, tp: Any) -> None:
        assert is_supported_row_type(tp) is True

    @pytest.mark.parametrize("tp", [list[int], tuple, bytes, int | None, type(None), complex])
    def test_unsupported(self, tp: Any) -> None:
        assert is_supported_row_type(tp) is False

    def test_is_record_type(self) -> None:
        assert is_record_type(ScoreIn)
        assert is_record_type(ScoreData)
        assert not is_record_type(ScoreIn(1))
        assert not is_record_type(dict)

    @pytest.mark.parametrize(
        ("tp", "name"),
        [(ScoreIn, "ScoreIn"), (Any, "Any"), (int, "int"), (dict[str, int], "dict[str, int]")],
    )
    def test_describe_type(self, tp: Any, name: str) -> None:
        assert describe_type(tp) == name


scores = st.builds(
    ScoreIn,
    stu_id=st.integers(),
    score_1=st.integers(-1000, 1000),
    score_2=st.integers(-1000, 1000),
    score_3=st.integers(-1000, 1000),
)
generated = st.builds(
    Generated,
    id=st.integers(),
    name=st.text(),
    ratio=st.floats(allow_nan=False),
    ok=st.booleans(),
    tags=st.lists(st.text(max_size=5), max_size=5),
    nested=st.none() | scores,
)


class TestRoundTrips:
    """Generated rows survive dict -> row -> unstructure and JSON -> row unchanged."""

    rt = RowType(Generated)

    @no_deadline
    @given(generated)
    def test_dict_round_trip(self, row: Generated) -> None:
        data = converter.unstructure(row)
        back = self.rt.convert([data])[0]
        assert back == row
        assert converter.unstructure(back) == data

    @no_deadline
    @given(generated)
    def test_json_round_trip(self, row: Generated) -> None:
        text = json.dumps(converter.unstructure(row))
        assert self.rt.convert([text]) == [row]

    @no_deadline
    @given(st.lists(scores, max_size=20))
    def test_batch_of_dicts(self, rows: list[ScoreIn]) -> None:
        data = [converter.unstructure(r) for r in rows]
        assert RowType(ScoreIn).convert(data) == rows
        good, bad = RowType(ScoreIn).convert_each(data)
        assert (good, bad) == (rows, [])


class TestNoTruncationProperty:
    """No float with a fractional part ever lands in an int field, however it arrives."""

    @no_deadline
    @given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()))
    def test_fractional_float_refused(self, value: float) -> None:
        rt = RowType(ScoreIn)
        for row in ({"stu_id": value}, json.dumps({"stu_id": value})):
            good, bad = rt.convert_each([{"stu_id": 1}, row])
            assert good == [ScoreIn(1)]
            assert [f.index for f in bad] == [1]


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


class _MyList(list[Any]):
    """A list subclass that keeps list's repr."""


class _MySet(set[Any]):
    """A set subclass: its repr names the class."""


_printable = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=4) | st.integers(), children, max_size=4)
        | st.frozensets(st.integers() | st.text(max_size=3), max_size=3)
    ),
    max_leaves=15,
)


class TestSafeRepr:
    """``safe_repr``: ``repr`` for ordinary rows, bounded and never raising for hostile ones."""

    @no_deadline
    @given(row=_printable)
    def test_ordinary_rows_print_as_repr(self, row: Any) -> None:
        expected = repr(row)
        shown = safe_repr(row, limit=10_000, depth=50)
        assert shown == expected

    @no_deadline
    @given(row=_printable, limit=st.integers(8, 60))
    def test_cut_rows_are_a_prefix_of_repr(self, row: Any, limit: int) -> None:
        expected = repr(row)
        shown = safe_repr(row, limit=limit, depth=50)
        if len(expected) <= limit:
            assert shown == expected
        else:
            assert len(shown) == limit
            assert shown.endswith("...")
            assert expected.startswith(shown[:-3])

    def test_records_and_subclasses(self) -> None:
        assert safe_repr(ScoreIn(1, 2)) == repr(ScoreIn(1, 2))
        assert safe_repr(ScoreData(3)) == repr(ScoreData(3))
        assert safe_repr(_MyList([1, [2]])) == "[1, [2]]"
        assert safe_repr(_MySet({1})) == "_MySet({1})"
        assert safe_repr(_MySet()) == "_MySet()"
        assert safe_repr(set()) == "set()"
        assert safe_repr(bytearray(b"ab")) == "bytearray(b'ab')"

    @pytest.mark.parametrize(
        ("row", "shown"),
        [
            (10**5000, "<int of about 5001 digits>"),
            (-(10**5000), "<int of about 5001 digits>"),
            ({"n": 10**5000}, "{'n': <int of about 5001 digits>}"),
            (_BadRepr(), "<_BadRepr object: repr raised RuntimeError>"),
            ([1, _BadRepr()], "[1, <_BadRepr object: repr raised RuntimeError>]"),
            (ScoreIn(10**5000), "ScoreIn(stu_id=<int of about 5001 digits>, score_1=0, "),
            (deep_list(10_000), "[[[[[[[[[...]]]]]]]]]"),
            (deep_dict(3), "{'a': {'a': {'a': {}}}}"),
        ],
        ids=[
            "bigint",
            "negative",
            "bigint-in-dict",
            "bad-repr",
            "bad-repr-in-list",
            "record-bigint",
            "deep-list",
            "shallow-dict",
        ],
    )
    def test_hostile_rows(self, row: Any, shown: str) -> None:
        assert safe_repr(row, limit=60).startswith(shown.removesuffix("..."))

    def test_depth_and_size_bound(self) -> None:
        assert safe_repr(deep_list(10_000), depth=2) == "[[[...]]]"
        assert safe_repr(deep_dict(10_000), depth=1) == "{'a': {...}}"
        huge = list(range(10_000_000))
        assert len(safe_repr(huge, limit=50)) == 50
        assert len(safe_repr("x" * 10_000_000, limit=50)) == 50

    def test_cycles(self) -> None:
        row: list[Any] = [1]
        row.append(row)
        assert safe_repr(row) == repr(row) == "[1, [...]]"
        table: dict[str, Any] = {}
        table["self"] = table
        assert safe_repr(table) == repr(table) == "{'self': {...}}"

    def test_near_the_recursion_limit(self) -> None:
        row = deep_list(30)
        shown: list[str] = []
        entered = 0

        def trivial() -> int:
            return 1

        def probe() -> None:
            nonlocal entered
            try:  # noqa: SIM105 - contextlib.suppress's __exit__ would need a frame
                probe()
            except RecursionError:
                pass
            try:
                trivial()  # a frame can be pushed here: safe_repr must then return
            except RecursionError:
                return
            entered += 1
            shown.append(safe_repr(row, depth=30))

        probe()
        assert entered > 100
        assert len(shown) == entered
        assert shown[-1] == safe_repr(row, depth=30) == "[" * 31 + "]" * 31
        assert "<list object: repr raised RecursionError>" in shown  # the deepest frames


class TestSafeStr:
    """``safe_str``: an error's text, bounded, even when ``str`` of it raises."""

    def test_plain(self) -> None:
        assert safe_str(ValueError("bad row")) == "bad row"
        assert safe_str("x" * 1000, limit=10) == "xxxxxxx..."

    def test_str_that_raises(self) -> None:
        assert safe_str(ValueError(10**5000)) == "<int of about 5001 digits>"
        assert safe_str(KeyError(_BadRepr())) == "<_BadRepr object: repr raised RuntimeError>"
        assert safe_str(_BadStr("a", 1)) == "('a', 1)"
        assert safe_str(_BadRepr()) == "<_BadRepr object: str raised RuntimeError>"


class TestHostileConversion:
    """Rows nested past the recursion limit fail as rows, with a ValueError saying so."""

    @pytest.mark.parametrize("tp", [ScoreIn, dict, dict[str, Any], int])
    def test_deep_json_text(self, tp: Any) -> None:
        failure = fail(RowType(tp), ["[" * 10_000 + "]" * 10_000])
        assert isinstance(failure.cause, ValueError)
        assert "nested too deeply" in failure.reason
        assert isinstance(failure.cause.__cause__, RecursionError)

    def test_deep_list_to_a_record(self) -> None:
        failure = fail(RowType(ScoreIn), [deep_list(10_000)])
        assert type(failure.cause) is ValueError
        assert failure.reason.startswith("nested too deeply to convert")
        assert str(failure) == f"row 0 ([[[[[[[[[...]]]]]]]]]): {failure.reason}"

    def test_failure_text_whatever_the_row(self) -> None:
        for row in (10**5000, _BadRepr(), deep_dict(10_000)):
            failure = fail(RowType(ScoreIn), [row])
            assert len(str(failure)) < 700
            assert repr(failure).startswith("RowConversionFailure(row 0 (")
