"""What every connector type's store shares: the ``Store`` base, marks and row helpers.

A connector type (built-in or third-party) is one ``Store`` subclass and a factory
registered with ``kisflow.pool.connector_type``. Nothing here knows the engine's
internals: what a Save needs to be idempotent (flow, stage, partition, call number)
comes from the context variables the engine sets (``kisflow._context``).
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import dataclasses
import importlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import attrs

from kisflow import _context
from kisflow.columnar import is_frame, rows_of
from kisflow.config import ConnConfig
from kisflow.errors import ConnectorError, MissingExtraError
from kisflow.modes import Mode
from kisflow.rows import safe_repr


class StageLike(Protocol):
    """What a store reads of the stage it serves (``kisflow.stage.Stage`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def mode(self) -> Mode: ...

    @property
    def params(self) -> Mapping[str, Any]: ...


__all__ = [
    "LEDGER",
    "BuiltinConnector",
    "Store",
    "SaveMark",
    "plain_value",
    "save_mark",
    "to_json_text",
    "to_record",
]

LEDGER = "kisflow_partitions"
"""Name of the ledger (table, set suffix, file suffix) recording partitions already saved."""


@attrs.frozen
class SaveMark:
    """Which partition a Save writes: (flow, stage, partition key), recorded once per store.

    A Save with a mark writes its rows and records the mark together; a Save whose mark is
    already recorded writes nothing (a partition an executor reran after a crash).
    """

    flow: str
    stage: str
    partition: str

    def as_json(self) -> str:
        """The mark as a JSON array, for stores that keep it as one string."""
        return json.dumps([self.flow, self.stage, self.partition], ensure_ascii=False)


@attrs.define
class _Calls:
    """Where a stage is in its Save calls: which execution, attempt and call."""

    step: int
    attempt: int
    execution: int = 1
    call: int = 0


_CALLS: contextvars.ContextVar[tuple[Any, dict[tuple[str, str], _Calls]] | None] = (
    contextvars.ContextVar("kisflow_save_calls", default=None)
)
"""Save calls made so far per (flow, stage) in the partition this context is running."""


def save_mark(stage: str) -> SaveMark | None:
    """The mark of this Save call, or None outside an executor's partition or a run.

    Read from the engine's context: the partition (or batch) an executor is running
    and the current run (its flow name, step and attempt). The first call of a stage in
    a partition is marked with the partition's key. A stage that calls its connector
    again in the same attempt (a FaaS saving in chunks) gets ``key#2``, ``key#3``...; a
    retried attempt counts from the start again; a stage run again by an action gets
    ``key@2#1``... A rerun makes the same calls in the same order, so each is saved once.
    """
    part = _context.current_partition()
    if part is None:
        return None
    run = _context.current_run()
    if run is None:
        return None  # a store called outside a run: no flow to name the mark after
    state = _CALLS.get()
    if state is None or state[0] is not part:
        state = (part, {})
        _CALLS.set(state)
    name, step, attempt = run.flow_name, run.steps, run.attempt
    calls = state[1].get((name, stage))
    if calls is None:
        calls = state[1][(name, stage)] = _Calls(step, attempt)
    elif calls.step != step:
        calls.step, calls.attempt, calls.call = step, attempt, 0
        calls.execution += 1
    elif calls.attempt != attempt:
        calls.attempt, calls.call = attempt, 0
    calls.call += 1
    key = str(part.key)
    if calls.execution > 1:
        key = f"{key}@{calls.execution}#{calls.call}"
    elif calls.call > 1:
        key = f"{key}#{calls.call}"
    return SaveMark(flow=name, stage=stage, partition=key)


def plain_value(row: Any) -> Any:
    """A row as plain data: attrs and dataclass instances become dicts, mappings dicts."""
    if attrs.has(type(row)):
        return attrs.asdict(row, recurse=True)
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    if isinstance(row, Mapping):
        return dict(row)
    return row


def _json_default(value: Any) -> Any:
    plain = plain_value(value)
    if plain is value:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    return plain


def to_json_text(value: Any) -> str:
    """JSON text for a row (attrs/dataclass instances as objects); NaN/inf are refused.

    Raises:
        TypeError, ValueError: the row holds something JSON cannot represent.
    """
    return json.dumps(
        plain_value(value), ensure_ascii=False, allow_nan=False, default=_json_default
    )


class Store(abc.ABC):
    """The store behind a connector type: serves the Save and Load stages bound to it.

    A connector type is a ``Store`` subclass plus a factory ``(ConnConfig) -> Store``
    (the subclass itself is one), registered with ``kisflow.pool.connector_type(name,
    factory)`` or by an installed package's entry point in group ``kisflow.connectors``.
    A conn config's ``type:`` names it; its Save and Load stages then need no FaaS
    (docs/connectors.md, "Adding a connector type"). To write one, implement:

    - ``save(rows, params, mark) -> int``: store ``rows``, return how many were stored.
      ``mark`` is None, or a ``SaveMark`` (flow, stage, partition key) when an executor
      runs the Save as part of a partition: record the mark together with the rows (one
      transaction) and, when it is already recorded, store nothing and return 0, so a
      partition an executor reruns is stored once.
    - ``load(params) -> list``: the rows read (``where_limit`` parses ``where``/``limit``).
    - ``check()`` (optional): check ``self.config`` (the default asks for ``addrs``).

    ``params`` are the connector's ``params`` overlaid by the stage's (and, for a Load,
    by the mapping a FaaS passes to ``conn.call``). The store is made when a run first
    uses the connector (never by validate, graph or export), so ``__init__`` and
    ``check`` must open nothing. Fail with ``raise self.error(message)`` for what fails
    the same way on every attempt (a bad row, bad params: not retried), and with
    ``raise self.unreachable(exc) from exc`` when the store cannot be reached: the engine
    then retries the stage as its ``option.retry_times`` / ``return_duration`` say. Both
    are ``kisflow.ConnectorError``; any other exception is a bug in the store, which a run
    retries like a FaaS error and reports as ``StageExecutionError``.
    """

    type_name: ClassVar[str] = ""
    """The type's name in messages (default: the conn config's ``type``)."""
    takes_frames: ClassVar[bool] = False
    """Whether ``save`` takes a Polars DataFrame as it is (else it gets the frame's rows
    as dicts); a columnar store's ``load`` may return a DataFrame."""

    def __init__(self, config: ConnConfig) -> None:
        self.config = config
        self.check()

    def check(self) -> None:
        """Check the config (and import an extra); called once, when the store is made.

        Raises:
            ConnectorError: the config cannot work (made with ``self.error``).
        """
        if not self.config.addrs:
            raise self.error("has no addrs; set it to where the store lives")

    def require(self, module: str, extra: str) -> Any:
        """Import ``module`` for ``check``, or raise ``MissingExtraError`` naming
        ``kisflow[extra]`` and this connector (its name, type and address)."""
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            c = self.config
            who = f"connector {c.cname!r} ({self.type_name} at {c.addrs!r})"
            raise MissingExtraError(extra, module, needed_by=who) from exc

    def error(self, message: str, *, retryable: bool = False) -> ConnectorError:
        """A ``ConnectorError`` naming this connector, its type and its address.

        Only an unreachable store is ``retryable`` (see ``unreachable``): a bad row or bad
        params fail the same way on every attempt, so the engine does not retry them.
        """
        c = self.config
        return ConnectorError(
            f"connector {c.cname!r} ({self.type_name or c.type} at {c.addrs!r}) {message}",
            connector=c.cname,
            type=c.type,
            address=c.addrs,
            retryable=retryable,
        )

    def unreachable(self, cause: BaseException | str) -> ConnectorError:
        """The retryable ``ConnectorError`` saying the store cannot be reached now.

        Raise it chained to the store's own error, ``raise self.unreachable(exc) from
        exc``: the engine retries the stage's attempt as a whole, so a Save retried after
        it never stores part of its rows twice.
        """
        error = self.error(f"cannot reach its store: {cause}", retryable=True)
        if isinstance(cause, BaseException):
            error.__cause__ = cause
        return error

    @abc.abstractmethod
    def save(
        self, rows: Sequence[Any], params: Mapping[str, Any], mark: SaveMark | None = None
    ) -> int:
        """Store ``rows`` (one transaction where the store has them); return how many.

        With a ``mark``, record it with the rows and write nothing (return 0) when it is
        already recorded, so a partition saved twice is stored once.
        """

    @abc.abstractmethod
    def load(self, params: Mapping[str, Any]) -> list[Any]:
        """Read rows (``params`` may hold ``where`` and ``limit``)."""

    def call(self, stage: StageLike, args: Any) -> Any:
        """Serve ``conn.call(flow, args)`` for ``stage``: Save stores, Load reads.

        For Save, ``args`` are the rows to store (None: nothing) and the mark comes from
        the engine's context (see ``save_mark``); for Load, an optional mapping of params
        overriding the connector's and the stage's.
        """
        params: dict[str, Any] = {**self.config.params, **stage.params}
        if stage.mode is Mode.SAVE:
            rows: Any
            if args is None:
                rows = []
            elif is_frame(args):  # a columnar stage's DataFrame
                rows = args if self.takes_frames else rows_of(args)
            else:
                rows = list(args)
            return self.save(rows, params, save_mark(stage.name))
        if stage.mode is Mode.LOAD:
            if args is not None:
                if not isinstance(args, Mapping):
                    raise self.error(
                        f"got {type(args).__name__} from a Load call; pass None or a "
                        f"mapping of params"
                    )
                params.update(args)
            return self.load(params)
        raise self.error(
            f"serves only Save and Load stages, not {stage.name!r} ({stage.mode.value}); "
            f"register a caas for it"
        )

    # -- helpers shared by the table stores ----------------------------------------------

    def to_record(self, row: Any, index: int) -> dict[str, Any]:
        """A row as a dict with string keys, for the table stores."""
        return to_record(row, index, self)

    def where_limit(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], int | None]:
        """``params.where`` (a mapping of column: value) and ``params.limit`` (int >= 0)."""
        where = params.get("where")
        if where is None:
            where = {}
        if not isinstance(where, Mapping) or not all(isinstance(k, str) for k in where):
            raise self.error(
                f"params.where must be a mapping of field: value, got {where!r}; rows whose "
                f"fields equal every value are read"
            )
        limit = params.get("limit")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise self.error(f"params.limit must be an integer >= 0, got {limit!r}")
        return dict(where), limit


BuiltinConnector = Store
"""The former name of ``Store``."""


def to_record(row: Any, index: int, conn: Store) -> dict[str, Any]:
    """``row`` as a dict with string keys (a JSON object string is parsed).

    Raises:
        ConnectorError: naming the row index, for rows that are not records.
    """
    value = plain_value(row)
    if isinstance(value, str):
        with contextlib.suppress(ValueError, RecursionError):
            value = json.loads(value)
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise conn.error(
            f"cannot store row {index} ({type(row).__name__} {safe_repr(row, 80)}): a table "
            f"row must be a mapping with string keys, an attrs/dataclass instance or a "
            f"JSON object"
        )
    return value


def matches(row: Any, where: Mapping[str, Any]) -> bool:
    """Whether a loaded row has every ``where`` field equal to its value."""
    if not where:
        return True
    if not isinstance(row, Mapping):
        return False
    return all(k in row and row[k] == v for k, v in where.items())


def finite(value: float) -> bool:
    """Whether a float can be stored (NaN and inf cannot round-trip through the stores)."""
    return math.isfinite(value)
