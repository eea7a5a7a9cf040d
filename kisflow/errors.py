"""kisflow's exception hierarchy: every error a user sees is a ``KisFlowError``.

Each class also derives from the builtin it refines, so ``except ValueError`` keeps
working. Context is kept as attributes (``.flow``, ``.stage``, ``.path``, ...), not only
in the message::

    KisFlowError
    ├── ConfigError(ValueError)                 .path .key; may carry many .errors
    │   └── DeliveryError                       a stream cannot give the delivery asked for
    ├── PoolError
    │   ├── DuplicateRegistrationError(ValueError)   .kind .name
    │   └── FunctionNotFoundError(LookupError)       .flow .function
    ├── FaaSSignatureError(TypeError)           .function .parameter .qualname .file .line
    ├── FlowDefinitionError(ValueError)         .flow
    │   ├── FlowShapeError                      not a single chain
    │   ├── FlowCycleError                      the graph has a cycle
    │   └── FlowTypeError(TypeError)            .upstream .downstream
    ├── RunError(RuntimeError)                  .flow .stage
    │   ├── RowConversionError(ValueError)      .row_index .row
    │   ├── RowRejectedError(ValueError)        .row; flow.dead_letter() with no sink
    │   ├── DeadLetterError                     the dead-letter sink itself failed
    │   ├── StageExecutionError                 .attempts; chained to the user's error
    │   ├── ActionError(ValueError)             bad action, e.g. an unknown jump target
    │   ├── FlowLoopError                       .cycle .steps
    │   ├── CommitError(TypeError)              commit_row_batch got no batch (a str, a mapping)
    │   ├── InputLineError(ValueError)          .source .line; a JSON-lines input line is no row
    │   └── PartitionError                      .partition; a partition failed on a worker
    ├── ConnectorError(ConnectionError)         .connector .type .address .flow .stage .attempts
    ├── SourceError(ConnectionError)            .source .position .flow .retryable
    ├── CheckpointError(RuntimeError)           .path .flow; a stream's checkpoint store
    └── MissingExtraError(ImportError)          .extra .needed_by; pip install 'kisflow[extra]'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ActionError",
    "CheckpointError",
    "CommitError",
    "ConfigError",
    "ConnectorError",
    "DeadLetterError",
    "DeliveryError",
    "DuplicateRegistrationError",
    "FaaSSignatureError",
    "FlowCycleError",
    "FlowDefinitionError",
    "FlowLoopError",
    "FlowShapeError",
    "FlowTypeError",
    "FunctionNotFoundError",
    "InputLineError",
    "KisFlowError",
    "MissingExtraError",
    "PartitionError",
    "PoolError",
    "RowConversionError",
    "RowRejectedError",
    "RunError",
    "SourceError",
    "StageExecutionError",
]


class KisFlowError(Exception):
    """Base of every error kisflow raises."""


class ConfigError(KisFlowError, ValueError):
    """A configuration (file or object) is invalid.

    When several problems are found at once, ``errors`` holds each one as its own
    ``ConfigError`` and the message lists them all.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        key: str | None = None,
        errors: Sequence[ConfigError] = (),
    ) -> None:
        self.path = path
        self.key = key
        self.errors: tuple[ConfigError, ...] = tuple(errors)
        super().__init__(message)


class PoolError(KisFlowError):
    """A registration or lookup in the pool failed."""


class DuplicateRegistrationError(PoolError, ValueError):
    """A name is registered twice in the same router."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(
            f"{kind} {name!r} is already registered; pass replace=True to replace it on purpose"
        )


class FunctionNotFoundError(PoolError, LookupError):
    """A flow names a function that has no FaaS registered."""

    def __init__(self, function: str, flow: str | None = None) -> None:
        self.function = function
        self.flow = flow
        where = f" in flow {flow!r}" if flow is not None else ""
        super().__init__(
            f"function {function!r}{where} has no FaaS registered; "
            f"register it with kisflow.faas({function!r}) before running"
        )


class FaaSSignatureError(KisFlowError, TypeError):
    """A FaaS callback does not have a signature kisflow can call.

    ``function`` is the name it was registered under; ``qualname``, ``file`` and
    ``line`` locate the Python function (None when unknown: a builtin, a value that is
    not callable), so the message leads to the code; ``reason`` is what is wrong.
    """

    def __init__(
        self,
        function: str,
        message: str,
        parameter: str | None = None,
        *,
        qualname: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.function = function
        self.parameter = parameter
        self.reason = message
        self.qualname = qualname
        self.file = file
        self.line = line
        where = f" parameter {parameter!r}" if parameter is not None else ""
        defined = ""
        if qualname is not None:
            at = f" at {file}:{line}" if file and line else f" in {file}" if file else ""
            defined = f" (function {qualname}{at})"
        super().__init__(f"faas {function!r}{defined}{where}: {message}")


class FlowDefinitionError(KisFlowError, ValueError):
    """A flow's structure is invalid."""

    def __init__(self, message: str, *, flow: str | None = None) -> None:
        self.flow = flow
        super().__init__(message)


class FlowShapeError(FlowDefinitionError):
    """The flow graph is not a single chain of stages."""


class FlowCycleError(FlowDefinitionError):
    """The flow graph contains a cycle."""


class FlowTypeError(FlowDefinitionError, TypeError):
    """A stage's declared output type does not fit the next stage's input type."""

    def __init__(
        self,
        message: str,
        *,
        flow: str | None = None,
        upstream: str | None = None,
        downstream: str | None = None,
    ) -> None:
        self.upstream = upstream
        self.downstream = downstream
        super().__init__(message, flow=flow)


