"""Hostile rows: fuzzed and malformed input to typed stages fails only with KisFlowError."""

from __future__ import annotations

import asyncio
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
from kisflow.deadletter import JsonlSink
from kisflow.rows import RowConversionFailure, RowType
from kisflow.testing import isolated_pool
from tests.deeprows import deep_dict, deep_list

# Rows nested past the recursion limit can make the interpreter's own handling of an object
# finalised at that depth fail ("Failed to process unraisable exception"): Python at its
# limit, not kisflow, whose outcomes these tests assert.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


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


class BadRepr:
    """A row whose ``repr`` raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


EXPLOSIVE: dict[str, Callable[[], Any]] = {
    "int-5000-digits": lambda: 10**5000,
    "list-10000-deep": lambda: deep_list(10_000),
    "dict-10000-deep": lambda: deep_dict(10_000, "n"),
    "repr-raises": BadRepr,
    "json-array-10000-deep": lambda: "[" * 10_000 + "]" * 10_000,
    "json-object-10000-deep": lambda: '{"n":' * 10_000 + "1" + "}" * 10_000,
    "json-bytes-10000-deep": lambda: b"[" * 10_000 + b"]" * 10_000,
    "json-number-5000-digits": lambda: '{"n": ' + "7" * 5000 + "}",
    "record-holding-int-5000-digits": lambda: Inner(label="x", weight=10**5000),  # type: ignore[arg-type]
    "lone-surrogate": lambda: "\ud800",
}
"""Rows whose ``repr`` fails or explodes, or that nest past the recursion limit."""

HOSTILE = st.one_of(
    _json,
    st.sampled_from(sorted(EXPLOSIVE)).map(lambda kind: EXPLOSIVE[kind]()),
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


def _flow(name: str, tp: Any, *, retry_times: int = 0) -> kf.Flow:
    """A one-stage flow whose stage takes ``list[tp]`` and commits its rows."""

    def copy(flow: kf.Flow, rows: list[Any]) -> None:
        flow.commit_row_batch(rows)

    copy.__annotations__["rows"] = list[tp]
    kf.faas(name, copy)
    option = kf.FuncOption(retry_times=retry_times, return_duration=1)
    return kf.FlowBuilder("hostile").calculate(name, option=option).build()


@pytest.mark.parametrize("kind", sorted(EXPLOSIVE))
class TestExplosiveRows:
    """Each explosive row kind, through every way a row reaches a typed stage or a sink.

    None converts to ``Item``: every one is a ``RowConversionError`` naming the row (no
    ``ValueError``, ``RecursionError`` or ``RuntimeError`` from printing it), or a dead
    letter that every sink, the JSONL file included, keeps.
    """

    def _check_error(self, exc: BaseException | None, row: Any, index: int = 0) -> None:
        assert isinstance(exc, kf.RowConversionError), repr(type(exc))
        assert (exc.flow, exc.stage, exc.row_index) == ("hostile", "Copy", index)
        assert exc.row is row
        text = str(exc)
        assert text.startswith(f"flow 'hostile' stage 'Copy': row {index} cannot be converted")
        assert "; row was " in text
        assert len(text) <= 1200
        assert not isinstance(exc.__cause__, RecursionError)

    def test_run_without_a_sink(self, kind: str) -> None:
        row = EXPLOSIVE[kind]()
        flow = _flow("Copy", Item)
        _, exc = _outcome(lambda: flow.run([{"n": 1}, row]))
        self._check_error(exc, row, 1)

    def test_arun_and_stream_without_a_sink(self, kind: str) -> None:
        row = EXPLOSIVE[kind]()
        flow = _flow("Copy", Item)
        _, exc = _outcome(lambda: asyncio.run(flow.arun([row])))
        self._check_error(exc, row)
        _, exc = _outcome(lambda: list(flow.stream([row], batch_size=1, handle_sigint=False)))
        self._check_error(exc, row)

    def test_run_with_sinks(self, kind: str, tmp_path: Path) -> None:
        row = EXPLOSIVE[kind]()
        flow = _flow("Copy", Item)
        letters: list[kf.DeadLetter] = []
        result = flow.run([{"n": 1}, row], dead_letters=letters)
        assert [r.n for r in result.output] == [1]
        assert result.stage("Copy").dead_letters == 1
        (letter,) = letters
        assert (letter.row_index, letter.reason) == (1, "conversion")
        assert letter.row is row
        assert letter.error.startswith("cannot be converted to Item: ")
        assert letter.error_type in {"TypeError", "ValueError"}
        assert len(repr(letter)) < 1000

        path = tmp_path / "dead.jsonl"
        result = flow.run([row, {"n": 2}], dead_letters=path)
        assert [r.n for r in result.output] == [2]
        (written,) = JsonlSink(path).read()
        assert written == {**letter.to_json(), "row_index": 0}
        assert written["error"] == letter.error
        if isinstance(written["row"], str) and not isinstance(row, str):
            assert len(written["row"]) <= 10_000  # a bounded safe_repr of the row

    def test_dead_letter_from_a_faas(self, kind: str, tmp_path: Path) -> None:
        row = EXPLOSIVE[kind]()
        calls: list[int] = []

        @kf.faas("Reject")
        def reject(flow: kf.Flow) -> None:
            calls.append(1)
            for r in flow.input():
                flow.dead_letter(r, ValueError(r))

        option = kf.FuncOption(retry_times=2, return_duration=1)
        flow = kf.FlowBuilder("hostile").verify("Reject", option=option).build()
        _, exc = _outcome(lambda: flow.run([row]))
        assert isinstance(exc, kf.RowRejectedError), repr(type(exc))
        assert exc.row is row
        assert str(exc).startswith("flow 'hostile' stage 'Reject' rejected row ")
        assert len(str(exc)) <= 1200
        assert len(calls) == 1  # refused, not retried as a failing FaaS

        letters: list[kf.DeadLetter] = []
        path = tmp_path / "rejected.jsonl"
        for sink in (letters, path):
            result = flow.run([row], dead_letters=sink)
            assert result.stage("Reject").dead_letters == 1
        (letter,) = letters
        assert (letter.row_index, letter.reason, letter.error_type) == (0, "rejected", "ValueError")
        assert letter.row is row
        (written,) = JsonlSink(path).read()
        assert written == letter.to_json()


@pytest.mark.parametrize(
    ("kind", "shown"),
    [
        ("int-5000-digits", "(int <int of about 5001 digits>)"),
        ("list-10000-deep", "(list [[[[[[[[[...]]]]]]]]])"),
        ("repr-raises", "(BadRepr <BadRepr object: repr raised RuntimeError>)"),
    ],
)
def test_a_table_store_names_a_row_it_cannot_store(kind: str, shown: str, tmp_path: Path) -> None:
    """A row a table store refuses is a ConnectorError that shows it safely, not retried."""
    conn = kf.ConnConfig(cname="db", type="sqlite", addrs=str(tmp_path / "x.db"), key="rows")
    option = kf.FuncOption(retry_times=2, return_duration=1)
    flow = kf.FlowBuilder("store").save("Store", option=option, conn=conn).build()
    _, exc = _outcome(lambda: flow.run([EXPLOSIVE[kind]()]))
    assert isinstance(exc, kf.ConnectorError), repr(type(exc))
    assert f"cannot store row 0 {shown}: a table row must be a mapping" in str(exc)
    assert exc.attempts == 1
