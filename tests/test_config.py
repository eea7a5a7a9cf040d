"""Tests for kisflow.config: KisFlow's configuration records as frozen attrs classes."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kisflow as kf
from kisflow.config import (
    UNNAMED_SOURCE,
    ConnConfig,
    FlowConfig,
    FlowFunctionParam,
    FuncConfig,
    FuncOption,
    GlobalConfig,
    Source,
)
from kisflow.errors import ConfigError
from kisflow.modes import Mode

no_deadline = settings(deadline=None)
"""Hypothesis without its per-example deadline: a loaded CI machine is slow, not wrong."""


class TestSource:
    """``Source`` defaults to KisFlow's unnamed source and keeps ``must`` as a tuple."""

    def test_defaults(self) -> None:
        assert Source() == Source(name="unNamedSource", must=())
        assert UNNAMED_SOURCE == "unNamedSource"

    def test_must_list_becomes_tuple(self) -> None:
        src = Source(name="TiktokOrder", must=["order_id", "user_id"])
        assert src.must == ("order_id", "user_id")

    def test_must_none_is_empty(self) -> None:
        assert Source(must=None).must == ()

    @pytest.mark.parametrize("must", ["order_id", b"order_id", 3, [1, 2], ["a", None]])
    def test_must_must_be_a_list_of_names(self, must: Any) -> None:
        with pytest.raises(ConfigError, match="must: expected a list of names") as info:
            Source(must=must)
        assert info.value.key == "must"

    @pytest.mark.parametrize("name", [None, 1, ["x"]])
    def test_name_must_be_str(self, name: Any) -> None:
        with pytest.raises(ConfigError, match=r"Source\.name must be str") as info:
            Source(name=name)
        assert info.value.key == "name"


class TestFuncOption:
    """``FuncOption`` has KisFlow's zero defaults and checks types and signs."""

    def test_defaults(self) -> None:
        opt = FuncOption()
        assert (opt.cname, opt.retry_times, opt.return_duration, opt.default_params) == (
            "",
            0,
            0,
            {},
        )

    def test_null_params_become_empty_dict(self) -> None:
        assert FuncOption(default_params=None).default_params == {}

    def test_params_are_copied(self) -> None:
        params = {"default1": "v1"}
        opt = FuncOption(default_params=params)
        params["default1"] = "changed"
        assert opt.default_params == {"default1": "v1"}

    def test_param_keys_become_strings(self) -> None:
        assert FuncOption(default_params={1: "a"}).default_params == {"1": "a"}

    @pytest.mark.parametrize("field", ["retry_times", "return_duration"])
    def test_negative_is_rejected(self, field: str) -> None:
        with pytest.raises(ConfigError, match=rf"FuncOption\.{field} must be >= 0, got -1") as info:
            FuncOption(**{field: -1})
        assert info.value.key == field

    @pytest.mark.parametrize("value", ["3", 1.5, True, None])
    def test_retry_times_must_be_int_not_bool(self, value: Any) -> None:
        with pytest.raises(ConfigError, match=r"FuncOption\.retry_times must be int") as info:
            FuncOption(retry_times=value)
        assert info.value.key == "retry_times"

    def test_cname_must_be_str(self) -> None:
        with pytest.raises(ConfigError) as info:
            FuncOption(cname=5)
        assert info.value.key == "cname"

    @pytest.mark.parametrize("params", [[("a", 1)], "a=1", 7])
    def test_params_must_be_a_mapping(self, params: Any) -> None:
        with pytest.raises(ConfigError, match="params must be a mapping") as info:
            FuncOption(default_params=params)
        assert info.value.key == "params"

    def test_zero_is_allowed(self) -> None:
        assert FuncOption(retry_times=0, return_duration=0).retry_times == 0


