"""Tests for kisflow._pool and kisflow.pool: the thread-safe routers and the module API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from loguru import logger
from resources.threads import run_threads

import kisflow as kf
from kisflow import _pool
from kisflow._pool import CaaSSpec, FaaSSpec, Pool
from kisflow.errors import DuplicateRegistrationError, FaaSSignatureError, KisFlowError, PoolError
from kisflow.modes import Mode
from kisflow.testing import isolated_pool


@attrs.define
class Row:
    """A row type for registered FaaS."""

    n: int


def double(flow: kf.Flow, rows: list[int]) -> None:
    """A FaaS used throughout."""
    flow.commit_row_batch(r * 2 for r in rows)


def other(flow: kf.Flow) -> None:
    """A second FaaS."""


def init_conn(conn: kf.Connector) -> None:
    """A connector init callback."""


def caas_fn(conn: kf.Connector, fn: kf.Stage, flow: kf.Flow, args: Any) -> Any:
    """A CaaS without a context."""
    return args


def caas_ctx(ctx: Any, conn: kf.Connector, fn: kf.Stage, flow: kf.Flow, args: Any) -> Any:
    """A CaaS with a leading context."""
    return args


class TestFaaSRegistration:
    """FaaS register by name, as a call or a decorator, and the signature is checked then."""

    def test_call_form_returns_the_function(self) -> None:
        assert kf.pool.faas("Double", double) is double
        spec = kf.pool.get_faas("Double")
        assert isinstance(spec, FaaSSpec)
        assert (spec.name, spec.fn) == ("Double", double)
        assert spec.signature.rows_type is int

    def test_decorator_form(self) -> None:
        @kf.pool.faas("Deco", output=Row)
        def deco(flow: kf.Flow, rows: list[Row]) -> None:
            """Registered by decorator."""

        spec = kf.pool.get_faas("Deco")
        assert spec is not None
        assert spec.fn is deco
        assert spec.signature.output_type is Row

    def test_top_level_faas_is_the_pool_function(self) -> None:
        assert kf.faas is kf.pool.faas

        @kf.faas("Top")
        def top(flow: kf.Flow) -> None:
            """Registered with kisflow.faas."""

        assert kf.pool.faas_names() == ["Top"]

    def test_lands_in_the_current_pool(self, pool: Pool) -> None:
        kf.pool.faas("Double", double)
        assert pool.faas_names() == ["Double"]
        assert _pool.current() is pool

    def test_duplicate_is_an_error(self) -> None:
        kf.pool.faas("Double", double)
        with pytest.raises(DuplicateRegistrationError) as info:
            kf.pool.faas("Double", other)
        assert (info.value.kind, info.value.name) == ("faas", "Double")
        assert "faas 'Double' is already registered; pass replace=True" in str(info.value)
        spec = kf.pool.get_faas("Double")
        assert spec is not None
        assert spec.fn is double

    def test_duplicate_is_a_value_error_and_pool_error(self) -> None:
        kf.pool.faas("Double", double)
        for cls in (ValueError, PoolError, KisFlowError):
            with pytest.raises(cls):
                kf.pool.faas("Double", double)

    def test_replace(self) -> None:
        kf.pool.faas("Double", double)
        kf.pool.faas("Double", other, replace=True)
        spec = kf.pool.get_faas("Double")
        assert spec is not None
        assert spec.fn is other

    def test_bad_signature_registers_nothing(self, pool: Pool) -> None:
        before = pool.version

        def bad(rows: list[int]) -> None:
            """No flow."""

        with pytest.raises(FaaSSignatureError):
            kf.pool.faas("Bad", bad)
        assert kf.pool.get_faas("Bad") is None
        assert pool.version == before

    def test_bad_signature_keeps_the_old_one_even_with_replace(self) -> None:
        kf.pool.faas("Double", double)
        with pytest.raises(FaaSSignatureError):
            kf.pool.faas("Double", 42, replace=True)  # type: ignore[call-overload]
        spec = kf.pool.get_faas("Double")
        assert spec is not None
        assert spec.fn is double

    def test_version_grows_on_each_registration(self, pool: Pool) -> None:
        v0 = pool.version
        kf.pool.faas("A", double)
        v1 = pool.version
        kf.pool.faas("B", double)
        v2 = pool.version
        kf.pool.faas("A", other, replace=True)
        v3 = pool.version
        assert v0 < v1 < v2 < v3

    def test_lookups(self) -> None:
        assert kf.pool.get_faas("Nope") is None
        assert kf.pool.faas_names() == []
        kf.pool.faas("b", double)
        kf.pool.faas("a", other)
        kf.pool.faas("C", other)
        assert kf.pool.faas_names() == ["C", "a", "b"]

    def test_faas_names_is_a_copy(self) -> None:
        kf.pool.faas("a", other)
        names = kf.pool.faas_names()
        names.append("z")
        assert kf.pool.faas_names() == ["a"]


class TestFlows:
    """Flows register by name; lookups return None or copies; duplicates are errors."""

    def test_add_and_get(self) -> None:
        flow = kf.Flow("F1")
        kf.pool.add_flow("F1", flow)
        assert kf.pool.get_flow("F1") is flow
        assert kf.pool.get_flow("F2") is None

    def test_get_flows_returns_a_copy(self) -> None:
        f1, f2 = kf.Flow("F1"), kf.Flow("F2")
        kf.pool.add_flow("F1", f1)
        kf.pool.add_flow("F2", f2)
        flows = kf.pool.get_flows()
        assert flows == {"F1": f1, "F2": f2}
        flows.clear()
        flows["F3"] = f1
        assert kf.pool.get_flows() == {"F1": f1, "F2": f2}
        assert kf.pool.get_flows() is not kf.pool.get_flows()

    def test_duplicate(self) -> None:
        first = kf.Flow("F1")
        kf.pool.add_flow("F1", first)
        with pytest.raises(DuplicateRegistrationError) as info:
            kf.pool.add_flow("F1", kf.Flow("F1"))
        assert (info.value.kind, info.value.name) == ("flow", "F1")
        assert kf.pool.get_flow("F1") is first

    def test_replace(self) -> None:
        kf.pool.add_flow("F1", kf.Flow("F1"))
        second = kf.Flow("F1")
        kf.pool.add_flow("F1", second, replace=True)
        assert kf.pool.get_flow("F1") is second


class TestConnectorRouters:
    """Connector init callbacks and CaaS register with arity checks and mode parsing."""

    def test_caas_init_call_and_decorator(self) -> None:
        assert kf.pool.caas_init("c1", init_conn) is init_conn

        @kf.caas_init("c2")
        def init2(conn: kf.Connector) -> None:
            """Registered by decorator."""

        assert kf.pool.get_caas_init("c1") is init_conn
        assert kf.pool.get_caas_init("c2") is init2
        assert kf.pool.get_caas_init("c3") is None

    def test_caas_init_duplicate_and_replace(self) -> None:
        kf.pool.caas_init("c1", init_conn)
        with pytest.raises(DuplicateRegistrationError) as info:
            kf.pool.caas_init("c1", init_conn)
        assert (info.value.kind, info.value.name) == ("connector init", "c1")

        def init_b(conn: kf.Connector) -> None:
            """A replacement."""

        kf.pool.caas_init("c1", init_b, replace=True)
        assert kf.pool.get_caas_init("c1") is init_b

    @pytest.mark.parametrize(
        "fn",
        [lambda: None, lambda ctx, conn: None, lambda a, b, c: None, "not callable"],
        ids=["none", "ctx-and-conn", "three", "not-callable"],
    )
    def test_caas_init_arity(self, fn: Any) -> None:
        with pytest.raises(FaaSSignatureError) as info:
            kf.pool.caas_init("c1", fn)
        assert info.value.function == "caas_init c1"
        assert kf.pool.get_caas_init("c1") is None

    def test_caas_call_and_decorator(self) -> None:
        assert kf.pool.caas("c1", "Save1", kf.Mode.SAVE, caas_fn) is caas_fn

        @kf.caas("c1", "Load1", "Load")
        def load(conn: Any, fn: Any, flow: Any, args: Any) -> Any:
            """Registered by decorator with a mode word."""

        spec = kf.pool.get_caas("c1", "Save1", Mode.SAVE)
        assert isinstance(spec, CaaSSpec)
        assert (spec.cname, spec.fname, spec.mode, spec.fn, spec.takes_ctx) == (
            "c1",
            "Save1",
            Mode.SAVE,
            caas_fn,
            False,
        )
        load_spec = kf.pool.get_caas("c1", "Load1", "L")
        assert load_spec is not None
        assert load_spec.fn is load

    @pytest.mark.parametrize("mode", ["S", "s", "save", "SAVE", Mode.SAVE])
    def test_caas_mode_letters_and_words(self, mode: Any) -> None:
        kf.pool.caas("c1", "f", mode, caas_fn)
        spec = kf.pool.get_caas("c1", "f", Mode.SAVE)
        assert spec is not None
        assert spec.mode is Mode.SAVE

    def test_caas_bad_mode(self) -> None:
        with pytest.raises(kf.ConfigError, match="unknown fmode 'Write'"):
            kf.pool.caas("c1", "f", "Write", caas_fn)

    def test_caas_keyed_by_connector_function_and_mode(self) -> None:
        def a(conn: Any, fn: Any, flow: Any, args: Any) -> str:
            return "a"

        def b(conn: Any, fn: Any, flow: Any, args: Any) -> str:
            return "b"

        kf.pool.caas("c1", "f", "S", a)
        kf.pool.caas("c1", "f", "L", b)
        kf.pool.caas("c2", "f", "S", b)
        assert kf.pool.get_caas("c1", "f", "S").fn is a  # type: ignore[union-attr]
        assert kf.pool.get_caas("c1", "f", "L").fn is b  # type: ignore[union-attr]
        assert kf.pool.get_caas("c2", "f", "S").fn is b  # type: ignore[union-attr]
        assert kf.pool.get_caas("c2", "f", "L") is None
        assert kf.pool.get_caas("c1", "g", "S") is None

    def test_caas_duplicate_and_replace(self) -> None:
        kf.pool.caas("c1", "f", "S", caas_fn)
        with pytest.raises(DuplicateRegistrationError) as info:
            kf.pool.caas("c1", "f", "Save", caas_ctx)
        assert (info.value.kind, info.value.name) == ("caas", "c1/f/Save")
        assert kf.pool.get_caas("c1", "f", "S").fn is caas_fn  # type: ignore[union-attr]
        kf.pool.caas("c1", "f", "S", caas_ctx, replace=True)
        assert kf.pool.get_caas("c1", "f", "S").fn is caas_ctx  # type: ignore[union-attr]

    def test_caas_leading_ctx_detected(self) -> None:
        spec = _pool.current().caas("c1", "f", "S", caas_ctx)
        assert spec.takes_ctx is True
        assert _pool.current().caas("c1", "g", "S", caas_fn).takes_ctx is False

    @pytest.mark.parametrize(
        "fn",
        [lambda conn, fn, flow: None, lambda a, b, c, d, e, f: None, lambda: None, 3],
        ids=["three", "six", "none", "not-callable"],
    )
    def test_caas_wrong_arity(self, fn: Any) -> None:
        with pytest.raises(FaaSSignatureError) as info:
            kf.pool.caas("c1", "f", "S", fn)
        assert info.value.function == "caas c1/f"
        assert kf.pool.get_caas("c1", "f", "S") is None

    def test_caas_arity_message(self) -> None:
        with pytest.raises(FaaSSignatureError, match=r"takes 3 positional parameters; expected 4"):
            kf.pool.caas("c1", "f", "S", lambda conn, fn, flow: None)


class TestReset:
    """``reset`` forgets every registration in the current pool only."""

    def test_reset_clears_all_routers(self, pool: Pool) -> None:
        kf.pool.faas("Double", double)
        kf.pool.add_flow("F", kf.Flow("F"))
        kf.pool.caas_init("c1", init_conn)
        kf.pool.caas("c1", "f", "S", caas_fn)
        before = pool.version
        kf.pool.reset()
        assert kf.pool.faas_names() == []
        assert kf.pool.get_flows() == {}
        assert kf.pool.get_caas_init("c1") is None
        assert kf.pool.get_caas("c1", "f", "S") is None
        assert pool.version > before
        # and names are free again
        kf.pool.faas("Double", double)
        assert kf.pool.faas_names() == ["Double"]

    def test_reset_leaves_other_pools(self) -> None:
        outer = _pool.current()
        kf.pool.faas("Outer", double)
        with isolated_pool():
            kf.pool.faas("Inner", double)
            kf.pool.reset()
            assert kf.pool.faas_names() == []
        assert outer.faas_names() == ["Outer"]


class TestIsolation:
    """``isolated_pool`` and ``use`` swap the current pool and always restore it."""

    def test_isolated_pool_is_fresh_and_restored(self) -> None:
        outer = _pool.current()
        kf.pool.faas("Outer", double)
        with isolated_pool() as inner:
            assert _pool.current() is inner
            assert inner is not outer
            assert kf.pool.faas_names() == []
            kf.pool.faas("Inner", double)
        assert _pool.current() is outer
        assert kf.pool.faas_names() == ["Outer"]
        assert inner.faas_names() == ["Inner"]

    def test_use_given_pool(self) -> None:
        outer = _pool.current()
        mine = Pool()
        with kf.pool.use(mine) as got:
            assert got is mine
            assert kf.pool.current() is mine
            kf.pool.faas("X", double)
        assert kf.pool.current() is outer
        assert mine.faas_names() == ["X"]
        assert outer.faas_names() == []

    def test_restored_after_an_exception(self) -> None:
        outer = _pool.current()
        mine = Pool()

        def fail_inside(manager: Any) -> None:
            with manager:
                kf.pool.faas("X", double)
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            fail_inside(_pool.use(mine))
        assert _pool.current() is outer
        assert mine.faas_names() == ["X"]
        with pytest.raises(RuntimeError, match="boom"):
            fail_inside(isolated_pool())
        assert _pool.current() is outer
        assert outer.faas_names() == []

    def test_nested(self) -> None:
        outer = _pool.current()
        a, b = Pool(), Pool()
        with _pool.use(a):
            with _pool.use(b):
                assert _pool.current() is b
            assert _pool.current() is a
        assert _pool.current() is outer

    def test_flow_with_own_pool_ignores_current(self) -> None:
        own = Pool()
        own.faas("Double", double)
        flow = kf.FlowBuilder("F", pool=own).calculate("Double").build()
        assert kf.pool.get_faas("Double") is None
        assert flow.run([1, 2]).output == [2, 4]


class TestThreadSafety:
    """Concurrent registrations lose nothing, and a contested name goes to exactly one."""

    def test_distinct_names_from_eight_threads(self, pool: Pool) -> None:
        per_thread = 50

        def register(i: int) -> None:
            for j in range(per_thread):
                kf.pool.faas(f"F{i}_{j}", double)
                kf.pool.add_flow(f"Flow{i}_{j}", kf.Flow(f"Flow{i}_{j}"))
                kf.pool.caas("c", f"F{i}_{j}", "S", caas_fn)

        before = pool.version
        errors = run_threads(8, register)
        assert errors == []
        expected = sorted(f"F{i}_{j}" for i in range(8) for j in range(per_thread))
        assert kf.pool.faas_names() == expected
        assert len(kf.pool.get_flows()) == 8 * per_thread
        assert all(kf.pool.get_caas("c", name, "S") is not None for name in expected)
        assert pool.version == before + 8 * per_thread

    @pytest.mark.parametrize("router", ["faas", "flow", "caas_init", "caas"])
    def test_same_name_from_eight_threads_one_wins(self, router: str) -> None:
        fns = [
            (lambda flow, rows: None) if router == "faas" else (lambda conn: None) for _ in range(8)
        ]
        flows = [kf.Flow("Same") for _ in range(8)]

        def register(i: int) -> None:
            if router == "faas":
                kf.pool.faas("Same", fns[i])
            elif router == "flow":
                kf.pool.add_flow("Same", flows[i])
            elif router == "caas_init":
                kf.pool.caas_init("Same", fns[i])
            else:
                kf.pool.caas("Same", "f", "S", caas_ctx if i % 2 else caas_fn)

        errors = run_threads(8, register)
        assert len(errors) == 7
        assert all(isinstance(e, DuplicateRegistrationError) for e in errors)
        if router == "faas":
            spec = kf.pool.get_faas("Same")
            assert spec is not None
            assert spec.fn in fns
        elif router == "flow":
            assert kf.pool.get_flow("Same") in flows
        elif router == "caas_init":
            assert kf.pool.get_caas_init("Same") in fns
        else:
            assert kf.pool.get_caas("Same", "f", "S") is not None


class TestNames:
    """Registration names must be non-empty strings, since configs can only name those."""

    @pytest.mark.parametrize("name", ["", None, 3])
    def test_faas_name(self, name: Any) -> None:
        with pytest.raises(kf.ConfigError, match="fname must be a non-empty string") as info:
            kf.pool.faas(name, double)
        assert info.value.key == "fname"
        assert kf.pool.faas_names() == []

    def test_flow_name(self) -> None:
        with pytest.raises(kf.ConfigError) as info:
            kf.pool.add_flow("", kf.Flow("F"))
        assert info.value.key == "flow_name"
        assert kf.pool.get_flows() == {}

    def test_connector_names(self) -> None:
        with pytest.raises(kf.ConfigError) as info:
            kf.pool.caas_init("", init_conn)
        assert info.value.key == "cname"
        with pytest.raises(kf.ConfigError) as info:
            kf.pool.caas("c", "", "S", caas_fn)
        assert info.value.key == "fname"

    def test_pool_get_caas_parses_the_mode(self, pool: Pool) -> None:
        pool.caas("c", "f", "Save", caas_fn)
        assert pool.get_caas("c", "f", "S") is pool.get_caas("c", "f", Mode.SAVE)
        assert pool.get_caas("c", "f", "save") is not None
        with pytest.raises(kf.ConfigError):
            pool.get_caas("c", "f", "Write")


@pytest.fixture
def debug_log() -> Iterator[list[tuple[str, str]]]:
    """kisflow's log records of one test as (level, message); logging off again after."""
    out: list[tuple[str, str]] = []
    logger.enable("kisflow")
    sink = logger.add(
        lambda m: out.append((m.record["level"].name, m.record["message"])), level="TRACE"
    )
    try:
        yield out
    finally:
        logger.remove(sink)
        logger.disable("kisflow")


