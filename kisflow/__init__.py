"""kisflow: typed dataflow graphs for business stream computing (KisFlow for Python).

Register business callbacks (FaaS) by function name, chain them into a flow of
Verify/Save/Load/Calculate/Expand stages, and run it on batches of rows::

    import kisflow as kf

    @kf.faas("Double")
    def double(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(r * 2 for r in rows)

    flow = kf.FlowBuilder("demo").calculate("Double").build()
    assert flow.run([1, 2]).output == [2, 4]
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from loguru import logger

from kisflow import (
    actions,
    columnar,
    connectors,  # registers the built-in connector types
    deadletter,
    errors,
    metrics,
    observers,
    pool,
    report,
    runlog,  # the debug mode: logs runs once loguru would emit kisflow's DEBUG records
    tracing,
)
from kisflow._definition import Function
from kisflow.actions import Action
from kisflow.builder import FlowBuilder
from kisflow.columnar import Columns
from kisflow.config import (
    ConnConfig,
    FlowConfig,
    FlowFunctionParam,
    FuncConfig,
    FuncOption,
    GlobalConfig,
    Source,
)
from kisflow.configfile import LoadedConfig, export_config, load_config_dir
from kisflow.connector import Connector
from kisflow.deadletter import DeadLetter
from kisflow.errors import (
    ActionError,
    CheckpointError,
    CommitError,
    ConfigError,
    ConnectorError,
    DeadLetterError,
    DeliveryError,
    DuplicateRegistrationError,
    FaaSSignatureError,
    FlowCycleError,
    FlowDefinitionError,
    FlowLoopError,
    FlowShapeError,
    FlowTypeError,
    FunctionNotFoundError,
    InputLineError,
    KisFlowError,
    MissingExtraError,
    PartitionError,
    PoolError,
    RowConversionError,
    RowRejectedError,
    RunError,
    SourceError,
    StageExecutionError,
)
from kisflow.flow import DEFAULT_MAX_STEPS, Flow
from kisflow.modes import Mode
from kisflow.observers import Observer
from kisflow.options import RunOptions
from kisflow.pool import Pool, caas, caas_init, faas
from kisflow.result import RunEnd, RunResult, StageStats
from kisflow.stage import Stage

if TYPE_CHECKING:
    from kisflow import dashboard, dask, executors, sources
    from kisflow.checkpoint import Checkpoint, current_batch

# A library must not emit logs unless the application asks: `logger.enable("kisflow")`.
logger.disable("kisflow")


def __getattr__(name: str) -> Any:
    """``kisflow.executors``, ``kisflow.dask``, ``kisflow.dashboard``, ``kisflow.sources``
    and the checkpoint store are imported on first use, not with kisflow."""
    if name in ("executors", "dask", "dashboard", "sources"):
        return importlib.import_module(f"kisflow.{name}")
    if name in ("Checkpoint", "current_batch"):
        return getattr(importlib.import_module("kisflow.checkpoint"), name)
    raise AttributeError(f"module 'kisflow' has no attribute {name!r}")


try:
    __version__ = version("kisflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Action",
    "ActionError",
    "Checkpoint",
    "CheckpointError",
    "Columns",
    "CommitError",
    "ConfigError",
    "ConnConfig",
    "Connector",
    "ConnectorError",
    "DEFAULT_MAX_STEPS",
    "DeadLetter",
    "DeadLetterError",
    "DeliveryError",
    "DuplicateRegistrationError",
    "FaaSSignatureError",
    "Flow",
    "FlowBuilder",
    "FlowConfig",
    "FlowCycleError",
    "FlowDefinitionError",
    "FlowFunctionParam",
    "FlowLoopError",
    "FlowShapeError",
    "FlowTypeError",
    "FuncConfig",
    "FuncOption",
    "Function",
    "FunctionNotFoundError",
    "GlobalConfig",
    "InputLineError",
    "KisFlowError",
    "LoadedConfig",
    "MissingExtraError",
    "Mode",
    "Observer",
    "PartitionError",
    "Pool",
    "PoolError",
    "RowConversionError",
    "RowRejectedError",
    "RunEnd",
    "RunError",
    "RunOptions",
    "RunResult",
    "Source",
    "SourceError",
    "Stage",
    "StageExecutionError",
    "StageStats",
    "__version__",
    "actions",
    "caas",
    "caas_init",
    "columnar",
    "connectors",
    "current_batch",
    "dashboard",
    "dask",
    "deadletter",
    "errors",
    "executors",
    "export_config",
    "faas",
    "load_config_dir",
    "metrics",
    "observers",
    "pool",
    "report",
    "runlog",
    "sources",
    "tracing",
]
