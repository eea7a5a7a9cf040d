"""DOT export: exact text for a flow of every mode."""

from __future__ import annotations

import attrs

import kisflow as kf


@attrs.define
class Row:
    x: int


EXPECTED = r"""strict digraph {
rankdir=LR;
label="orders";
labelloc=t;
node [style=filled, fontname=Helvetica];
"Check" [label="Check\nVerify (V)\nRow -> Row", shape=diamond, fillcolor="#fff2cc"];
"Store" [label="Store\nSave (S)\ninput() -> Any", shape=cylinder, fillcolor="#d5e8d4"];
"Read" [label="Read\nLoad (L)\ninput() -> Any", shape=cylinder, fillcolor="#dae8fc"];
"Sum" [label="Sum\nCalculate (C)\nfloat -> float", shape=box, fillcolor="#e1d5e7"];
"Sum#2" [label="Sum\nCalculate (C)\nfloat -> float", shape=box, fillcolor="#e1d5e7"];
"Show" [label="Show\nExpand (E)\nAny -> Any", shape=hexagon, fillcolor="#f8cecc"];
"Check" -> "Store";
"Store" -> "Read";
"Read" -> "Sum";
"Sum" -> "Sum#2";
"Sum#2" -> "Show";
}
"""


class TestToDot:
    """to_dot() names, labels and styles each stage by mode, in order."""

    def test_exact_output(self) -> None:
        @kf.faas("Check", output=Row)
        def check(flow: kf.Flow, rows: list[Row]) -> None: ...

        @kf.faas("Sum", output=float)
        def total(flow: kf.Flow, rows: list[float]) -> None: ...

        @kf.faas("Show")
        def show(flow: kf.Flow, rows: list) -> None: ...  # type: ignore[type-arg]

        for name in ("Store", "Read"):
            kf.pool.faas(name, lambda flow: None)
        flow = (
            kf.FlowBuilder("orders")
            .verify("Check")
            .save("Store")
            .load("Read")
            .calculate("Sum")
            .calculate("Sum")
            .expand("Show")
            .build()
        )
        assert flow.to_dot() == EXPECTED

    def test_unregistered_stage_shows_unknown_types(self) -> None:
        flow = kf.Flow("lazy").link(kf.FuncConfig(fname="Later", fmode="Expand"))
        assert '"Later" [label="Later\\nExpand (E)\\n? -> ?"' in flow.to_dot()
