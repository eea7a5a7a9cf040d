"""OpenTelemetry tracing (``kisflow.tracing``): spans per run and stage call, checked with
the SDK's in-memory exporter, parents from W3C ``traceparent`` headers, and off again."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import kisflow as kf
from kisflow import tracing
from kisflow.sources import Chunk, Source
from tests.demoflow import demo_builder

ROOT = Path(__file__).resolve().parent.parent

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01"


class Traced:
    """A provider whose finished spans are kept in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> list[ReadableSpan]:
        return sorted(self.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith(prefix)]


@pytest.fixture
def traced() -> Iterator[Traced]:
    """Tracing on, into an in-memory exporter, for one test."""
    t = Traced()
    tracing.enable(t.provider)
    try:
        yield t
    finally:
        tracing.disable()
        t.provider.shutdown()


def _flow() -> kf.Flow:
    return demo_builder().build()


def _stage_figures(span: ReadableSpan) -> tuple[Any, ...]:
    a = span.attributes or {}
    keys = ("kisflow.flow", "kisflow.stage", "kisflow.mode", "kisflow.position")
    keys += ("kisflow.rows_in", "kisflow.rows_out", "kisflow.rows_filtered")
    keys += ("kisflow.dead_letters", "kisflow.attempts")
    return tuple(a.get(k) for k in keys)


class TestSpans:
    """A run is a span; each stage call is a child span carrying its figures."""

    def test_a_run_span_with_a_child_per_stage_call(self, traced: Traced) -> None:
        _flow().run(list(range(10)))
        spans = traced.spans()
        assert [s.name for s in spans] == ["run demo", "stage Keep", "stage Double"]
        run, keep, double = spans
        assert run.parent is None
        assert keep.parent is not None
        assert double.parent is not None
        assert keep.parent.span_id == run.context.span_id
        assert double.parent.span_id == run.context.span_id
        assert {s.context.trace_id for s in spans} == {run.context.trace_id}
        assert _stage_figures(keep) == ("demo", "Keep", "Verify", 0, 10, 5, 5, 0, 1)
        assert _stage_figures(double) == ("demo", "Double", "Calculate", 1, 5, 5, 0, 0, 1)
        attrs = run.attributes or {}
        assert attrs["kisflow.flow"] == "demo"
        assert (attrs["kisflow.rows_in"], attrs["kisflow.rows_out"]) == (10, 5)
        assert (attrs["kisflow.ended"], attrs["kisflow.steps"]) == ("completed", 2)
        assert all(s.status.status_code is StatusCode.UNSET for s in spans)

    def test_each_run_is_its_own_trace(self, traced: Traced) -> None:
        flow = _flow()
        flow.run([2])
        flow.run([4])
        runs = traced.named("run ")
        assert len(runs) == 2
        assert runs[0].context.trace_id != runs[1].context.trace_id
        assert len(traced.named("stage ")) == 4

    def test_a_stopped_run_says_where(self, traced: Traced) -> None:
        _flow().run([1, 3])
        run = traced.named("run ")[0]
        assert (run.attributes or {})["kisflow.ended"] == "no_rows"
        assert (run.attributes or {})["kisflow.stopped_at"] == "Keep"
        assert [s.name for s in traced.named("stage ")] == ["stage Keep"]

    def test_dead_letters_are_counted_on_the_stage_span(self, traced: Traced) -> None:
        @kf.faas("Pick")
        def pick(flow: kf.Flow, rows: list[int]) -> None:
            for row in rows:
                if row < 0:
                    flow.dead_letter(row, "negative")
                else:
                    flow.commit_row(row)

        letters: list[kf.DeadLetter] = []
        flow = kf.FlowBuilder("dl").verify("Pick").build().set_dead_letters(letters)
        flow.run([1, -1, -2, 3])
        [stage] = traced.named("stage ")
        assert _stage_figures(stage) == ("dl", "Pick", "Verify", 0, 4, 2, 0, 2, 1)
        assert len(letters) == 2

    def test_spans_a_faas_starts_are_children_of_its_stage(self, traced: Traced) -> None:
        tracer = traced.provider.get_tracer("app")

        @kf.faas("Work")
        def work(flow: kf.Flow, rows: list[int]) -> None:
            with tracer.start_as_current_span("inside"):
                flow.commit_row_batch(rows)

        kf.FlowBuilder("nest").calculate("Work").build().run([1])
        inside = traced.named("inside")[0]
        stage = traced.named("stage ")[0]
        assert inside.parent is not None
        assert inside.parent.span_id == stage.context.span_id
        assert trace.get_current_span() is trace.INVALID_SPAN  # detached after the stage

    def test_async_runs_are_traced(self, traced: Traced) -> None:
        @kf.faas("Slow")
        async def slow(flow: kf.Flow, rows: list[int]) -> None:
            await asyncio.sleep(0)
            flow.commit_row_batch(rows)

        tracer = traced.provider.get_tracer("app")

        @kf.faas("InThread")
        def in_thread(flow: kf.Flow, rows: list[int]) -> None:
            with tracer.start_as_current_span("sync work"):  # runs in a worker thread
                flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("aio").calculate("Slow").calculate("InThread").build()
        assert asyncio.run(flow.arun([1, 2])).output == [1, 2]
        run, awaited, thread, work = traced.spans()
        assert (run.name, awaited.name, thread.name) == ("run aio", "stage Slow", "stage InThread")
        assert awaited.parent is not None
        assert awaited.parent.span_id == run.context.span_id
        assert work.parent is not None
        assert work.parent.span_id == thread.context.span_id

    def test_a_stream_has_a_span_per_batch(self, traced: Traced) -> None:
        kf.faas("Pass", lambda flow: flow.commit_row_batch(flow.input()))
        flow = kf.FlowBuilder("s").calculate("Pass").build()
        assert len(list(flow.stream(range(10), batch_size=4, progress=False))) == 3
        runs = traced.named("run ")
        assert [(r.attributes or {})["kisflow.rows_in"] for r in runs] == [4, 4, 2]
        stages = traced.named("stage ")
        assert [s.parent.span_id for s in stages if s.parent] == [r.context.span_id for r in runs]


