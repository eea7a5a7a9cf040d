"""FlowBuilder: one method per mode, and build() checks registration and row types."""

from __future__ import annotations

import attrs
import pytest

import kisflow as kf


@attrs.define
class Order:
    order_id: int
    amount: float


@attrs.define
class Priced:
    order_id: int
    amount: float
    currency: str = "EUR"


@attrs.define
class Invoice:
    invoice_id: str


def _faas(name: str, rows: type | None = None, output: type | None = None) -> None:
    if rows is None:

        def fn(flow: kf.Flow) -> None:
            flow.commit_row_batch(flow.input())

    else:

        def fn(flow: kf.Flow, rows: list) -> None:  # type: ignore[type-arg]
            flow.commit_row_batch(rows)

        fn.__annotations__["rows"] = list[rows]  # type: ignore[valid-type]
    kf.pool.faas(name, fn, output=output)


class TestModes:
    """Each builder method adds a stage of its mode, with params, source and option."""

    def test_one_method_per_mode(self) -> None:
        for name in "VSLCE":
            _faas(name)
        flow = (
            kf.FlowBuilder("all")
            .verify("V", {"k": 1})
            .save("S")
            .load("L")
            .calculate("C", option=kf.FuncOption(retry_times=2, default_params={"d": 0}))
            .expand("E", source=kf.Source("src", ["id"]))
            .build()
        )
        assert [s.mode.letter for s in flow.stages] == list("VSLCE")
        assert dict(flow.stages[0].params) == {"k": 1}
        assert dict(flow.stages[3].params) == {"d": 0}
        assert flow.stages[3].config.option.retry_times == 2
        assert flow.stages[4].config.source == kf.Source("src", ("id",))
        assert [f.fname for f in flow.config.flows] == list("VSLCE")
        assert flow.config.flows[0].params == {"k": 1}

    def test_connector_binding(self) -> None:
        inits: list[str] = []
        kf.caas_init("db", lambda conn: inits.append(conn.get_name()))
        _faas("S")
        conn = kf.ConnConfig(cname="db", type="sqlite", addrs=":memory:")
        flow = kf.FlowBuilder("c").save("S", conn=conn).build()
        assert flow.stages[0].config.option.cname == "db"
        assert flow.stages[0].connector is not None
        assert flow.stages[0].connector.config == conn
        assert inits == []  # a connector initialises on its flow's first run, not at build
        flow.run([1])
        flow.run([2])
        assert inits == ["db"]


class TestBuildChecks:
    """build() refuses flows that could never run."""

    def test_no_stages(self) -> None:
        with pytest.raises(kf.FlowDefinitionError, match="flow 'empty' has no stages"):
            kf.FlowBuilder("empty").build()

    def test_unregistered_faas(self) -> None:
        _faas("A")
        with pytest.raises(
            kf.FunctionNotFoundError, match="function 'B' in flow 'f' has no FaaS"
        ) as err:
            kf.FlowBuilder("f").verify("A").calculate("B").build()
        assert isinstance(err.value, LookupError)

    def test_output_that_does_not_fit(self) -> None:
        _faas("MakeOrders", output=Order)
        _faas("Bill", rows=Invoice)
        with pytest.raises(kf.FlowTypeError) as err:
            kf.FlowBuilder("billing").calculate("MakeOrders").expand("Bill").build()
        assert (err.value.flow, err.value.upstream, err.value.downstream) == (
            "billing",
            "MakeOrders",
            "Bill",
        )
        assert "stage 'MakeOrders' outputs Order but stage 'Bill' takes Invoice" in str(err.value)

    @pytest.mark.parametrize(
        ("output", "rows"),
        [
            (Order, Order),
            (Order, dict),
            (dict, Order),
            (Priced, Order),
            (int, float),
            (Order, object),
        ],
    )
    def test_outputs_that_fit(self, output: type, rows: type) -> None:
        _faas("Up", output=output)
        _faas("Down", rows=rows)
        flow = kf.FlowBuilder("ok").calculate("Up").expand("Down").build()
        assert len(flow.stages) == 2

    def test_structural_mismatch_on_a_required_field(self) -> None:
        _faas("Up", output=Order)
        _faas("Down", rows=Priced)  # Priced requires nothing Order lacks: fits
        kf.FlowBuilder("ok").calculate("Up").expand("Down").build()
        kf.pool.reset()
        _faas("Up", output=Priced)
        _faas("Down", rows=Invoice)
        with pytest.raises(kf.FlowTypeError):
            kf.FlowBuilder("bad").calculate("Up").expand("Down").build()

    def test_max_steps_once(self) -> None:
        _faas("A")
        flow = kf.FlowBuilder("f").calculate("A").max_steps(5).build()
        assert flow._d.max_steps == 5
        with pytest.raises(kf.FlowDefinitionError, match="max_steps is already set to 5"):
            kf.FlowBuilder("f").max_steps(5).max_steps(6)
