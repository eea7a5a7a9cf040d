"""What every built-in connector shares: retries, params, and turning rows into records."""

from __future__ import annotations

import abc
import contextlib
import contextvars
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import attrs

from kisflow.config import ConnConfig
from kisflow.errors import ConnectorError
from kisflow.modes import Mode


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
    "Unreachable",
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

    step: int | None
    attempt: int
    execution: int = 1
    call: int = 0


_CALLS: contextvars.ContextVar[tuple[Any, dict[tuple[str, str], _Calls]] | None] = (
    contextvars.ContextVar("kisflow_save_calls", default=None)
)
"""Save calls made so far per (flow, stage) in the partition this context is running."""


def save_mark(flow: Any, stage: str) -> SaveMark | None:
    """The mark of this Save call in the partition an executor is running, or None outside.

    ``flow`` is the flow facade the stage was given (its run tells executions and
    retries apart) or a flow name. The first call of a stage in a partition is marked
    with the partition's key. A stage that calls its connector again in the same
    attempt (a FaaS saving in chunks) gets ``key#2``, ``key#3``...; a retried attempt
    counts from the start again; a stage run again by an action gets ``key@2#1``...
    A rerun makes the same calls in the same order, so each is saved once.
    """
    from kisflow.executors._partition import current_partition

    part = current_partition()
    if part is None:
        return None
    state = _CALLS.get()
    if state is None or state[0] is not part:
        state = (part, {})
        _CALLS.set(state)
    name = flow if isinstance(flow, str) else str(getattr(flow, "name", "") or "")
    run = getattr(flow, "_run", None)
    step: int | None = getattr(run, "steps", None)
    attempt: int = getattr(run, "attempt", 1)
    calls = state[1].get((name, stage))
    if calls is None:
        calls = state[1][(name, stage)] = _Calls(step, attempt)
    elif calls.step != step:
        calls.step, calls.attempt, calls.call = step, attempt, 0
        calls.execution += 1
    elif calls.attempt != attempt:
        calls.attempt, calls.call = attempt, 0
    calls.call += 1
    key = part.key
    if calls.execution > 1:
        key = f"{key}@{calls.execution}#{calls.call}"
    elif calls.call > 1:
        key = f"{key}#{calls.call}"
    return SaveMark(flow=name, stage=stage, partition=key)


class Unreachable(Exception):
    """Raised by an implementation when its store cannot be reached (worth a retry)."""


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
    """A connector type's store: serves the Save and Load calls of the stages bound to it.

    Subclasses implement ``save`` and ``load`` and raise ``Unreachable`` (chained to the
    store's error) when the store cannot be reached; ``call`` retries those as the stage's
    ``option.retry_times`` / ``return_duration`` say, then raises ``ConnectorError``.
    """

    type_name: ClassVar[str] = ""

    def __init__(self, config: ConnConfig) -> None:
        self.config = config
        self.check()

    def check(self) -> None:
        """Check the config (and import the extra); called once, at connector init."""
        if not self.config.addrs:
            raise self.error("has no addrs; set it to where the store lives")

    def error(self, message: str, *, retryable: bool = False) -> ConnectorError:
        """A ``ConnectorError`` naming this connector, its type and its address.

        Only an unreachable store is ``retryable``: a bad row or bad params fail the same
        way on every attempt, so the engine does not retry them.
        """
        c = self.config
        return ConnectorError(
            f"connector {c.cname!r} ({self.type_name} at {c.addrs!r}) {message}",
            connector=c.cname,
            type=c.type,
            address=c.addrs,
            retryable=retryable,
        )

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

    def call(self, stage: StageLike, args: Any, flow: Any = None) -> Any:
        """Serve ``conn.call(flow, args)`` for ``stage``: Save stores, Load reads.

        For Save, ``args`` are the rows to store (None: the stage's input is not known
        here, so nothing); for Load, an optional mapping of params overriding the
        connector's and the stage's. ``flow`` (the flow facade, or its name) keys
        the partition ledger when an executor runs the Save (see ``save_mark``).
        """
        params: dict[str, Any] = {**self.config.params, **stage.params}
        if stage.mode is Mode.SAVE:
            rows = [] if args is None else list(args)
            mark = save_mark(flow, stage.name)
            return self._once(stage, lambda: self.save(rows, params, mark))
        if stage.mode is Mode.LOAD:
            if args is not None:
                if not isinstance(args, Mapping):
                    raise self.error(
                        f"got {type(args).__name__} from a Load call; pass None or a "
                        f"mapping of params"
                    )
                params.update(args)
            return self._once(stage, lambda: self.load(params))
        raise self.error(
            f"serves only Save and Load stages, not {stage.name!r} ({stage.mode.value}); "
            f"register a caas for it"
        )

    def _once(self, stage: StageLike, op: Any) -> Any:
        """Run one store operation; an unreachable store becomes ``ConnectorError``.

        Retries are the engine's (``option.retry_times``, ``return_duration`` backoff),
        so a Save stage's attempt is retried as a whole and never saves twice in part.
        """
        try:
            return op()
        except Unreachable as exc:
            cause = exc.__cause__ or exc
            raise self.error(
                f"cannot reach its store for stage {stage.name!r}: {cause}", retryable=True
            ) from cause

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
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise conn.error(
            f"cannot store row {index} ({type(row).__name__} {str(row)[:80]!r}): a table "
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
