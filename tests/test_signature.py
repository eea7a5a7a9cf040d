"""Tests for kisflow._signature: which FaaS forms registration accepts, and why it refuses."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Sequence
from typing import Any

import attrs
import pytest
from resources import bad_functions, future_functions

import kisflow as kf
from kisflow._signature import CallKind, Signature, read_signature
from kisflow.errors import FaaSSignatureError
from kisflow.rows import RowType


@attrs.define
class ScoreIn:
    """An attrs row type."""

    stu_id: int
    score_1: int = 0


@attrs.define
class ScoreOut:
    """An attrs output row type."""

    stu_id: int
    avg_score: float


@dataclasses.dataclass
class Point:
    """A dataclass row type."""

    x: int
    y: int


def flow_only(flow: kf.Flow) -> None:
    """Loads from a store: no rows."""


def flow_and_rows(flow: kf.Flow, rows: list[ScoreIn]) -> None:
    """The common form."""


def with_ctx(ctx: Any, flow: kf.Flow, rows: list[int]) -> None:
    """A context first."""


def ctx_unannotated(ctx, flow, rows):  # type: ignore[no-untyped-def]
    """Nothing annotated: the flow is found by its name."""


def unannotated_flow(flow, rows: list[ScoreIn]) -> None:  # type: ignore[no-untyped-def]
    """The flow found by name, rows typed."""


async def async_faas(flow: kf.Flow, rows: list[ScoreIn]) -> None:
    """An async FaaS."""


def generator(flow: kf.Flow, rows: list[ScoreIn]) -> Iterator[ScoreOut]:
    """Yields output rows."""
    for r in rows:
        yield ScoreOut(r.stu_id, float(r.score_1))


def generator_typed_generator(flow: kf.Flow, rows: list[int]) -> Generator[str, None, None]:
    """Annotated with Generator instead of Iterator."""
    for r in rows:
        yield str(r)


def generator_iterable(flow: kf.Flow, rows: list[int]) -> Iterable[float]:
    """Annotated with Iterable."""
    for r in rows:
        yield float(r)


def generator_unannotated(flow: kf.Flow, rows: list[int]):  # type: ignore[no-untyped-def]
    """A generator with no return annotation: output undeclared."""
    yield from rows


async def async_generator(flow: kf.Flow, rows: list[Point]) -> AsyncIterator[Point]:
    """An async generator."""
    for r in rows:
        yield r


def sequence_rows(flow: kf.Flow, rows: Sequence[Point]) -> None:
    """Rows as a Sequence."""


def bare_list(flow: kf.Flow, rows: list) -> None:  # type: ignore[type-arg]
    """Rows as a bare list: any row."""


def any_rows(flow: kf.Flow, rows: list[Any]) -> None:
    """Rows of Any."""


def dict_rows(flow: kf.Flow, rows: list[dict[str, int]]) -> None:
    """Rows as dicts."""


def optional_rows(flow: kf.Flow, rows: list[int] | None = None) -> None:
    """Rows with a default are not passed: kisflow calls it with the flow only."""


def keyword_only_default(flow: kf.Flow, rows: list[int], *, limit: int = 3) -> None:
    """Keyword-only with a default is fine."""


def extra_with_default(flow: kf.Flow, rows: list[int], scale: int = 2) -> None:
    """A trailing parameter with a default is fine."""


def returns_none_explicit(flow: kf.Flow) -> None:
    return None


class CallableFaaS:
    """A FaaS object: the signature is read from ``__call__``."""

    def __call__(self, flow: kf.Flow, rows: list[ScoreIn]) -> None:
        """Called per stage."""


class AsyncCallableFaaS:
    """An object whose ``__call__`` is async."""

    async def __call__(self, flow: kf.Flow, rows: list[int]) -> None:
        """Awaited per stage."""


def _partial_target(flow: kf.Flow, rows: list[int], scale: int) -> None:
    """Completed with functools.partial."""


def _decorated(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


@_decorated
def decorated(flow: kf.Flow, rows: list[ScoreIn]) -> None:
    """Wrapped with functools.wraps: the wrapped signature counts."""


class TestAcceptedForms:
    """Every accepted FaaS form is read into the right Signature."""

    @pytest.mark.parametrize(
        ("fn", "ctx", "takes_rows", "kind", "rows_type", "output_type"),
        [
            (flow_only, False, False, CallKind.PLAIN, Any, None),
            (flow_and_rows, False, True, CallKind.PLAIN, ScoreIn, None),
            (with_ctx, True, True, CallKind.PLAIN, int, None),
            (ctx_unannotated, True, True, CallKind.PLAIN, Any, None),
            (unannotated_flow, False, True, CallKind.PLAIN, ScoreIn, None),
            (async_faas, False, True, CallKind.ASYNC, ScoreIn, None),
            (generator, False, True, CallKind.GENERATOR, ScoreIn, ScoreOut),
            (generator_typed_generator, False, True, CallKind.GENERATOR, int, str),
            (generator_iterable, False, True, CallKind.GENERATOR, int, float),
            (generator_unannotated, False, True, CallKind.GENERATOR, int, None),
            (async_generator, False, True, CallKind.ASYNC_GENERATOR, Point, Point),
            (sequence_rows, False, True, CallKind.PLAIN, Point, None),
            (bare_list, False, True, CallKind.PLAIN, Any, None),
            (any_rows, False, True, CallKind.PLAIN, Any, None),
            (dict_rows, False, True, CallKind.PLAIN, dict[str, int], None),
            (optional_rows, False, False, CallKind.PLAIN, Any, None),
            (keyword_only_default, False, True, CallKind.PLAIN, int, None),
            (extra_with_default, False, True, CallKind.PLAIN, int, None),
            (returns_none_explicit, False, False, CallKind.PLAIN, Any, None),
            (decorated, False, True, CallKind.PLAIN, ScoreIn, None),
        ],
    )
    def test_form(
        self,
        fn: Any,
        ctx: bool,
        takes_rows: bool,
        kind: CallKind,
        rows_type: Any,
        output_type: Any,
    ) -> None:
        sig = read_signature(fn.__name__, fn)
        assert (sig.takes_ctx, sig.takes_rows, sig.kind) == (ctx, takes_rows, kind)
        assert sig.rows_type == rows_type
        assert sig.output_type == output_type

    def test_typed_rows_get_a_row_type(self) -> None:
        sig = read_signature("f", flow_and_rows)
        assert isinstance(sig.rows, RowType)
        assert sig.rows.type is ScoreIn
        assert sig.rows.convert([{"stu_id": 1}]) == [ScoreIn(1)]

    @pytest.mark.parametrize("fn", [flow_only, bare_list, any_rows, ctx_unannotated])
    def test_untyped_rows_have_no_row_type(self, fn: Any) -> None:
        assert read_signature("f", fn).rows is None

    def test_output_argument_declares_the_output(self) -> None:
        assert read_signature("f", flow_and_rows, output=ScoreOut).output_type is ScoreOut

    def test_output_argument_overrides_the_yield_type(self) -> None:
        assert read_signature("f", generator, output=dict).output_type is dict

    def test_callable_object(self) -> None:
        sig = read_signature("obj", CallableFaaS())
        assert (sig.takes_ctx, sig.takes_rows, sig.kind, sig.rows_type) == (
            False,
            True,
            CallKind.PLAIN,
            ScoreIn,
        )

    def test_async_callable_object(self) -> None:
        sig = read_signature("obj", AsyncCallableFaaS())
        assert (sig.kind, sig.rows_type) == (CallKind.ASYNC, int)

    def test_partial(self) -> None:
        sig = read_signature("p", functools.partial(_partial_target, scale=3))
        assert (sig.takes_rows, sig.rows_type, sig.kind) == (True, int, CallKind.PLAIN)

    def test_signature_is_frozen_value(self) -> None:
        a = read_signature("a", flow_and_rows)
        b = read_signature("b", flow_and_rows)
        assert isinstance(a, Signature)
        assert a == b
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            a.takes_ctx = True  # type: ignore[misc]


class TestStringAnnotations:
    """A module using ``from __future__ import annotations`` is resolved in its own globals."""

    def test_plain(self) -> None:
        sig = read_signature("plain", future_functions.plain)
        assert (sig.kind, sig.rows_type, sig.output_type) == (
            CallKind.PLAIN,
            future_functions.Order,
            None,
        )

    def test_sequence(self) -> None:
        assert read_signature("s", future_functions.sequence).rows_type is future_functions.Order

    def test_generator_output_from_string(self) -> None:
        sig = read_signature("g", future_functions.generator)
        assert sig.kind is CallKind.GENERATOR
        assert sig.output_type is future_functions.Total

    def test_async_generator_with_ctx(self) -> None:
        sig = read_signature("ag", future_functions.async_generator)
        assert (sig.takes_ctx, sig.kind, sig.rows_type, sig.output_type) == (
            True,
            CallKind.ASYNC_GENERATOR,
            future_functions.Order,
            future_functions.Total,
        )

    def test_registers_through_the_pool(self) -> None:
        kf.pool.faas("Plain", future_functions.plain)
        spec = kf.pool.get_faas("Plain")
        assert spec is not None
        assert spec.signature.rows_type is future_functions.Order


class TestRejectedForms:
    """Each broken FaaS raises FaaSSignatureError naming the function and the parameter."""

    @pytest.mark.parametrize("case", sorted(bad_functions.CASES))
    def test_rejected(self, case: str) -> None:
        fn, parameter = bad_functions.CASES[case]
        with pytest.raises(FaaSSignatureError) as info:
            read_signature(f"Bad_{case}", fn)
        assert info.value.function == f"Bad_{case}"
        assert info.value.parameter == parameter
        if case == "not_callable":  # no Python function to name
            assert str(info.value).startswith(f"faas 'Bad_{case}' parameter {parameter!r}: ")
        else:
            line = inspect.getsourcelines(fn)[1]
            assert str(info.value).startswith(
                f"faas 'Bad_{case}' (function {fn.__qualname__} at {bad_functions.__file__}:"
                f"{line}) parameter {parameter!r}: "
            )

    @pytest.mark.parametrize("case", sorted(bad_functions.CASES))
    def test_is_a_type_error_and_nothing_registers(self, case: str) -> None:
        fn, _ = bad_functions.CASES[case]
        with pytest.raises(TypeError):
            kf.pool.faas(case, fn)
        assert kf.pool.faas_names() == []

    @pytest.mark.parametrize(
        ("case", "words"),
        [
            ("no_flow", "has no flow parameter"),
            ("rows_not_a_list", "rows must be annotated as list[T] or Sequence[T], got int"),
            ("rows_unsupported", "row type NotARecord is not supported"),
            ("returns_value", "must return None"),
            ("generator_wrong_return", "must be annotated as returning Iterator[T]"),
            ("async_generator_sync_iterator", "AsyncIterator[T]"),
            ("star_args", "*args/**kwargs are not supported"),
            ("keyword_only", "keyword-only parameters need a default"),
            ("unresolvable_rows", "annotations cannot be resolved"),
            ("not_callable", "is not callable (got int)"),
        ],
    )
    def test_messages_say_why(self, case: str, words: str) -> None:
        fn, _ = bad_functions.CASES[case]
        with pytest.raises(FaaSSignatureError) as info:
            read_signature(case, fn)
        assert words in str(info.value)

    def test_names_the_registered_name_and_the_python_function(self) -> None:
        fn = bad_functions.returns_value
        with pytest.raises(FaaSSignatureError) as info:
            kf.faas("Totals", fn)
        err = info.value
        assert err.function == "Totals"
        assert err.qualname == "returns_value"
        assert err.file == bad_functions.__file__
        assert err.line == inspect.getsourcelines(fn)[1]
        assert err.reason.startswith("must return None")
        where = f"(function returns_value at {bad_functions.__file__}:{err.line})"
        assert str(err).startswith(f"faas 'Totals' {where} parameter 'return': must return None")

    def test_a_nested_decorated_function_is_found_at_its_decorator(self) -> None:
        first = inspect.currentframe().f_lineno + 3  # type: ignore[union-attr]  # the @ line
        with pytest.raises(FaaSSignatureError) as info:

            @kf.faas("Nested")
            def nested(rows: list[int]) -> None:
                """No flow parameter."""

        err = info.value
        assert err.qualname == (
            "TestRejectedForms.test_a_nested_decorated_function_is_found_at_its_decorator"
            ".<locals>.nested"
        )
        assert (err.file, err.line) == (__file__, first)
        assert f"{__file__}:{first})" in str(err)

    def test_a_callable_object_a_partial_and_a_wrapper(self) -> None:
        class NoFlow:
            def __call__(self, rows: list[int]) -> None:
                """No flow parameter."""

        def wraps(fn: Any) -> Any:
            @functools.wraps(fn)
            def wrapper(*args: Any) -> Any:
                return fn(*args)

            return wrapper

        cases = [
            (NoFlow(), NoFlow.__call__),
            (functools.partial(bad_functions.no_flow), bad_functions.no_flow),
            (wraps(bad_functions.no_flow), bad_functions.no_flow),
        ]
        for fn, defined in cases:
            with pytest.raises(FaaSSignatureError) as info:
                read_signature("Obj", fn)
            assert info.value.qualname == defined.__qualname__
            assert info.value.file == defined.__code__.co_filename
            assert info.value.line == defined.__code__.co_firstlineno

    def test_a_builtin_is_named_without_a_file(self) -> None:
        with pytest.raises(FaaSSignatureError) as info:
            read_signature("Len", len)
        assert (info.value.qualname, info.value.file, info.value.line) == ("len", None, None)
        assert str(info.value).startswith("faas 'Len' (function len) parameter")

    def test_unresolvable_names_the_missing_type(self) -> None:
        with pytest.raises(FaaSSignatureError, match="Missing"):
            read_signature("u", bad_functions.unresolvable_rows)

    def test_bad_output_argument(self) -> None:
        with pytest.raises(FaaSSignatureError) as info:
            read_signature("f", flow_and_rows, output=bad_functions.NotARecord)
        assert info.value.parameter == "output"
        assert "output type NotARecord is not a supported row type" in str(info.value)

    def test_local_class_in_string_annotation_is_unresolvable(self) -> None:
        def local(flow: kf.Flow, rows: list[LocalRow]) -> None:
            """LocalRow exists only after this def, and only in the test's locals."""

        @attrs.define
        class LocalRow:
            x: int

        with pytest.raises(FaaSSignatureError, match="define row types at module level") as info:
            read_signature("local", local)
        assert info.value.parameter == "rows"