class TestConnConfig:
    """``ConnConfig`` needs a name; lists and params are normalised."""

    def test_defaults(self) -> None:
        conn = ConnConfig(cname="ConnName1")
        assert conn == ConnConfig(
            cname="ConnName1", addrs="", type="", key="", params={}, load=(), save=()
        )

    def test_kisflow_yaml_fields(self) -> None:
        conn = ConnConfig(
            cname="ConnName1",
            addrs="127.0.0.1:9988,127.0.0.1:9999",
            type="redis",
            key="redis-key",
            params=None,
            load=None,
            save=["funcName2"],
        )
        assert conn.params == {}
        assert conn.load == ()
        assert conn.save == ("funcName2",)

    def test_empty_name_rejected(self) -> None:
        with pytest.raises(ConfigError, match=r"ConnConfig\.cname must not be empty") as info:
            ConnConfig(cname="")
        assert info.value.key == "cname"

    @pytest.mark.parametrize("field", ["load", "save"])
    def test_function_lists_checked(self, field: str) -> None:
        with pytest.raises(ConfigError) as info:
            ConnConfig(cname="c", **{field: "funcName2"})
        assert info.value.key == field

    def test_type_checked(self) -> None:
        with pytest.raises(ConfigError) as info:
            ConnConfig(cname="c", type=1)
        assert info.value.key == "type"


class TestFuncConfig:
    """``FuncConfig`` parses modes, converts YAML mappings and binds connectors."""

    def test_defaults_unnamed_source_and_empty_option(self) -> None:
        conf = FuncConfig(fname="AvgStuScore", fmode="Calculate")
        assert conf.fmode is Mode.CALCULATE
        assert conf.source == Source(name="unNamedSource")
        assert conf.option == FuncOption()
        assert conf.conn is None

    def test_missing_source_from_yaml_is_unnamed(self) -> None:
        conf = FuncConfig(fname="f", fmode="V", source=None, option=None)
        assert conf.source.name == "unNamedSource"
        assert conf.option.default_params == {}

    def test_mode_letters_and_enum(self) -> None:
        assert FuncConfig(fname="f", fmode="s").fmode is Mode.SAVE
        assert FuncConfig(fname="f", fmode=Mode.LOAD).fmode is Mode.LOAD

    def test_dicts_become_source_and_option(self) -> None:
        conf = FuncConfig(
            fname="funcName1",
            fmode="Verify",
            source={"name": "TiktokOrder", "must": ["order_id", "user_id"]},
            option={"default_params": {"default1": "funcName1_param1"}, "retry_times": 2},
        )
        assert conf.source == Source(name="TiktokOrder", must=("order_id", "user_id"))
        assert conf.option == FuncOption(
            retry_times=2, default_params={"default1": "funcName1_param1"}
        )

    def test_null_default_params_from_yaml(self) -> None:
        conf = FuncConfig(fname="f", fmode="C", option={"default_params": None})
        assert conf.option.default_params == {}

    def test_bad_mode(self) -> None:
        with pytest.raises(ConfigError, match="unknown fmode 'Compute'") as info:
            FuncConfig(fname="f", fmode="Compute")
        assert info.value.key == "fmode"

    @pytest.mark.parametrize("fname", ["", None, 3])
    def test_bad_name(self, fname: Any) -> None:
        with pytest.raises(ConfigError) as info:
            FuncConfig(fname=fname, fmode="C")
        assert info.value.key == "fname"

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("source", 123, "source must be a Source or a mapping, got int 123"),
            ("source", ["a"], "source must be a Source or a mapping"),
            ("option", "x", "option must be a FuncOption or a mapping, got str 'x'"),
            ("source", {"nme": "x"}, r"source has unknown keys \['nme'\]"),
            ("option", {"retry": 1}, r"option has unknown keys \['retry'\]"),
        ],
    )
    def test_wrong_source_or_option(self, field: str, value: Any, message: str) -> None:
        with pytest.raises(ConfigError, match=message) as info:
            FuncConfig(fname="f", fmode="C", **{field: value})
        assert info.value.key == field

    def test_nested_errors_name_the_inner_key(self) -> None:
        with pytest.raises(ConfigError) as info:
            FuncConfig(fname="f", fmode="C", option={"retry_times": -2})
        assert info.value.key == "retry_times"

    def test_conn_must_be_conn_config(self) -> None:
        with pytest.raises(ConfigError, match=r"FuncConfig\.conn must be ConnConfig") as info:
            FuncConfig(fname="f", fmode="S", conn=5)
        assert info.value.key == "conn"

    def test_conn_name_must_match_option(self) -> None:
        with pytest.raises(ConfigError, match="names connector 'A' but is bound to 'B'") as info:
            FuncConfig(
                fname="f", fmode="S", option=FuncOption(cname="A"), conn=ConnConfig(cname="B")
            )
        assert info.value.key == "option.cname"

    def test_with_connector_returns_bound_copy(self) -> None:
        conf = FuncConfig(
            fname="funcName2",
            fmode="Save",
            option=FuncOption(retry_times=3, default_params={"a": 1}),
        )
        conn = ConnConfig(cname="ConnName1", type="redis")
        bound = conf.with_connector(conn)
        assert bound.conn is conn
        assert bound.option.cname == "ConnName1"
        assert bound.option.retry_times == 3
        assert bound.option.default_params == {"a": 1}
        assert (bound.fname, bound.fmode) == ("funcName2", Mode.SAVE)
        # the original is untouched
        assert conf.conn is None
        assert conf.option.cname == ""
        assert bound != conf

    def test_with_connector_rebinds(self) -> None:
        first = FuncConfig(fname="f", fmode="S").with_connector(ConnConfig(cname="A"))
        second = first.with_connector(ConnConfig(cname="B"))
        assert (second.option.cname, second.conn) == ("B", ConnConfig(cname="B"))

    def test_exported_at_top_level(self) -> None:
        assert kf.FuncConfig is FuncConfig
        assert kf.FuncOption is FuncOption
        assert kf.Source is Source


