"""The public API: ``kisflow.__all__`` is pinned, sorted and importable."""

from __future__ import annotations

import kisflow

EXPECTED = {
    "DEFAULT_MAX_STEPS",
    "DeadLetter",
    "DeadLetterError",
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
    "InputLineError",
    "GlobalConfig",
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
    "Stage",
    "SourceError",
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
}


class TestPublicApi:
    """Adding or removing a public name is a deliberate act: update EXPECTED too."""

    def test_all_is_pinned(self) -> None:
        assert set(kisflow.__all__) == EXPECTED

    def test_all_is_sorted_and_unique(self) -> None:
        assert kisflow.__all__ == sorted(set(kisflow.__all__))

    def test_every_name_exists(self) -> None:
        missing = [name for name in kisflow.__all__ if not hasattr(kisflow, name)]
        assert missing == []

    def test_every_error_is_a_kisflow_error(self) -> None:
        errors = [getattr(kisflow.errors, n) for n in kisflow.errors.__all__]
        assert all(issubclass(e, kisflow.KisFlowError) for e in errors)
        assert len(errors) >= 15

    def test_version_comes_from_the_package_metadata(self) -> None:
        assert kisflow.__version__ == "0.1.0"

    def test_py_typed_ships(self) -> None:
        from importlib.resources import files

        assert files("kisflow").joinpath("py.typed").is_file()

    def test_the_dashboard_page_ships(self) -> None:
        from importlib.resources import files

        static = files("kisflow.dashboard").joinpath("static")
        for name in ("index.html", "dashboard.css", "dashboard.js"):
            assert static.joinpath(name).is_file()


class TestExecutorsApi:
    """``kisflow.executors`` and ``kisflow.dask`` export what the docs use."""

    def test_executors_all(self) -> None:
        assert kisflow.executors.__all__ == [
            "DEFAULT_BATCH_SIZE",
            "AsyncStream",
            "FlowPayload",
            "Partition",
            "PartitionResult",
            "Stream",
            "StreamSummary",
            "current_partition",
            "process_pool",
            "run_async",
            "run_jsonl_stream",
            "run_partitions",
            "running_partition",
        ]

    def test_dask_all(self) -> None:
        assert kisflow.dask.__all__ == [
            "Partition",
            "PartitionResult",
            "current_partition",
            "run_partitions",
        ]
