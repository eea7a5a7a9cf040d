"""A flow resolved against a pool, once: what runs each stage, and whether it fits.

``plan_of(definition)`` resolves every stage to its FaaS (a registered one, else the
default Save/Load of its connector's registered type), checks that each stage's
declared output fits the next stage's rows, and fixes the flow's dead-letter table. Runs,
DOT export, the payload shipped to workers and config validation all read stages this
way. The plan is cached on the definition while the pool's version and the chain are
unchanged. Resolving touches no connector: a connector initialises on first use.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from kisflow import _context, _state
from kisflow._api import FlowAPI
from kisflow._definition import Definition
from kisflow._pool import FaaSSpec, Pool, current
from kisflow._signature import CallKind, Signature, read_signature
from kisflow.columnar import fits
from kisflow.connector import Connector, find_type
from kisflow.deadletter import DeadLetterSink, sinks_for
from kisflow.errors import FlowDefinitionError, FlowTypeError, FunctionNotFoundError
from kisflow.modes import Mode
from kisflow.rows import describe_type, type_fits
from kisflow.stage import Stage
from kisflow.state import stage_key
from kisflow.windows import windowed

__all__ = ["Plan", "plan_of", "pool_of", "run_plan", "stage_faas", "store_load", "store_save"]


def store_save(flow: FlowAPI) -> None:
    """Default FaaS of a Save stage on a registered connector type: store, pass on."""
    rows = flow.input()
    flow.get_connector().call(flow, rows)
    flow.commit_row_batch(rows)


def store_load(flow: FlowAPI) -> None:
    """Default FaaS of a Load stage on a registered connector type: commit what it reads."""
    flow.commit_row_batch(flow.get_connector().call(flow, None))


_SYNC = (CallKind.PLAIN, CallKind.GENERATOR)
"""The kinds of FaaS a run loop may call itself (no await needed)."""


@functools.cache
def _default_signature(fn: Callable[..., Any]) -> Signature:
    # A DataFrame reaches the store as it is: a Parquet Save writes it, a row store
    # (Store.call) takes its rows.
    return attrs.evolve(read_signature(fn.__name__, fn), frames=True)


def _default_fn(stage: Stage, pool: Pool) -> Callable[[FlowAPI], None] | None:
    """``store_save``/``store_load`` when ``stage`` is a Save/Load on a registered type."""
    if stage.mode is Mode.SAVE:
        fn = store_save
    elif stage.mode is Mode.LOAD:
        fn = store_load
    else:
        return None
    conn = stage.config.conn
    if conn is None or not stage.config.option.cname or find_type(conn.type, pool) is None:
        return None
    return fn


def stage_faas(pool: Pool, stage: Stage) -> FaaSSpec | None:
    """What runs ``stage``: its registered FaaS, else its connector type's default, else None."""
    spec = pool.get_faas(stage.name)
    if spec is not None:
        return spec
    fn = _default_fn(stage, pool)
    if fn is None:
        return None
    return FaaSSpec(name=stage.name, fn=fn, signature=_default_signature(fn))


def is_default(spec: FaaSSpec) -> bool:
    """Whether ``spec`` is a connector type's default Save/Load (nothing to ship)."""
    return spec.fn is store_save or spec.fn is store_load


@attrs.frozen
class Plan:
    """A flow's stages resolved against one version of a pool."""

    pool: Pool
    version: int
    stages: tuple[Stage, ...]
    specs: tuple[FaaSSpec, ...]
    sinks: tuple[DeadLetterSink | None, ...] | None
    """Each stage's flow-level dead-letter sink, or None when no stage has one."""
    dead_letters: Any = attrs.field(eq=False, repr=False)
    """The definition's sink table the plan was made from (a copy-on-write dict)."""
    connectors: tuple[Connector, ...]
    """The stages' connectors (runs then publish themselves in ``_context``)."""
    flow_name: str = attrs.field(eq=False, repr=False, default="")
    n: int = attrs.field(eq=False, repr=False, default=0)
    """``len(stages)``."""
    jump_index: dict[str, tuple[int, ...]] = attrs.field(eq=False, repr=False, factory=dict)
    """Stage name or id -> the positions of the stages it names (the definition's)."""
    enabled: bool = attrs.field(eq=False, repr=False, default=True)
    """Whether runs of the flow do anything (config ``status == 1``)."""
    fns: tuple[Callable[..., Any], ...] = attrs.field(eq=False, repr=False, default=())
    """Per stage: its FaaS's callable."""
    plain: tuple[bool, ...] = attrs.field(eq=False, repr=False, default=())
    """Per stage: its FaaS takes the flow alone (no context, no rows to convert)."""
    inline: tuple[int, ...] = attrs.field(eq=False, repr=False, default=())
    """Per stage: whether the run loop calls its FaaS itself under ``run`` (a sync
    function or generator), with no round trip through the driver: 0 no, 1 yes, 2 yes
    and it takes the flow alone (a plain call)."""
    inline_async: tuple[int, ...] = attrs.field(eq=False, repr=False, default=())
    """Per stage: the same under ``arun``, where a FaaS registered ``blocking=True`` goes
    to a worker thread instead."""
    plain_sync: bool = attrs.field(eq=False, repr=False, default=False)
    """Every stage a plain sync FaaS (``inline`` all 2): ``run_sync`` then takes
    ``Run.run_plain``, the run loop without a generator."""
    gated: tuple[bool, ...] = attrs.field(eq=False, repr=False, default=())
    """Per stage: in a stream with ordered commits, its call waits for the batch before
    (a Save stage, a window FaaS); such calls are the driver's, never inline."""

    def init_connectors(self) -> None:
        """Initialise every connector once (a run calls it; later calls do nothing).

        Raises:
            ConnectorError: a connector's init callback failed, or its type's store
                refused the config.
        """
        for conn in self.connectors:
            if not conn.initialised:
                conn.init()

    def sinks_with(
        self, run_sink: DeadLetterSink | None
    ) -> tuple[DeadLetterSink | None, ...] | None:
        """Each stage's sink when the run brings ``run_sink`` (None: the flow's)."""
        if run_sink is None:
            return self.sinks
        return sinks_for(self.stages, self.dead_letters, run_sink)