class TestErrors:
    """Failed calls are events; the error that ends a run sets ERROR on stage and run."""

    def test_the_error_is_on_the_stage_and_the_run(self, traced: Traced) -> None:
        @kf.faas("Boom")
        def boom(flow: kf.Flow, rows: list[int]) -> None:
            raise ValueError("bad row")

        with pytest.raises(kf.StageExecutionError):
            kf.FlowBuilder("bad").calculate("Boom").build().run([1])
        run, stage = traced.spans()
        assert stage.status.status_code is StatusCode.ERROR
        assert stage.status.description == (
            "StageExecutionError: flow 'bad' stage 'Boom' raised ValueError: bad row"
        )
        [event] = stage.events
        assert event.name == "exception"
        attrs = event.attributes or {}
        assert (attrs["exception.type"], attrs["exception.message"]) == ("ValueError", "bad row")
        assert attrs["kisflow.attempt"] == 1
        assert run.status.status_code is StatusCode.ERROR
        assert [(e.attributes or {})["exception.type"] for e in run.events] == [
            "kisflow.errors.StageExecutionError"
        ]
        assert "kisflow.ended" not in (run.attributes or {})

    def test_retries_are_events_and_the_attempts_an_attribute(self, traced: Traced) -> None:
        calls: list[int] = []

        @kf.faas("Flaky")
        def flaky(flow: kf.Flow, rows: list[int]) -> None:
            calls.append(1)
            if len(calls) < 3:
                raise ConnectionError(f"try {len(calls)}")
            flow.commit_row_batch(rows)

        option = kf.FuncOption(retry_times=2, return_duration=0)
        kf.FlowBuilder("retry").calculate("Flaky", option=option).build().run([7])
        run, stage = traced.spans()
        assert [(e.name, (e.attributes or {}).get("kisflow.attempt")) for e in stage.events] == [
            ("exception", 1),
            ("retry", 2),
            ("exception", 2),
            ("retry", 3),
        ]
        assert _stage_figures(stage)[-1] == 3
        assert stage.status.status_code is StatusCode.UNSET
        assert run.status.status_code is StatusCode.UNSET

    def test_an_error_before_the_call_closes_the_stage_span(self, traced: Traced) -> None:
        @kf.faas("Typed")
        def typed(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        with pytest.raises(kf.RowConversionError):
            kf.FlowBuilder("conv").calculate("Typed").build().run(["not a number"])
        run, stage = traced.spans()
        assert stage.status.status_code is StatusCode.ERROR
        assert (stage.status.description or "").startswith("RowConversionError: ")
        assert run.status.status_code is StatusCode.ERROR
        assert stage.end_time is not None
        assert run.end_time is not None


class TestParentFromHeaders:
    """A W3C traceparent in a message's headers becomes the parent of the run's span."""

    def _run(self, traced: Traced, headers: Any) -> ReadableSpan:
        flow = _flow()
        with tracing.parent_from_headers(headers):
            flow.run([2])
        return traced.named("run ")[-1]

    def _is_child_of_the_message(self, run: ReadableSpan) -> None:
        assert run.parent is not None
        assert (run.parent.trace_id, run.parent.span_id) == (TRACE_ID, SPAN_ID)
        assert run.parent.is_remote
        assert run.context.trace_id == TRACE_ID

    def test_one_message_headers(self, traced: Traced) -> None:
        self._is_child_of_the_message(self._run(traced, {"traceparent": TRACEPARENT}))
        stage = traced.named("stage ")[0]
        assert stage.context.trace_id == TRACE_ID

    def test_bytes_and_kafka_pairs(self, traced: Traced) -> None:
        run = self._run(traced, [(b"TraceParent", TRACEPARENT.encode()), ("other", b"x")])
        self._is_child_of_the_message(run)
        assert run.parent is not None
        assert run.parent.span_id == SPAN_ID

    def test_a_batch_one_mapping_per_row(self, traced: Traced) -> None:
        other = f"00-{0x1234:032x}-{0x99:016x}-01"
        headers = [None, {}, {"traceparent": TRACEPARENT}, {"traceparent": other}]
        run = self._run(traced, headers)
        self._is_child_of_the_message(run)
        assert [(link.context.trace_id, link.context.span_id) for link in run.links] == [
            (0x1234, 0x99)
        ]

    def test_tracestate_is_kept(self, traced: Traced) -> None:
        run = self._run(traced, {"traceparent": TRACEPARENT, "tracestate": "vendor=1"})
        assert run.context.trace_state.get("vendor") == "1"

    @pytest.mark.parametrize(
        "headers",
        [
            {"traceparent": "00-zz-yy-01"},
            {"traceparent": f"00-{0:032x}-{SPAN_ID:016x}-01"},
            {"other": TRACEPARENT},
            [None, None],
            None,
            [],
            ["not headers"],
        ],
    )
    def test_no_valid_traceparent_means_a_root_span(self, traced: Traced, headers: Any) -> None:
        run = self._run(traced, headers)
        assert run.parent is None
        assert run.context.trace_id != TRACE_ID

    def test_the_parent_lasts_only_for_the_block(self, traced: Traced) -> None:
        flow = _flow()
        with tracing.parent_from_headers({"traceparent": TRACEPARENT}):
            flow.run([2])
        flow.run([2])
        first, second = traced.named("run ")
        assert first.parent is not None
        assert second.parent is None
        assert trace.get_current_span() is trace.INVALID_SPAN


class TestOnOff:
    """Off, runs make no spans and parent_from_headers does nothing."""

    def test_disable_stops_the_spans(self) -> None:
        t = Traced()
        flow = _flow()
        tracing.enable(t.provider)
        assert tracing.enabled()
        flow.run([2])
        tracing.disable()
        assert not tracing.enabled()
        assert kf.observers.active() == ()
        flow.run([2])
        with tracing.parent_from_headers({"traceparent": TRACEPARENT}):
            assert trace.get_current_span() is trace.INVALID_SPAN
            flow.run([2])
        assert [s.name for s in t.spans()] == ["run demo", "stage Keep", "stage Double"]
        tracing.disable()  # again: nothing happens

    def test_enable_again_replaces_the_provider(self) -> None:
        first, second = Traced(), Traced()
        try:
            tracing.enable(first.provider)
            tracing.enable(second.provider)
            assert len(kf.observers.active()) == 1
            _flow().run([2])
        finally:
            tracing.disable()
        assert first.spans() == []
        assert len(second.spans()) == 3


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


class TestProcess:
    """The global provider, and kisflow without the extra (fresh interpreters)."""

    def test_the_global_provider_by_default(self) -> None:
        done = _python(
            """
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )
            import kisflow as kf
            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            kf.tracing.enable()
            trace.set_tracer_provider(provider)  # looked up as each span starts
            kf.faas("P", lambda flow: flow.commit_row_batch(flow.input()))
            kf.FlowBuilder("g").calculate("P").build().run([1])
            print(sorted(s.name for s in exporter.get_finished_spans()))
            """
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "['run g', 'stage P']"

    def test_without_the_extra(self) -> None:
        done = _python(
            """
            import sys
            sys.modules["opentelemetry"] = None
            import kisflow as kf
            print(kf.tracing.parent_from_headers({"traceparent": "x"}) is not None)
            try:
                kf.tracing.enable()
            except kf.MissingExtraError as exc:
                print(exc.extra, exc)
            print(kf.tracing.enabled())
            """
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "True",
            "otel kisflow.tracing needs 'opentelemetry', which is not installed; install it "
            "with pip install 'kisflow[otel]'",
            "False",
        ]

    def test_importing_kisflow_imports_no_opentelemetry(self) -> None:
        done = _python(
            """
            import sys
            import kisflow as kf
            kf.tracing.disable()
            with kf.tracing.parent_from_headers([{"traceparent": "x"}]):
                pass
            print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
            """
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[]"


class Headed(Source):
    """A source whose every chunk carries one headers mapping per row."""

    durable = False

    def __init__(self, chunks: list[tuple[list[int], list[dict[str, Any] | None]]]) -> None:
        self._chunks = list(chunks)
        self._read = 0

    @property
    def key(self) -> str:
        return "test:headed"

    def open(self, position: Any | None) -> None:
        return None

    def read(self, max_rows: int, timeout: float) -> Chunk | None:
        if not self._chunks:
            return None
        rows, headers = self._chunks.pop(0)
        span = [self._read, len(rows)]
        self._read += len(rows)
        return Chunk(rows, span, headers=headers)

    def reread(self, span: Any) -> Chunk:
        raise AssertionError("not replayed")

    def position(self, span: Any) -> Any:
        return span[0] + span[1]


def _parent(trace_id: int, span_id: int) -> dict[str, Any]:
    return {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-01"}


class TestStreamHeaders:
    """A stream's batch whose source rows carry a traceparent is a child of that trace."""

    CHUNKS: ClassVar = [
        ([1, 2], [_parent(0xA1, 0xB1), _parent(0xA9, 0xB9)]),
        ([3, 4], [None, None]),
        ([5, 6], [None, _parent(0xA3, 0xB3)]),
    ]

    def _check(self, traced: Traced) -> None:
        runs = traced.named("run ")
        assert len(runs) == 3
        run_ids = {run.context.span_id for run in runs}
        assert [s.parent.span_id in run_ids for s in traced.named("stage ") if s.parent] == [
            True
        ] * 3
        parents = sorted(
            (run.parent.trace_id, run.parent.span_id) for run in runs if run.parent is not None
        )
        assert parents == [(0xA1, 0xB1), (0xA3, 0xB3)]
        linked = [[(k.context.trace_id, k.context.span_id) for k in r.links] for r in runs]
        assert sorted(linked) == [[], [], [(0xA9, 0xB9)]]

    def test_a_sync_stream(self, traced: Traced) -> None:
        kf.faas("Pass", lambda flow: flow.commit_row_batch(flow.input()))
        flow = kf.FlowBuilder("headed").calculate("Pass").build()
        results = list(flow.stream(Headed(self.CHUNKS), batch_size=2, progress=False))
        assert [r.output for r in results] == [[1, 2], [3, 4], [5, 6]]
        self._check(traced)

    def test_batches_on_threads(self, traced: Traced) -> None:
        kf.faas("Pass", lambda flow: flow.commit_row_batch(flow.input()))
        flow = kf.FlowBuilder("headed").calculate("Pass").build()
        stream = flow.stream(Headed(self.CHUNKS), batch_size=2, max_in_flight=2, progress=False)
        assert sorted(len(r.output) for r in stream) == [2, 2, 2]
        self._check(traced)

    def test_an_async_stream(self, traced: Traced) -> None:
        kf.faas("Pass", lambda flow: flow.commit_row_batch(flow.input()))
        flow = kf.FlowBuilder("headed").calculate("Pass").build()

        async def main() -> list[int]:
            stream = flow.astream(Headed(self.CHUNKS), batch_size=2, max_in_flight=2)
            return [len(r.output) async for r in stream]

        assert asyncio.run(main()) == [2, 2, 2]
        self._check(traced)


class TestRedisStreams:
    """A traceparent field of a Redis Streams entry parents the run of its batch."""

    def test_the_entry_traceparent_is_the_parent(self, traced: Traced, tmp_path: Path) -> None:
        import redis

        from kisflow import sources
        from tests.redisserver import redis_server

        (tmp_path / "redis").mkdir()
        with redis_server(tmp_path / "redis") as port:
            client = redis.Redis(port=port, decode_responses=True)
            client.xadd("orders", {"data": '{"id": 1}', "traceparent": TRACEPARENT})
            client.xadd("orders", {"data": '{"id": 2}'})
            client.close()
            src = sources.redis_stream(
                f"redis://127.0.0.1:{port}/0", stream="orders", group="g", consumer="w1"
            )
            kf.faas("Pass", lambda flow: flow.commit_row_batch(flow.input()))
            flow = kf.FlowBuilder("orders").calculate("Pass").build()
            stream = flow.stream(
                src,
                batch_size=10,
                checkpoint=str(tmp_path / "orders.ckpt.db"),
                idle_timeout=0.5,
                progress=False,
            )
            outputs = [r.output for r in stream]
        assert outputs == [[{"id": 1}, {"id": 2}]]
        [run] = traced.named("run ")
        assert run.parent is not None
        assert (run.parent.trace_id, run.parent.span_id) == (TRACE_ID, SPAN_ID)
        [stage] = traced.named("stage ")
        assert stage.context.trace_id == TRACE_ID