class TestFlowConfig:
    """``FlowConfig`` has KisFlow's ``status`` switch and a list of function params."""

    def test_defaults(self) -> None:
        flow = FlowConfig(flow_name="flowName1")
        assert (flow.status, flow.flows, flow.enabled) == (1, (), True)

    def test_disabled(self) -> None:
        assert FlowConfig(flow_name="f", status=0).enabled is False

    @pytest.mark.parametrize("status", [2, -1])
    def test_bad_status(self, status: int) -> None:
        with pytest.raises(ConfigError, match=r"must be 1 \(enabled\) or 0 \(disabled\)") as info:
            FlowConfig(flow_name="f", status=status)
        assert info.value.key == "status"

    @pytest.mark.parametrize("status", [True, "1", 1.0])
    def test_status_must_be_int(self, status: Any) -> None:
        with pytest.raises(ConfigError, match=r"FlowConfig\.status must be int") as info:
            FlowConfig(flow_name="f", status=status)
        assert info.value.key == "status"

    def test_flows_from_yaml_dicts(self) -> None:
        flow = FlowConfig(
            flow_name="flowName1",
            flows=[
                {"fname": "funcName1", "params": {"myKey1": "flowValue1-1"}},
                {"fname": "funcName2", "params": None},
                FlowFunctionParam(fname="funcName3"),
            ],
        )
        assert flow.flows == (
            FlowFunctionParam(fname="funcName1", params={"myKey1": "flowValue1-1"}),
            FlowFunctionParam(fname="funcName2", params={}),
            FlowFunctionParam(fname="funcName3", params={}),
        )

    def test_flows_none_is_empty(self) -> None:
        assert FlowConfig(flow_name="f", flows=None).flows == ()

    @pytest.mark.parametrize(
        ("flows", "message"),
        [
            ("funcName1", "flows must be a list"),
            (5, "flows must be a list"),
            (["funcName1"], "each entry of flows must be a mapping"),
            ([{"fname": "a", "x": 1}], r"flows has unknown keys \['x'\]"),
            ([{"params": {}}], "flows is incomplete"),
        ],
    )
    def test_bad_flows(self, flows: Any, message: str) -> None:
        with pytest.raises(ConfigError, match=message) as info:
            FlowConfig(flow_name="f", flows=flows)
        assert info.value.key == "flows"

    def test_empty_flow_name(self) -> None:
        with pytest.raises(ConfigError) as info:
            FlowConfig(flow_name="")
        assert info.value.key == "flow_name"

    def test_function_param_needs_a_name(self) -> None:
        with pytest.raises(ConfigError) as info:
            FlowFunctionParam(fname="")
        assert info.value.key == "fname"