class RunError(KisFlowError, RuntimeError):
    """A flow run failed; names the flow and the stage at fault."""

    def __init__(self, message: str, *, flow: str, stage: str | None = None) -> None:
        self.flow = flow
        self.stage = stage
        super().__init__(message)


class RowConversionError(RunError, ValueError):
    """An input row could not be converted to the stage's declared row type."""

    def __init__(self, message: str, *, flow: str, stage: str, row_index: int, row: Any) -> None:
        self.row_index = row_index
        self.row = row
        super().__init__(message, flow=flow, stage=stage)


class RowRejectedError(RunError, ValueError):
    """A FaaS rejected a row with ``flow.dead_letter`` and the stage has no dead-letter sink."""

    def __init__(self, message: str, *, flow: str, stage: str, row: Any) -> None:
        self.row = row
        super().__init__(message, flow=flow, stage=stage)


class DeadLetterError(RunError):
    """The dead-letter sink raised while storing a row; the sink's error is chained."""


class StageExecutionError(RunError):
    """A FaaS raised; the original exception is chained as ``__cause__``."""

    def __init__(self, message: str, *, flow: str, stage: str, attempts: int = 1) -> None:
        self.attempts = attempts
        super().__init__(message, flow=flow, stage=stage)


class ActionError(RunError, ValueError):
    """A FaaS asked for an action the flow cannot carry out."""


class FlowLoopError(RunError):
    """A run exceeded its step limit, usually because jumps form a loop."""

    def __init__(
        self, message: str, *, flow: str, stage: str, cycle: Sequence[str], steps: int
    ) -> None:
        self.cycle = tuple(cycle)
        self.steps = steps
        super().__init__(message, flow=flow, stage=stage)


class InputLineError(RunError, ValueError):
    """A line of a JSON-lines input is no row: not UTF-8, not JSON, or beyond what the
    JSON reader takes (nesting deeper than the recursion limit, an integer of more than
    4,300 digits). ``source`` and ``line`` (from 1) say where it is."""

    def __init__(self, message: str, *, flow: str, source: str, line: int) -> None:
        self.source = source
        self.line = line
        super().__init__(message, flow=flow)


class CommitError(RunError, TypeError):
    """``commit_row_batch`` was given something that is not a batch of rows.

    A ``str``, ``bytes`` or a mapping is iterable, but committing it row by row (one row
    per character or key) is never what was meant; KisFlow refuses it too.
    """


class ConnectorError(KisFlowError, ConnectionError):
    """A connector is missing, misconfigured, or cannot reach its store."""

    def __init__(
        self,
        message: str,
        *,
        connector: str | None = None,
        type: str | None = None,
        address: str | None = None,
        retryable: bool = True,
        flow: str | None = None,
        stage: str | None = None,
        attempts: int = 1,
    ) -> None:
        self.connector = connector
        self.type = type
        self.address = address
        self.retryable = retryable
        """Whether trying again may help (an unreachable store); False for a bad row or
        bad params, which the engine does not retry."""
        self.flow = flow
        self.stage = stage
        """The flow and stage whose call failed (None outside a run)."""
        self.attempts = attempts
        """Calls made before giving up (more than 1 after retries)."""
        super().__init__(message)


class PartitionError(RunError):
    """A partition run by an executor (process pool, Dask) failed; chained to the cause.

    ``partition`` is the partition's key (a string), so the caller can rerun it alone.
    """

    def __init__(
        self, message: str, *, flow: str, stage: str | None, partition: str | None
    ) -> None:
        self.partition = partition
        super().__init__(message, flow=flow, stage=stage)


class SourceError(KisFlowError, ConnectionError):
    """A stream source cannot be opened, read, acknowledged or replayed.

    ``source`` names the source (its checkpoint key, e.g. ``jsonl:/data/orders.jsonl``)
    and ``position`` where it was (a JSON-able source position, or None); ``retryable``
    says whether trying again may help (a broker that is down) or not (a bad file).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str,
        position: Any = None,
        flow: str | None = None,
        retryable: bool = False,
    ) -> None:
        self.source = source
        self.position = position
        self.flow = flow
        self.retryable = retryable
        super().__init__(message)


class CheckpointError(KisFlowError, RuntimeError):
    """A stream's checkpoint store cannot be opened, read or committed, or it holds
    something that does not belong to this stream (``path`` is the store's file)."""

    def __init__(self, message: str, *, path: str, flow: str | None = None) -> None:
        self.path = path
        self.flow = flow
        super().__init__(message)


class DeliveryError(ConfigError):
    """A stream asked for a delivery guarantee its source or Save stages cannot give
    (``delivery="exactly-once"`` with a plain iterable, or a user Save that does not join
    the checkpoint); raised before the first row is read, naming what is missing."""


class MissingExtraError(KisFlowError, ImportError):
    """An optional extra is not installed; the message names the pip command that fixes it.

    ``extra`` is the extra (``metrics``, ``redis``, ``sql``, ``dask``), ``name`` the
    module that is missing and ``needed_by`` what asked for it (a connector, metrics).
    """

    def __init__(self, extra: str, module: str, *, needed_by: str | None = None) -> None:
        self.extra = extra
        self.needed_by = needed_by
        missing = f"{module!r} is not installed"
        if needed_by is not None:
            missing = f"{needed_by} needs {module!r}, which is not installed"
        super().__init__(
            f"{missing}; install it with pip install 'kisflow[{extra}]'",
            name=module,
        )
