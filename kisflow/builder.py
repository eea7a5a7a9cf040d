"""FlowBuilder: compose a flow stage by stage, one method per mode, then ``build()``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from kisflow import _pool
from kisflow.config import ConnConfig, FlowConfig, FuncConfig, FuncOption, Source
from kisflow.errors import FlowDefinitionError
from kisflow.flow import DEFAULT_MAX_STEPS, Flow
from kisflow.modes import Mode

__all__ = ["FlowBuilder"]


class FlowBuilder:
    """Records stages and settings; ``build()`` assembles and validates the Flow.

    Example::

        flow = (FlowBuilder("CalStuAvgScore")
                .calculate("AvgStuScore")
                .expand("PrintStuAvgScore")
                .build())
    """

    def __init__(self, name: str, *, status: int = 1, pool: _pool.Pool | None = None) -> None:
        self._name = name
        self._status = status
        self._pool = pool
        self._stages: list[tuple[FuncConfig, dict[str, Any]]] = []
        self._max_steps: int | None = None
        self._dead_letters: dict[str | None, Any] = {}

    def _add(
        self,
        mode: Mode,
        fname: str,
        params: Mapping[str, Any] | None,
        source: Source | None,
        option: FuncOption | None,
        conn: ConnConfig | None,
    ) -> Self:
        config = FuncConfig(
            fname=fname, fmode=mode, source=source or Source(), option=option or FuncOption()
        )
        if conn is not None:
            config = config.with_connector(conn)
        self._stages.append((config, dict(params or {})))
        return self

    def verify(
        self,
        fname: str,
        params: Mapping[str, Any] | None = None,
        *,
        source: Source | None = None,
        option: FuncOption | None = None,
        conn: ConnConfig | None = None,
    ) -> Self:
        """Add a Verify stage (filter, validate, dedupe)."""
        return self._add(Mode.VERIFY, fname, params, source, option, conn)

    def save(
        self,
        fname: str,
        params: Mapping[str, Any] | None = None,
        *,
        source: Source | None = None,
        option: FuncOption | None = None,
        conn: ConnConfig | None = None,
    ) -> Self:
        """Add a Save stage (writes rows through its connector)."""
        return self._add(Mode.SAVE, fname, params, source, option, conn)

    def load(
        self,
        fname: str,
        params: Mapping[str, Any] | None = None,
        *,
        source: Source | None = None,
        option: FuncOption | None = None,
        conn: ConnConfig | None = None,
    ) -> Self:
        """Add a Load stage (reads rows through its connector)."""
        return self._add(Mode.LOAD, fname, params, source, option, conn)

    def calculate(
        self,
        fname: str,
        params: Mapping[str, Any] | None = None,
        *,
        source: Source | None = None,
        option: FuncOption | None = None,
        conn: ConnConfig | None = None,
    ) -> Self:
        """Add a Calculate stage (new fields, values, aggregation)."""
        return self._add(Mode.CALCULATE, fname, params, source, option, conn)

    def expand(
        self,
        fname: str,
        params: Mapping[str, Any] | None = None,
        *,
        source: Source | None = None,
        option: FuncOption | None = None,
        conn: ConnConfig | None = None,
    ) -> Self:
        """Add an Expand stage (a custom sink, normally last)."""
        return self._add(Mode.EXPAND, fname, params, source, option, conn)

    def max_steps(self, steps: int) -> Self:
        """Set the step limit that turns a jump loop into ``FlowLoopError``."""
        if steps < 1:
            raise FlowDefinitionError(
                f"flow {self._name!r}: max_steps must be at least 1, got {steps}", flow=self._name
            )
        if self._max_steps is not None:
            raise FlowDefinitionError(
                f"flow {self._name!r}: max_steps is already set to {self._max_steps}",
                flow=self._name,
            )
        self._max_steps = steps
        return self

    def dead_letters(self, sink: Any, *, stage: str | None = None) -> Self:
        """Give the flow (or one ``stage``) a dead-letter sink (see ``Flow.set_dead_letters``)."""
        if stage in self._dead_letters:
            where = f"stage {stage!r}" if stage is not None else "the flow"
            raise FlowDefinitionError(
                f"flow {self._name!r}: a dead-letter sink is already set for {where}",
                flow=self._name,
            )
        self._dead_letters[stage] = sink
        return self

    def build(self) -> Flow:
        """Assemble the flow and check it.

        Raises:
            FlowDefinitionError: no stages, or one name used with two different configs.
            FunctionNotFoundError: a stage has no FaaS registered.
            FlowTypeError: a stage's output type does not fit the next stage's rows.
        """
        if not self._stages:
            raise FlowDefinitionError(
                f"flow {self._name!r} has no stages; add one with .calculate(...) etc.",
                flow=self._name,
            )
        flow = Flow(
            FlowConfig(flow_name=self._name, status=self._status),
            pool=self._pool,
            max_steps=DEFAULT_MAX_STEPS if self._max_steps is None else self._max_steps,
        )
        for config, params in self._stages:
            flow.link(config, params)
        for stage, sink in self._dead_letters.items():
            flow.set_dead_letters(sink, stage=stage)
        flow.validate()
        return flow