class TestRegistrationIsLogged:
    """Every registration is logged once at DEBUG, as ``faas`` is; a refused one is not."""

    def test_faas(self, debug_log: list[tuple[str, str]]) -> None:
        kf.pool.faas("Double", double)
        assert debug_log == [("DEBUG", "registered faas 'Double'")]

    def test_add_flow(self, debug_log: list[tuple[str, str]]) -> None:
        flow = kf.Flow("F")
        kf.pool.add_flow("F", flow)
        with pytest.raises(DuplicateRegistrationError):
            kf.pool.add_flow("F", flow)
        kf.pool.add_flow("F", flow, replace=True)
        assert debug_log == [("DEBUG", "registered flow 'F'")] * 2

    def test_caas_init(self, debug_log: list[tuple[str, str]]) -> None:
        kf.pool.caas_init("c1", init_conn)
        with pytest.raises(DuplicateRegistrationError):
            kf.pool.caas_init("c1", init_conn)
        assert debug_log == [("DEBUG", "registered caas_init 'c1'")]

    def test_caas(self, debug_log: list[tuple[str, str]]) -> None:
        kf.pool.caas("c1", "Save1", "S", caas_fn)
        kf.pool.caas("c1", "Load1", kf.Mode.LOAD, caas_fn)
        with pytest.raises(DuplicateRegistrationError):
            kf.pool.caas("c1", "Save1", "Save", caas_fn)
        assert debug_log == [
            ("DEBUG", "registered caas 'c1'/'Save1'/Save"),
            ("DEBUG", "registered caas 'c1'/'Load1'/Load"),
        ]
