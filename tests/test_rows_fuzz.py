"""Hostile rows: fuzzed and malformed input to typed stages fails only with KisFlowError."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kisflow as kf
from kisflow.rows import RowConversionFailure, RowType
from kisflow.testing import isolated_pool

RESOURCES = Path(__file__).parent / "resources" / "rows"


@attrs.define
class Item:
    """A row with one int field."""

    n: int


@attrs.define
class Inner:
    """A nested record."""

    label: str
    weight: float = 1.0


@attrs.define
class Nested:
    """A record with nested, optional and collection fields."""

    id: int
    inner: Inner | None = None
    tags: list[str] = attrs.field(factory=list)
    scores: dict[str, int] = attrs.field(factory=dict)


@dataclasses.dataclass
class DataRow:
    """A dataclass row with a default."""

    name: str
    flag: bool = False


ROW_TYPES: list[Any] = [Item, Nested, DataRow, dict[str, int], dict, int, float, str, bool]

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["n", "id", "inner", "tags", "scores", "label", "weight", "name", "flag"]
            )
            | st.text(max_size=4),
            children,
            max_size=5,
        )
    ),
    max_leaves=12,
)


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


HOSTILE = st.one_of(
    _json,
    _json.map(_dumps),
    _json.map(lambda v: _dumps(v).encode("utf-8")),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.builds(Item, st.integers()),
    st.builds(Inner, st.text(max_size=3)),
    st.sampled_from([object(), Item, len, ..., frozenset({1}), (1, 2), b"\xff", bytearray(b"{")]),
)


def _outcome(fn: Callable[[], Any]) -> tuple[Any, Exception | None]:
    """Call ``fn``; return (its result, None) or (None, the exception it raised)."""
    try:
        return fn(), None
    except Exception as exc:
        return None, exc


class TestRowTypeFuzz:
    """RowType.convert either converts a batch or raises RowConversionFailure for a row."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(tp=st.sampled_from(ROW_TYPES), rows=st.lists(HOSTILE, max_size=6))
    def test_convert_fails_only_with_row_conversion_failure(self, tp: Any, rows: list[Any]) -> None:
        row_type = RowType(tp)
        converted, failure = _outcome(lambda: row_type.convert(rows))
        if failure is None:
            assert len(converted) == len(rows)
        else:
            assert isinstance(failure, RowConversionFailure), repr(failure)
            assert 0 <= failure.index < len(rows)
            assert failure.row is rows[failure.index]
        good, bad = row_type.convert_each(rows)
        assert len(good) + len(bad) == len(rows)
        assert [b.index for b in bad] == sorted({b.index for b in bad})


class TestRunFuzz:
    """Through a flow, hostile rows give a KisFlowError, or dead letters with a sink."""

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(tp=st.sampled_from(ROW_TYPES), rows=st.lists(HOSTILE, max_size=6))
    def test_run_raises_only_kisflow_errors(self, tp: Any, rows: list[Any]) -> None:
        with isolated_pool():

            def copy(flow: kf.Flow, rows: list[Any]) -> None:
                flow.commit_row_batch(rows)

            copy.__annotations__["rows"] = list[tp]
            kf.faas("Copy", copy)
            flow = kf.FlowBuilder("fuzz").calculate("Copy").build()
            result, exc = _outcome(lambda: flow.run(rows))
            if exc is None:
                assert len(result.output) == len(rows)
            else:
                assert isinstance(exc, kf.RowConversionError), repr(exc)
                assert (exc.flow, exc.stage) == ("fuzz", "Copy")

            sink: list[kf.DeadLetter] = []
            result = flow.run(rows, dead_letters=sink)
            stats = result.stage("Copy")
            assert stats.rows_in == len(rows)
            assert stats.rows_out + stats.dead_letters == len(rows)
            assert stats.dead_letters == len(sink)
            for letter in sink:
                assert letter.row is rows[letter.row_index]
                json.dumps(letter.to_json(), allow_nan=False)  # what JsonlSink writes


def _malformed_lines() -> list[Any]:
    text = (RESOURCES / "malformed.jsonl").read_text(encoding="utf-8").split("\n")
    binary = (RESOURCES / "invalid_utf8.bin").read_bytes().split(b"\n")
    return [*text, *(line.encode("utf-8") for line in text), *binary]


class TestMalformedFiles:
    """Every line of the malformed files converts, or fails as a RowConversionError."""

    def _flow(self) -> kf.Flow:
        @kf.faas("Typed")
        def typed(flow: kf.Flow, rows: list[Item]) -> None:
            flow.commit_row_batch(rows)

        return kf.FlowBuilder("files").calculate("Typed").build()

    @pytest.mark.parametrize("line", _malformed_lines(), ids=lambda v: repr(v)[:30])
    def test_each_line(self, line: Any) -> None:
        flow = self._flow()
        result, exc = _outcome(lambda: flow.run([line]))
        if exc is None:
            assert isinstance(result.output[0], Item)
        else:
            assert isinstance(exc, kf.RowConversionError), repr(exc)
            assert exc.row_index == 0
            assert len(str(exc)) <= 2000

    def test_whole_file_with_a_sink(self) -> None:
        flow = self._flow()
        lines = _malformed_lines()
        sink: list[kf.DeadLetter] = []
        result = flow.run(lines, dead_letters=sink)
        good = [r.n for r in result.output]
        # Text: 1 and 4 (the duplicate key's last value "dup" fails; json refuses a BOM in
        # str). Bytes: 1, 3 (json decodes a BOM in bytes) and 4. The binary file: 5.
        assert good == [1, 4, 1, 3, 4, 5]
        assert result.stage("Typed").dead_letters == len(lines) - len(good) == len(sink)
        dup = next(d for d in sink if d.row == '{"n": 2, "n": "dup"}')
        assert "expected an int" in dup.error
