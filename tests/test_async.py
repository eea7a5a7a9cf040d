"""Tests for the async driver: ``await flow.arun(rows)`` and mixed sync/async stages."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

import kisflow as kf
from kisflow.config import FlowConfig


def _mixed_flow() -> kf.Flow:
    @kf.faas("AddOne")
    def add_one(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(r + 1 for r in rows)

    @kf.faas("AsyncDouble")
    async def async_double(flow: kf.Flow, rows: list[int]) -> None:
        await asyncio.sleep(0)
        flow.commit_row_batch(r * 2 for r in rows)

    @kf.faas("GenSquare")
    def gen_square(flow: kf.Flow, rows: list[int]) -> Iterator[int]:
        for r in rows:
            yield r * r

    @kf.faas("AsyncGenNeg")
    async def async_gen_neg(flow: kf.Flow, rows: list[int]) -> AsyncIterator[int]:
        for r in rows:
            await asyncio.sleep(0)
            yield -r

    return (
        kf.FlowBuilder("mixed")
        .calculate("AddOne")
        .calculate("AsyncDouble")
        .calculate("GenSquare")
        .calculate("AsyncGenNeg")
        .build()
    )


class TestArun:
    """``arun`` gives the same result as ``run`` for every kind of stage."""

    def test_mixed_stages_give_the_sync_result(self) -> None:
        flow = _mixed_flow()
        result = asyncio.run(flow.arun([1, 2, 3]))
        assert result.output == [-16, -36, -64]
        assert result.ended is kf.RunEnd.COMPLETED
        assert [s.rows_out for s in result.stages] == [3, 3, 3, 3]
        assert flow.run([1, 2, 3]).output == result.output

    def test_blocking_sync_stage_runs_off_the_loop_thread(self) -> None:
        released = threading.Event()
        seen: dict[str, object] = {}

        @kf.faas("Blocks", blocking=True)
        def blocks(flow: kf.Flow, rows: list[int]) -> None:
            seen["thread"] = threading.get_ident()
            # Waits for the loop to set the event: would time out if it blocked the loop.
            seen["released"] = released.wait(timeout=10)
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("blocking").calculate("Blocks").build()

        async def main() -> kf.RunResult:
            task = asyncio.create_task(flow.arun([7]))
            await asyncio.sleep(0.05)
            released.set()
            seen["loop"] = threading.get_ident()
            return await task

        result = asyncio.run(main())
        assert result.output == [7]
        assert seen["released"] is True
        assert seen["thread"] != seen["loop"]

    def test_blocking_sync_generator_runs_off_the_loop_thread(self) -> None:
        seen: list[int] = []

        @kf.faas("Yields", blocking=True)
        def yields(flow: kf.Flow, rows: list[int]) -> Iterator[int]:
            seen.append(threading.get_ident())
            yield from (r * 2 for r in rows)

        flow = kf.FlowBuilder("blocking-gen").calculate("Yields").build()

        async def main() -> tuple[kf.RunResult, int]:
            return await flow.arun([1, 2]), threading.get_ident()

        result, loop_thread = asyncio.run(main())
        assert result.output == [2, 4]
        assert len(seen) == 1
        assert seen[0] != loop_thread

    def test_ordinary_sync_stages_run_on_the_loop(self) -> None:
        seen: list[tuple[str, int]] = []

        @kf.faas("Plain")
        def plain(flow: kf.Flow, rows: list[int]) -> None:
            seen.append(("plain", threading.get_ident()))
            flow.commit_row_batch(r + 1 for r in rows)

        @kf.faas("Gen")
        def gen(flow: kf.Flow, rows: list[int]) -> Iterator[int]:
            seen.append(("gen", threading.get_ident()))
            yield from (r * 10 for r in rows)

        flow = kf.FlowBuilder("inline").calculate("Plain").calculate("Gen").build()

        async def main() -> tuple[kf.RunResult, int]:
            return await flow.arun([1, 2]), threading.get_ident()

        result, loop_thread = asyncio.run(main())
        assert result.output == [20, 30]
        assert seen == [("plain", loop_thread), ("gen", loop_thread)]

    def test_blocking_is_refused_for_async_faas(self) -> None:
        async def lookup(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        with pytest.raises(kf.FaaSSignatureError, match="blocking=True is for sync functions"):
            kf.faas("Lookup", lookup, blocking=True)
        assert kf.pool.get_faas("Lookup") is None

    def test_ctx_reaches_async_stages(self) -> None:
        @kf.faas("Tag")
        async def tag(ctx: str, flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(f"{ctx}:{r}" for r in rows)

        flow = kf.FlowBuilder("ctx").calculate("Tag").build()
        assert asyncio.run(flow.arun([1, 2], ctx="t")).output == ["t:1", "t:2"]

    def test_disabled_flow_runs_nothing(self) -> None:
        @kf.faas("Never")
        async def never(flow: kf.Flow, rows: list[int]) -> None:
            raise AssertionError("must not run")

        flow = kf.Flow(FlowConfig(flow_name="off", status=0))
        flow.link(kf.FuncConfig(fname="Never", fmode="Calculate"))
        result = asyncio.run(flow.arun([1]))
        assert result.ended is kf.RunEnd.DISABLED
        assert result.output == []


class TestArunErrors:
    """Errors from async and sync stages reach the awaiting caller as kisflow errors."""

    def test_async_stage_error_names_flow_and_stage(self) -> None:
        @kf.faas("Boom")
        async def boom(flow: kf.Flow, rows: list[int]) -> None:
            raise ValueError("bad row")

        flow = kf.FlowBuilder("errs").calculate("Boom").build()
        with pytest.raises(kf.StageExecutionError, match="flow 'errs' stage 'Boom' raised") as info:
            asyncio.run(flow.arun([1]))
        assert info.value.flow == "errs"
        assert info.value.stage == "Boom"
        assert isinstance(info.value.__cause__, ValueError)

    def test_sync_stage_error_in_thread_is_chained(self) -> None:
        @kf.faas("SyncBoom")
        def sync_boom(flow: kf.Flow, rows: list[int]) -> None:
            raise KeyError("k")

        flow = kf.FlowBuilder("errs2").calculate("SyncBoom").build()
        with pytest.raises(kf.StageExecutionError) as info:
            asyncio.run(flow.arun([1]))
        assert isinstance(info.value.__cause__, KeyError)

    def test_row_conversion_error_gets_a_note(self) -> None:
        @kf.faas("Ints")
        async def ints(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("conv").calculate("Ints").build()
        with pytest.raises(kf.RowConversionError) as info:
            asyncio.run(flow.arun(["not an int"]))
        assert info.value.row_index == 0


class TestConcurrency:
    """Many flows run concurrently on one loop."""

    def test_hundred_concurrent_runs_take_about_one_sleep(self) -> None:
        nap = 0.2

        @kf.faas("Nap")
        async def nap_stage(flow: kf.Flow, rows: list[int]) -> None:
            await asyncio.sleep(nap)
            flow.commit_row_batch(r + 1 for r in rows)

        @kf.faas("Plus")
        def plus(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(r * 10 for r in rows)

        flow = kf.FlowBuilder("many").calculate("Nap").calculate("Plus").build()

        async def main() -> tuple[list[kf.RunResult], float]:
            started = time.perf_counter()
            results = await asyncio.gather(*(flow.arun([i]) for i in range(100)))
            return list(results), time.perf_counter() - started

        results, elapsed = asyncio.run(main())
        assert [r.output for r in results] == [[(i + 1) * 10] for i in range(100)]
        # One hundred sequential runs would take 100 naps (20 s); concurrent ones ~1 nap.
        assert elapsed < 10 * nap


class TestArunReliability:
    """Retries and dead letters work under arun as under run (the drivers share Run)."""

    def test_retries_without_duplicates_then_succeeds(self) -> None:
        attempts: list[int] = []

        @kf.faas("Flaky")
        async def flaky(flow: kf.Flow, rows: list[int]) -> None:
            attempts.append(1)
            flow.commit_row_batch(rows)
            if len(attempts) < 3:
                raise OSError("store hiccup")

        option = kf.FuncOption(retry_times=2, return_duration=1)
        flow = kf.FlowBuilder("retry").save("Flaky", option=option).build()
        result = asyncio.run(flow.arun([1, 2]))
        assert result.output == [1, 2]
        assert len(attempts) == 3
        assert result.stage("Flaky").retries == 2

    def test_gives_up_after_the_last_attempt(self) -> None:
        @kf.faas("Down")
        def down(flow: kf.Flow, rows: list[int]) -> None:
            raise OSError("still down")

        flow = kf.FlowBuilder("down").save("Down", option=kf.FuncOption(retry_times=1)).build()
        with pytest.raises(kf.StageExecutionError, match=r"\(after 2 attempts\)") as info:
            asyncio.run(flow.arun([1]))
        assert info.value.attempts == 2

    def test_unconvertible_rows_go_to_the_dead_letter_sink(self) -> None:
        @kf.faas("Ints")
        async def ints(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("dl").calculate("Ints").build()
        sink: list[kf.DeadLetter] = []
        result = asyncio.run(flow.arun([1, "x", 3], dead_letters=sink))
        assert result.output == [1, 3]
        assert [(d.row_index, d.row) for d in sink] == [(1, "x")]
        assert result.dead_letters == 1
