"""The generated batch conversion of simple record types gives what the full one gives."""

from __future__ import annotations

import dataclasses
from typing import Any

import attrs
import cattrs
import pytest

from kisflow import rows as kf_rows
from kisflow.rows import RowConversionFailure, RowType


@attrs.define
class Score:
    """Scalar fields, one with a default."""

    stu_id: int
    name: str
    avg: float
    extra: Any = None
    level: int = 1


@attrs.define(kw_only=True)
class KwOnly:
    """Keyword-only fields, one private (its init alias has no underscore)."""

    a: int
    _b: str


@dataclasses.dataclass
class Point:
    """A dataclass with a keyword-only field."""

    x: float
    y: float = dataclasses.field(default=0.0, kw_only=True)


@attrs.define
class WithList:
    """A field the generated conversion does not check inline."""

    tags: list[str]


@attrs.define
class Flagged:
    """A bool field: left to the full conversion (True is an int too)."""

    ok: bool


class TestGenerated:
    """Simple record types get a generated conversion with the same results."""

    def test_built_for_scalar_records(self) -> None:
        for tp in (Score, KwOnly, Point):
            assert RowType(tp).batch is not None, tp

    @pytest.mark.parametrize("tp", [WithList, Flagged, dict, int])
    def test_not_built_for_other_types(self, tp: Any) -> None:
        assert RowType(tp).batch is None

    def test_same_rows_as_the_full_conversion(self) -> None:
        rt = RowType(Score)
        assert rt.batch is not None
        rows: list[Any] = [
            {"stu_id": 1, "name": "a", "avg": 1.5, "extra": [1], "level": 3},
            {"stu_id": 2, "name": "b", "avg": 2.0},  # defaults
            {"stu_id": 3.0, "name": "c", "avg": 4},  # an integral float and an int
            {"stu_id": 4, "name": "d", "avg": 0.5, "unknown": 1},  # extra keys ignored
            Score(5, "e", 1.0),
            '{"stu_id": 6, "name": "f", "avg": 2.5}',
        ]
        expected = [rt.convert_one(r) for r in rows]
        assert rt.batch(rows) == expected
        assert rt.convert(rows) == expected
        assert expected[1] == Score(2, "b", 2.0, None, 1)
        assert expected[2] == Score(3, "c", 4.0)
        assert type(expected[2].stu_id) is int
        assert type(expected[2].avg) is float
        assert rt.convert(rows)[4] is rows[4]

    def test_keyword_only_and_dataclass_fields(self) -> None:
        assert RowType(KwOnly).convert([{"a": 1, "_b": "x"}]) == [KwOnly(a=1, b="x")]
        assert RowType(Point).convert([{"x": 1.0, "y": 2.0}, {"x": 3}]) == [
            Point(1.0, y=2.0),
            Point(3.0),
        ]

    @pytest.mark.parametrize(
        ("row", "index", "reason"),
        [
            ({"stu_id": True, "name": "a", "avg": 1.0}, 1, "expected an int, got bool"),
            ({"stu_id": 1.5, "name": "a", "avg": 1.0}, 1, "expected an int, got float"),
            ({"name": "a", "avg": 1.0}, 1, "missing required field 'stu_id'"),
            ({"stu_id": 1, "name": 7, "avg": 1.0}, 1, "expected a str, got int"),
        ],
    )
    def test_bad_rows_are_reported_as_before(self, row: Any, index: int, reason: str) -> None:
        good = {"stu_id": 0, "name": "z", "avg": 0.0}
        with pytest.raises(RowConversionFailure) as info:
            RowType(Score).convert([good, row])
        assert info.value.index == index
        assert reason in info.value.reason

    def test_a_hook_registered_for_the_type_is_honoured(self) -> None:
        conv = cattrs.Converter()
        original = kf_rows.converter
        conv.register_structure_hook(Score, lambda v, _: Score(-1, "hook", 0.0))
        kf_rows.converter = conv
        try:
            rt = RowType(Score)
        finally:
            kf_rows.converter = original
        assert rt.batch is None
        assert rt.convert([{"stu_id": 1, "name": "a", "avg": 1.0}]) == [Score(-1, "hook", 0.0)]