def _windowed(d: Definition, position: int, stage: Stage, spec: FaaSSpec) -> FaaSSpec:
    """A window FaaS's spec as the run calls it: once per stage call, the FaaS per window."""
    assert spec.window is not None
    sig = spec.signature
    asynchronous = sig.kind is CallKind.ASYNC
    fn = windowed(
        spec.window,
        spec.fn,
        asynchronous=asynchronous,
        state_key=f"{stage_key(position, stage.name)}#windows",
        store=d.state,
        streaming=_context.STREAMING.get,
    )
    kind = CallKind.ASYNC if asynchronous else CallKind.PLAIN
    return attrs.evolve(spec, fn=fn, signature=attrs.evolve(sig, kind=kind))


def pool_of(d: Definition) -> Pool:
    """The pool a definition resolves against: its own, else the current one."""
    pool: Pool = d.pool if d.pool is not None else current()
    return pool


def plan_of(d: Definition) -> Plan:
    """The definition's plan, resolved now unless the cached one is still valid.

    Raises:
        FlowDefinitionError: the flow has no stages.
        FunctionNotFoundError: a stage has no FaaS and no default.
        FlowTypeError: a stage's declared output does not fit the next stage's rows.
    """
    pool = pool_of(d)
    plan: Plan | None = d.plan
    if (
        plan is not None
        and plan.pool is pool
        and plan.version == pool.version
        and plan.stages is d.stages
        and plan.dead_letters is d.dead_letters
    ):
        return plan
    name = d.config.flow_name
    stages = d.stages
    if not stages:
        raise FlowDefinitionError(
            f"flow {name!r} has no stages, so a run would drop its rows; link a function first",
            flow=name,
        )
    specs: list[FaaSSpec] = []
    for position, stage in enumerate(stages):
        spec = stage_faas(pool, stage)
        if spec is None:
            raise FunctionNotFoundError(stage.name, flow=name)
        if spec.window is not None:
            spec = _windowed(d, position, stage, spec)
        specs.append(spec)
    check_types(name, stages, specs)
    table = d.dead_letters
    plain = tuple(not (sp.signature.takes_rows or sp.signature.takes_ctx) for sp in specs)
    inline = tuple(_how(spec, p, False) for spec, p in zip(specs, plain, strict=True))
    plan = Plan(
        pool=pool,
        version=pool.version,
        stages=stages,
        specs=tuple(specs),
        sinks=sinks_for(stages, table, None),
        dead_letters=table,
        connectors=tuple(s.connector for s in stages if s.connector is not None),
        flow_name=name,
        n=len(stages),
        jump_index=d.jump_index,
        enabled=d.config.enabled,
        fns=tuple(spec.fn for spec in specs),
        plain=plain,
        inline=inline,
        plain_sync=all(how == 2 for how in inline),
        inline_async=tuple(_how(spec, p, True) for spec, p in zip(specs, plain, strict=True)),
        gated=tuple(
            st.mode is Mode.SAVE or sp.window is not None
            for st, sp in zip(stages, specs, strict=True)
        ),
    )
    d.plan = plan
    return plan


def _how(spec: FaaSSpec, plain: bool, under_arun: bool) -> int:
    """``Plan.inline``'s entry for ``spec``: 0, or 2 for a plain call, 1 with arguments."""
    if spec.signature.kind not in _SYNC or (under_arun and spec.blocking):
        return 0
    return 2 if plain else 1


def run_plan(d: Definition) -> Plan | None:
    """The plan a run of ``d`` uses, or None when the flow is disabled (nothing resolved).

    ``plan_of`` with its cache check inline: a run starts with one call here.

    Raises:
        as ``plan_of``, for an enabled flow.
    """
    plan: Plan | None = d.plan
    if plan is not None:
        pool = d.pool if d.pool is not None else _state.pool
        # plan_of's checks, read without the properties (once per run): the definition
        # publishes nothing while ``_pending`` is empty, and ``_version`` is the pool's.
        if (
            plan.pool is pool
            and plan.version == pool._version
            and plan.stages is d._stages
            and not d._pending
            and plan.dead_letters is d.dead_letters
        ):
            return plan if plan.enabled else None
    if not d.config.enabled:
        return None
    return plan_of(d)


def check_types(flow: str, stages: Sequence[Stage], specs: Sequence[FaaSSpec | None]) -> None:
    """Check each declared output against the next stage's rows (unknown FaaS: skipped).

    Raises:
        FlowTypeError: naming both stages and both types.
    """
    for (up, up_spec), (down, down_spec) in itertools.pairwise(zip(stages, specs, strict=True)):
        if up_spec is None or down_spec is None:
            continue
        produced = up_spec.signature.output_type
        consumed = down_spec.signature.rows_type
        if produced is None or not down_spec.signature.takes_rows:
            continue
        fit = fits(produced, consumed)
        if not (type_fits(produced, consumed) if fit is None else fit):
            raise FlowTypeError(
                f"flow {flow!r}: stage {up.name!r} outputs {describe_type(produced)} "
                f"but stage {down.name!r} takes {describe_type(consumed)}; make the "
                f"output= of {up.name!r} match the rows annotation of {down.name!r}",
                flow=flow,
                upstream=up.name,
                downstream=down.name,
            )
