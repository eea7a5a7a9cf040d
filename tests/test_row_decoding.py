"""A row type that owns its decoding: ``__kisflow_decode__`` and ``__kisflow_ignore_case__``.

KisFlow's per-type serializer can read raw rows (CSV lines, bytes) and matches JSON keys
to fields ignoring case (Go's ``encoding/json``); these are kisflow's opt-in versions,
read once per row type.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

import attrs
import pytest

import kisflow as kf
from kisflow.rows import RowConversionFailure, RowType, type_fits

RAW: list[Any] = []
"""Every raw row a decoder below was handed, in order."""


@attrs.define
class Point:
    """Decodes CSV lines ``x,y`` itself."""

    x: int
    y: int

    @classmethod
    def __kisflow_decode__(cls, raw: str | bytes) -> Point:
        RAW.append(raw)
        text = raw.decode() if isinstance(raw, bytes | bytearray) else raw
        x, y = text.split(",")
        return cls(int(x), int(y))


@attrs.define
class Plain:
    """No decoder: JSON text as always."""

    x: int
    y: int


@dataclasses.dataclass
class Pair:
    """A dataclass whose staticmethod decoder returns a mapping, structured strictly."""

    a: int
    b: str = ""

    @staticmethod
    def __kisflow_decode__(raw: str | bytes) -> dict[str, Any]:
        RAW.append(raw)
        text = raw.decode() if isinstance(raw, bytes | bytearray) else raw
        a, _, b = text.partition("|")
        return {"a": json.loads(a), "b": b}


@attrs.define
class Wrong:
    """A decoder that returns what is no row."""

    n: int

    @classmethod
    def __kisflow_decode__(cls, raw: str | bytes) -> Any:
        return "not a row"


@attrs.define
class FromPlain:
    """A decoder that returns another record: converted like any record row."""

    x: int

    @classmethod
    def __kisflow_decode__(cls, raw: str | bytes) -> Any:
        return Plain(int(raw), 0)


@attrs.define
class Score:
    """Keys match fields ignoring case."""

    __kisflow_ignore_case__ = True

    stu_id: int
    score: int = 0


@dataclasses.dataclass
class Exam:
    """A dataclass that ignores key case, holding a nested record that does too."""

    __kisflow_ignore_case__: ClassVar[bool] = True

    name: str
    best: Score | None = None


@attrs.define
class Strict:
    """Keys must match exactly (the default)."""

    stu_id: int


def _run(tp: Any, rows: list[Any], **kw: Any) -> kf.RunResult:
    def copy(flow: kf.Flow, rows: list[Any]) -> None:
        flow.commit_row_batch(rows)

    copy.__annotations__["rows"] = list[tp]
    kf.faas("Copy", copy, replace=True)
    return kf.FlowBuilder("decoding").calculate("Copy").build().run(rows, **kw)


@pytest.fixture(autouse=True)
def _clear_raw() -> None:
    RAW.clear()


class TestDecodeHook:
    """``__kisflow_decode__`` gets every str/bytes row before any JSON parsing."""

    def test_raw_rows_become_rows(self) -> None:
        line, data = "1,2", b"3,4"
        result = _run(Point, [line, data, bytearray(b"5,6"), {"x": 7, "y": 8}, Point(9, 10)])
        assert result.output == [Point(1, 2), Point(3, 4), Point(5, 6), Point(7, 8), Point(9, 10)]
        assert RAW[0] is line
        assert RAW[1] is data
        assert len(RAW) == 3  # a mapping and an instance never reach the decoder

    def test_json_text_is_not_parsed_first(self) -> None:
        with pytest.raises(kf.RowConversionError) as info:
            _run(Point, ['{"x": 1, "y": 2}'])
        # the fast pass and the pass that finds the bad row: a decoder may see a row twice
        assert RAW == ['{"x": 1, "y": 2}'] * 2
        assert "invalid literal for int() with base 10: '{\"x\": 1'" in str(info.value)
        assert isinstance(info.value.__cause__, ValueError)

    def test_without_a_hook_json_as_always(self) -> None:
        assert _run(Plain, ['{"x": 1, "y": 2}']).output == [Plain(1, 2)]
        with pytest.raises(kf.RowConversionError, match="not valid JSON"):
            _run(Plain, ["1,2"])

    def test_a_mapping_it_returns_is_structured_strictly(self) -> None:
        assert _run(Pair, ["1|one", b"2|"]).output == [Pair(1, "one"), Pair(2, "")]
        with pytest.raises(kf.RowConversionError, match=r"expected an int, got float 1\.5"):
            _run(Pair, ["1.5|x"])

    def test_another_record_it_returns_is_converted(self) -> None:
        assert _run(FromPlain, ["4"]).output == [FromPlain(4)]

    def test_what_is_no_row_is_a_conversion_error(self) -> None:
        with pytest.raises(kf.RowConversionError) as info:
            _run(Wrong, ["x"])
        assert "Wrong.__kisflow_decode__ returned str; it must return a Wrong or a mapping" in (
            str(info.value)
        )

    def test_a_failing_decoder_dead_letters_the_row(self) -> None:
        letters: list[kf.DeadLetter] = []
        result = _run(Point, ["1,2", "1;2", b"\xff,1"], dead_letters=letters)
        assert result.output == [Point(1, 2)]
        assert [(d.row_index, d.error_type) for d in letters] == [
            (1, "ValueError"),
            (2, "UnicodeDecodeError"),
        ]
        assert letters[0].error.startswith("cannot be converted to Point: not enough values")

    def test_read_once_per_row_type_not_per_row(self) -> None:
        looked_up: list[str] = []

        class Counting(type):
            def __getattribute__(cls, name: str) -> Any:
                if name == "__kisflow_decode__":
                    looked_up.append(name)
                return super().__getattribute__(name)

        @attrs.define
        class Counted(metaclass=Counting):
            n: int

            @classmethod
            def __kisflow_decode__(cls, raw: str | bytes) -> Any:
                return cls(int(raw))

        row_type = RowType(Counted)
        built = len(looked_up)
        assert built >= 1
        rows = [str(i) for i in range(1000)]
        assert [c.n for c in row_type.convert(rows)] == list(range(1000))
        good, bad = row_type.convert_each(["1", "x", "3"])
        assert (len(good), [b.index for b in bad]) == (2, [1])
        assert len(looked_up) == built  # no lookup per row

    def test_raw_rows_fit_a_type_that_decodes_them(self) -> None:
        assert type_fits(str, Point)
        assert type_fits(bytes, Point)
        assert not type_fits(str, Plain)

        @kf.faas("Lines", output=str)
        def lines(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(f"{r},{r * 2}" for r in rows)

        @kf.faas("Points")
        def points(flow: kf.Flow, rows: list[Point]) -> None:
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("fits").calculate("Lines").calculate("Points").build()
        assert flow.run([1, 2]).output == [Point(1, 2), Point(2, 4)]


@attrs.define
class Method:
    """A decoder declared as an instance method: kisflow cannot call it with the raw row."""

    n: int

    def __kisflow_decode__(self, raw: str) -> Any:
        return None


@attrs.define
class NotCallable:
    """A decoder that is no function."""

    __kisflow_decode__ = "csv"
    n: int


@attrs.define
class NotBool:
    """A flag that is no bool."""

    __kisflow_ignore_case__ = "yes"
    n: int


class TestBadHooks:
    """A decoder kisflow cannot call, or a flag that is not a bool, fails at registration."""

    def test_an_instance_method(self) -> None:
        def take(flow: kf.Flow, rows: list[Method]) -> None: ...

        with pytest.raises(kf.FaaSSignatureError) as info:
            kf.faas("Take", take)
        assert info.value.parameter == "rows"
        assert info.value.reason == (
            "Method.__kisflow_decode__ must take one argument, the raw str or bytes row: "
            "declare it '@classmethod def __kisflow_decode__(cls, raw)'"
        )

    def test_not_callable_and_not_a_bool(self) -> None:
        for tp, reason in [
            (
                NotCallable,
                "NotCallable.__kisflow_decode__ must be a classmethod (cls, raw), got str",
            ),
            (NotBool, "NotBool.__kisflow_ignore_case__ must be True or False, got str"),
        ]:

            def take(flow: kf.Flow, rows: list[Any]) -> None: ...

            take.__annotations__["rows"] = list[tp]
            with pytest.raises(kf.FaaSSignatureError) as info:
                kf.faas("Take", take)
            assert info.value.reason == reason
            with pytest.raises(TypeError, match="__kisflow_"):
                RowType(tp)


class TestIgnoreCase:
    """``__kisflow_ignore_case__ = True``: keys match fields ignoring case, as in Go."""

    def test_json_text_and_dicts(self) -> None:
        rows = ['{"Stu_Id": 1, "SCORE": 90}', b'{"stu_id": 2}', {"STU_ID": 3, "Score": 7}]
        assert _run(Score, rows).output == [Score(1, 90), Score(2, 0), Score(3, 7)]

    def test_the_last_key_for_a_field_wins_and_others_are_ignored(self) -> None:
        rows = [{"score": 1, "SCORE": 2, "stu_id": 3, "Other": 4}]
        assert _run(Score, rows).output == [Score(3, 2)]

    def test_values_are_still_strict(self) -> None:
        with pytest.raises(kf.RowConversionError, match="expected an int, got str '1'"):
            _run(Score, [{"STU_ID": "1"}])

    def test_nested_records_and_dataclasses(self) -> None:
        out = _run(Exam, ['{"NAME": "final", "Best": {"Stu_id": 5, "score": 99}}']).output
        assert out == [Exam("final", Score(5, 99))]

    def test_off_by_default(self) -> None:
        with pytest.raises(RowConversionFailure, match="missing required field 'stu_id'"):
            RowType(Strict).convert([{"STU_ID": 1}])
        assert RowType(Strict).convert([{"stu_id": 1}]) == [Strict(1)]