class TestGlobalConfig:
    """``GlobalConfig`` holds the Prometheus switches, booleans only."""

    def test_defaults(self) -> None:
        assert GlobalConfig() == GlobalConfig(
            prometheus_enable=False, prometheus_listen=False, prometheus_serve=""
        )

    def test_values(self) -> None:
        conf = GlobalConfig(
            prometheus_enable=True, prometheus_listen=True, prometheus_serve="127.0.0.1:20004"
        )
        assert conf.prometheus_serve == "127.0.0.1:20004"

    @pytest.mark.parametrize("value", [1, "true", None])
    def test_switches_must_be_bool(self, value: Any) -> None:
        with pytest.raises(ConfigError, match="must be bool") as info:
            GlobalConfig(prometheus_enable=value)
        assert info.value.key == "prometheus_enable"


class TestEqualityAndImmutability:
    """Configs compare by value and cannot be changed after construction."""

    def test_equal_by_value(self) -> None:
        a = FuncConfig(fname="f", fmode="C", source={"name": "s", "must": ["x"]})
        b = FuncConfig(fname="f", fmode=Mode.CALCULATE, source=Source(name="s", must=("x",)))
        assert a == b
        assert a != attrs.evolve(b, fname="g")
        assert FlowConfig(flow_name="f", flows=[{"fname": "a"}]) == FlowConfig(
            flow_name="f", flows=(FlowFunctionParam(fname="a"),)
        )

    @pytest.mark.parametrize(
        ("obj", "field", "value"),
        [
            (Source(), "name", "x"),
            (FuncOption(), "retry_times", 3),
            (ConnConfig(cname="c"), "addrs", "127.0.0.1"),
            (FuncConfig(fname="f", fmode="C"), "fmode", Mode.SAVE),
            (FlowConfig(flow_name="f"), "status", 0),
            (FlowFunctionParam(fname="f"), "fname", "g"),
            (GlobalConfig(), "prometheus_enable", True),
        ],
    )
    def test_frozen(self, obj: Any, field: str, value: Any) -> None:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(obj, field, value)
        assert getattr(obj, field) != value

    def test_evolve_validates(self) -> None:
        with pytest.raises(ConfigError) as info:
            attrs.evolve(FlowConfig(flow_name="f"), status=5)
        assert info.value.key == "status"

    def test_sources_are_hashable(self) -> None:
        assert len({Source(name="a"), Source(name="a"), Source(name="b")}) == 2


names = st.text(min_size=1, max_size=12)
params = st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4)
func_yaml = st.fixed_dictionaries(
    {
        "fname": names,
        "fmode": st.sampled_from([*(m.value for m in Mode), *(m.letter for m in Mode)]),
        "source": st.fixed_dictionaries({"name": names, "must": st.lists(names, max_size=3)}),
        "option": st.fixed_dictionaries(
            {
                "retry_times": st.integers(0, 10),
                "return_duration": st.integers(0, 10_000),
                "default_params": st.none() | params,
            }
        ),
    }
)


class TestGeneratedConfigs:
    """Any well-formed KisFlow function/flow mapping builds a config that keeps its values."""

    @no_deadline
    @given(func_yaml)
    def test_func_config_keeps_values(self, data: dict[str, Any]) -> None:
        conf = FuncConfig(**data)
        assert conf.fname == data["fname"]
        assert conf.fmode is Mode.parse(data["fmode"])
        assert conf.source.must == tuple(data["source"]["must"])
        assert conf.option.retry_times == data["option"]["retry_times"]
        assert conf.option.default_params == (data["option"]["default_params"] or {})
        again = FuncConfig(
            fname=conf.fname,
            fmode=conf.fmode.value,
            source=attrs.asdict(conf.source),
            option=attrs.asdict(conf.option),
        )
        assert again == conf

    @no_deadline
    @given(st.lists(st.fixed_dictionaries({"fname": names, "params": st.none() | params})))
    def test_flow_config_keeps_order(self, flows: list[dict[str, Any]]) -> None:
        conf = FlowConfig(flow_name="F", flows=flows)
        assert [f.fname for f in conf.flows] == [f["fname"] for f in flows]
        assert [f.params for f in conf.flows] == [f["params"] or {} for f in flows]

    @no_deadline
    @given(st.integers(max_value=-1))
    def test_any_negative_retry_is_refused(self, value: int) -> None:
        with pytest.raises(ConfigError):
            FuncOption(retry_times=value)
