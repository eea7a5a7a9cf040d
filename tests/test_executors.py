"""Tests for the executors' shared parts: the worker entry point and the windowed loop."""

from __future__ import annotations

import ast
import concurrent.futures
import graphlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kisflow as kf
from kisflow.executors import Partition, PartitionResult, run_partitions
from kisflow.executors._partition import (
    FlowPayload,
    dumps,
    make_partitions,
    run_partition,
    unwrap,
)
from kisflow.executors._scheduler import run_window
from kisflow.options import RunOptions


def rows_of(spec: Any) -> Any:
    """A partition's rows are its description."""
    return spec


def as_partition(flow: kf.Flow, rows: Any, key: str = "p", load: Any = rows_of) -> PartitionResult:
    """Run ``flow`` on ``rows`` through the workers' entry point, in this process."""
    raw = run_partition(
        FlowPayload.of(flow), dumps(load, [load]), Partition(index=3, key=key, spec=rows)
    )
    return unwrap(raw)


class TestWorkerFailures:
    """A worker's error comes back as flow, stage and a message that says it once."""

    def test_stage_error_message_from_its_cause(self) -> None:
        @kf.faas("Boom")
        def boom(flow: kf.Flow, rows: list[int]) -> None:
            raise KeyError("k")

        flow = kf.FlowBuilder("f").calculate("Boom").build()
        with pytest.raises(kf.PartitionError) as info:
            as_partition(flow, [1])
        err = info.value
        assert str(err) == (
            "flow 'f' stage 'Boom' failed on partition 'p' (index 3): raised KeyError: 'k'"
        )
        assert (err.flow, err.stage, err.partition) == ("f", "Boom", "p")
        assert isinstance(err.__cause__, KeyError)
        assert any(
            "remote traceback (StageExecutionError on " in n for n in err.__cause__.__notes__
        )

    def test_retried_stage_error_says_how_often(self) -> None:
        @kf.faas("Flaky")
        def flaky(flow: kf.Flow, rows: list[int]) -> None:
            raise ValueError("no")

        flow = kf.FlowBuilder("f").calculate("Flaky", option=kf.FuncOption(retry_times=1)).build()
        with pytest.raises(kf.PartitionError, match=r"raised ValueError: no \(after 2 attempts\)$"):
            as_partition(flow, [1])

    def test_other_kisflow_errors_keep_their_whole_message(self) -> None:
        @kf.faas("Reject")
        def reject(flow: kf.Flow, rows: list[int]) -> None:
            for row in rows:
                flow.dead_letter(row, "odd")

        flow = kf.FlowBuilder("f").calculate("Reject").build()
        with pytest.raises(kf.PartitionError) as info:
            as_partition(flow, [7])
        message = str(info.value)
        assert message.startswith(
            "flow 'f' stage 'Reject' failed on partition 'p' (index 3): RowRejectedError: "
        )
        assert "rejected row 7: odd" in message
        assert info.value.stage == "Reject"

    def test_an_error_that_does_not_pickle_is_a_private_traceback(self) -> None:
        class Holding(Exception):
            """An error holding what cannot travel (a lock)."""

            def __init__(self) -> None:
                super().__init__("held")
                self.lock = threading.Lock()

        @kf.faas("Hold")
        def hold(flow: kf.Flow, rows: list[int]) -> None:
            raise Holding

        flow = kf.FlowBuilder("f").calculate("Hold").build()
        with pytest.raises(kf.PartitionError, match=r"raised Holding: held$") as info:
            as_partition(flow, [7])
        cause = info.value.__cause__
        assert type(cause).__name__ == "_RemoteTraceback"
        assert "remote traceback (StageExecutionError on " in str(cause)
        assert "Holding: held" in str(cause)
        assert not hasattr(kf.executors, "RemoteTraceback")

    def test_load_error(self) -> None:
        def load(spec: Any) -> list[int]:
            raise OSError("gone")

        @kf.faas("Id")
        def ident(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("f").calculate("Id").build()

        with pytest.raises(kf.PartitionError) as info:
            as_partition(flow, [1], load=load)
        assert str(info.value).endswith("(index 3): load raised OSError: gone")
        assert info.value.stage is None
        assert isinstance(info.value.__cause__, OSError)


@pytest.fixture
def threads() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """Threads standing in for worker processes: the same calls, no start-up."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        yield pool


def _double_flow() -> kf.Flow:
    @kf.faas("Double")
    def double(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(r * 2 for r in rows)

    return kf.FlowBuilder("double").calculate("Double").build()


def _spans(n: int) -> list[tuple[int, int]]:
    return [(i * 10, i * 10 + 10) for i in range(n)]


def _range(span: tuple[int, int]) -> range:
    return range(*span)


class TestSchedulerWindow:
    """The loop the process pool and Dask share: in order, bounded, every error a KisFlowError."""

    def test_results_in_partition_order_whatever_the_finish_order(self, threads: Any) -> None:
        results = run_partitions(
            _double_flow(), _spans(7), load=_range, keep_output=True, executor=threads
        )
        assert [r.partition.index for r in results] == list(range(7))
        assert [x for r in results for x in (r.output or [])] == [i * 2 for i in range(70)]

    def test_at_most_window_partitions_are_submitted_ahead(self) -> None:
        submitted: list[int] = []
        done: list[int] = []

        class Backend:
            def submit(self, partition: Partition) -> concurrent.futures.Future[bytes]:
                submitted.append(partition.index)
                assert len(submitted) - len(done) <= 3
                future: concurrent.futures.Future[bytes] = concurrent.futures.Future()
                future.set_result(_result_bytes(partition))
                return future

            def wait(self, running: Any) -> Any:
                return [next(iter(running))]

            def result(self, future: Any) -> bytes:
                return bytes(future.result())

            def release(self, future: Any) -> None:
                done.append(1)

            def stop(self, running: Any) -> None:
                assert not running

        parts = list(make_partitions(range(10)))
        results = run_window(
            "f", parts, Backend(), 3, on_result=None, on_error=None, progress=False
        )
        assert [r.partition.index for r in results] == list(range(10))
        assert submitted == list(range(10))

    def test_a_failing_callback_is_a_run_error(self, threads: Any) -> None:
        def on_result(result: PartitionResult) -> None:
            raise ValueError("my callback")

        with pytest.raises(kf.RunError, match="flow 'double': on_result raised ValueError"):
            run_partitions(
                _double_flow(), _spans(2), load=_range, executor=threads, on_result=on_result
            )

    def test_a_failing_key_function_is_a_run_error(self, threads: Any) -> None:
        def key(spec: Any) -> str:
            raise LookupError("no key")

        with pytest.raises(kf.RunError, match="reading the partitions raised LookupError"):
            run_partitions(_double_flow(), _spans(2), load=_range, key=key, executor=threads)

    def test_an_unpicklable_load_is_a_config_error(self, threads: Any) -> None:
        lock = threading.Lock()

        def load(span: Any) -> list[Any]:
            with lock:
                return []

        with pytest.raises(kf.ConfigError, match="flow 'double': load cannot be sent"):
            run_partitions(_double_flow(), _spans(2), load=load, executor=threads)

    def test_a_shut_down_executor_is_a_partition_error(self) -> None:
        pool = concurrent.futures.ThreadPoolExecutor(1)
        pool.shutdown()
        with pytest.raises(kf.PartitionError, match="could not submit partition '0'") as info:
            run_partitions(_double_flow(), _spans(2), load=_range, executor=pool)
        assert isinstance(info.value.__cause__, RuntimeError)

    def test_a_shut_down_executor_with_on_error_reports_every_partition(self) -> None:
        pool = concurrent.futures.ThreadPoolExecutor(1)
        pool.shutdown()
        errors: list[kf.PartitionError] = []
        results = run_partitions(
            _double_flow(), _spans(3), load=_range, executor=pool, on_error=errors.append
        )
        assert results == []
        assert [e.partition for e in errors] == ["0", "1", "2"]


def _result_bytes(partition: Partition) -> bytes:
    return dumps(
        PartitionResult(
            partition=partition,
            ended=kf.RunEnd.COMPLETED,
            stopped_at=None,
            rows_in=0,
            rows_out=0,
            output=None,
            duration=0.0,
            worker="here",
        )
    )


def _odd_rejecting_flow() -> kf.Flow:
    """Rejects odd rows to the dead letters and tags the rest with the ctx."""

    @kf.faas("EvenOnly")
    def even_only(ctx: Any, flow: kf.Flow, rows: list[int]) -> None:
        for row in rows:
            if row % 2:
                flow.dead_letter(row, "odd")
            else:
                flow.commit_row(f"{ctx}:{row}")

    return kf.FlowBuilder("evens").calculate("EvenOnly").build()


class TestRunOptions:
    """``options=`` reaches every partition's run; what cannot travel fails up front."""

    def test_ctx_and_jsonl_dead_letters_reach_the_workers(
        self, threads: Any, tmp_path: Any
    ) -> None:
        path = tmp_path / "dead.jsonl"
        options = RunOptions(ctx="opt", dead_letters=str(path))
        results = run_partitions(
            _odd_rejecting_flow(),
            [[0, 1], [2, 3]],
            load=rows_of,
            options=options,
            keep_output=True,
            executor=threads,
        )
        assert [r.output for r in results] == [["opt:0"], ["opt:2"]]
        letters = kf.deadletter.JsonlSink(path).read()
        assert sorted(letter["row"] for letter in letters) == [1, 3]

    def test_ctx_keyword_overrides_the_options(self, threads: Any) -> None:
        results = run_partitions(
            _double_ctx_flow(),
            [[1]],
            load=rows_of,
            ctx="kw",
            options=RunOptions(ctx="opt"),
            keep_output=True,
            executor=threads,
        )
        assert results[0].output == ["kw:1"]

    def test_max_steps_reach_the_workers(self, threads: Any) -> None:
        @kf.faas("Again")
        def again(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)
            flow.next(kf.actions.jump_func("Again"))

        flow = kf.FlowBuilder("loop").calculate("Again").build()
        with pytest.raises(kf.PartitionError, match="step limit of 3") as info:
            run_partitions(
                flow, [[1]], load=rows_of, options=RunOptions(max_steps=3), executor=threads
            )
        assert info.value.stage == "Again"

    def test_a_list_sink_is_refused_before_anything_runs(self, threads: Any) -> None:
        with pytest.raises(kf.ConfigError, match="in-memory list") as info:
            run_partitions(
                _odd_rejecting_flow(),
                [[1]],
                load=_never,
                options=RunOptions(dead_letters=[]),
                executor=threads,
            )
        assert info.value.key == "dead_letters"

    def test_an_unpicklable_sink_is_named_before_anything_runs(self, threads: Any) -> None:
        lock = threading.Lock()

        def keep(letter: Any) -> None:
            with lock:
                pass

        with pytest.raises(kf.ConfigError, match=r"dead_letters CallableSink\('.*keep'\)"):
            run_partitions(
                _odd_rejecting_flow(),
                [[1]],
                load=_never,
                options=RunOptions(dead_letters=keep),
                executor=threads,
            )

    def test_an_unpicklable_ctx_is_named_before_anything_runs(self, threads: Any) -> None:
        with pytest.raises(kf.ConfigError, match="flow 'evens': ctx <unlocked") as info:
            run_partitions(
                _odd_rejecting_flow(),
                [[1]],
                load=_never,
                ctx=threading.Lock(),
                executor=threads,
            )
        assert info.value.key == "ctx"

    def test_options_must_be_run_options(self, threads: Any) -> None:
        with pytest.raises(kf.ConfigError, match=r"options must be a kisflow\.RunOptions"):
            run_partitions(
                _double_flow(), [[1]], load=rows_of, options={"ctx": 1}, executor=threads
            )


def _double_ctx_flow() -> kf.Flow:
    @kf.faas("Tag")
    def tag(ctx: Any, flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(f"{ctx}:{r}" for r in rows)

    return kf.FlowBuilder("tag").calculate("Tag").build()


def _never(spec: Any) -> list[Any]:
    raise AssertionError("no partition should start")


_HEAVY = (
    "kisflow.executors._partition",
    "kisflow.executors._scheduler",
    "kisflow.executors._ship",
    "kisflow.executors.parallel",
    "kisflow.executors.dask",
    "cloudpickle",
    "dask",
    "distributed",
)
"""What only a partition run needs: never loaded by importing kisflow or a stream."""


def _loaded_after(statement: str) -> list[str]:
    """The modules of ``_HEAVY`` a fresh interpreter holds after ``statement``."""
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {_HEAVY!r} if m in sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return proc.stdout.split()


def _imports(path: Path) -> set[str]:
    """Every kisflow module ``path`` imports: top level, in functions, under TYPE_CHECKING.

    ``from a import b`` counts as importing ``a`` and ``a.b`` (kisflow uses no relative
    imports).
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import"
            assert node.module
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.startswith("kisflow")}


EXECUTORS = Path(kf.__file__).parent / "executors"


class TestLayering:
    """The executors load lazily and sit in layers: no cycle, streams below the flow."""

    def test_importing_kisflow_loads_no_partition_machinery(self) -> None:
        # Needs kisflow/__init__.py to leave kisflow.executors and kisflow.dask to its
        # __getattr__ (both are lazy themselves too): an eager import there breaks it.
        assert _loaded_after("import kisflow") == []

    def test_importing_executors_or_a_stream_loads_no_partition_machinery(self) -> None:
        assert _loaded_after("import kisflow.executors") == []
        assert _loaded_after("import kisflow.executors.stream") == []
        assert _loaded_after("from kisflow.executors import Stream, AsyncStream") == []

    def test_public_names_still_resolve(self) -> None:
        for name in kf.executors.__all__:
            assert getattr(kf.executors, name) is not None, name
        assert kf.executors.current_partition() is None
        assert kf.dask.run_partitions is kf.executors.dask.run_partitions
        assert kf.dask.SATURATION_CONFIG == {"distributed.scheduler.worker-saturation": 1.0}
        with pytest.raises(AttributeError):
            kf.executors.RemoteTraceback

    def test_streams_never_import_the_flow(self) -> None:
        imported = _imports(EXECUTORS / "stream.py")
        assert not {m for m in imported if m == "kisflow.flow" or m.startswith("kisflow.flow.")}
        assert "kisflow._run" not in imported

    def test_no_import_cycle_among_the_executors(self) -> None:
        modules = {
            ("kisflow.executors" if p.stem == "__init__" else f"kisflow.executors.{p.stem}"): p
            for p in EXECUTORS.glob("*.py")
        }
        graph = {name: _imports(path) & modules.keys() - {name} for name, path in modules.items()}
        order = list(graphlib.TopologicalSorter(graph).static_order())  # raises on a cycle
        assert set(order) == set(modules)
