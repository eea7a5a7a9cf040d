"""Keyed state: flow.state() per stage, shared by a definition's runs, saved as JSON."""

from __future__ import annotations

import threading
import time
from typing import Any

import attrs
import pytest

import kisflow as kf
from kisflow import state as kstate


@attrs.frozen
class Total:
    count: int
    last: str


def _counting_flow() -> kf.Flow:
    @kf.faas("Count")
    def count(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
        seen = flow.state()
        for r in rows:
            seen[r["user"]] = seen.get(r["user"], 0) + 1
            flow.commit_row({"user": r["user"], "so_far": seen[r["user"]]})

    return kf.FlowBuilder("Counting").calculate("Count").build()


def test_state_lives_as_long_as_the_definition() -> None:
    flow = _counting_flow()
    first = flow.run([{"user": "a"}, {"user": "b"}, {"user": "a"}]).output
    second = flow.run([{"user": "a"}]).output
    assert [r["so_far"] for r in first] == [1, 1, 2]
    assert second == [{"user": "a", "so_far": 3}]
    assert dict(flow.state_store.keyed("0:Count")) == {"a": 3, "b": 1}


def test_a_fork_starts_with_its_own_state() -> None:
    flow = _counting_flow()
    flow.run([{"user": "a"}])
    fork = flow.fork()
    assert fork.run([{"user": "a"}]).output == [{"user": "a", "so_far": 1}]
    assert flow.run([{"user": "a"}]).output == [{"user": "a", "so_far": 2}]


def test_each_stage_has_its_own_state_keyed_by_position_and_name() -> None:
    @kf.faas("Tag")
    def tag(flow: kf.Flow, rows: list[int]) -> None:
        st = flow.state()
        st["calls"] = st.get("calls", 0) + 1
        flow.commit_row_batch(rows)

    flow = kf.FlowBuilder("Two").calculate("Tag").calculate("Tag").build()
    flow.run([1])
    flow.run([2])
    snap = flow.state_store.snapshot()
    assert snap == {"0:Tag": [["calls", 2]], "1:Tag": [["calls", 2]]}


def test_concurrent_runs_lose_no_update() -> None:
    """Read-modify-write with a thread switch in between: only the stage lock saves it."""

    @kf.faas("Slow")
    def slow(flow: kf.Flow, rows: list[int]) -> None:
        st = flow.state()
        for _ in rows:
            current = st.get("n", 0)
            time.sleep(0)  # invite another run's call in between
            st["n"] = current + 1
        flow.commit_row(len(rows))

    flow = kf.FlowBuilder("Racy").calculate("Slow").build()

    def work() -> None:
        for _ in range(40):
            flow.run([1, 2, 3])

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert flow.state_store.keyed("0:Slow")["n"] == 6 * 40 * 3


def test_the_lock_is_released_when_the_call_fails() -> None:
    @kf.faas("Boom")
    def boom(flow: kf.Flow, rows: list[int]) -> None:
        flow.state()["x"] = 1
        raise ValueError("no")

    flow = kf.FlowBuilder("B").calculate("Boom").build()
    with pytest.raises(kf.StageExecutionError):
        flow.run([1])
    part = flow.state_store.keyed("0:Boom")
    assert part.lock.acquire(timeout=1)
    part.lock.release()


def test_state_outside_a_run_is_an_error() -> None:
    flow = _counting_flow()
    with pytest.raises(kf.RunError, match="only valid inside a FaaS"):
        flow.state()


class TestSaving:
    def test_values_round_trip(self) -> None:
        store = kstate.StateStore()
        part = store.keyed("0:S")
        part[("a", 1)] = Total(3, "x")
        part["plain"] = {"n": [1, 2.5, None, True]}
        part[7] = (1, "two")
        part["$odd"] = {"$t": 1, 2: "int key"}
        part["inf"] = float("inf")
        data = store.snapshot()
        other = kstate.StateStore()
        other.restore(data)
        again = other.keyed("0:S")
        assert dict(again) == dict(part)
        assert isinstance(again[("a", 1)], Total)

    def test_a_value_that_cannot_be_saved_names_stage_and_key(self) -> None:
        store = kstate.StateStore()
        store.keyed("3:Acc")["k"] = object()
        with pytest.raises(kstate.StateValueError, match=r"stage '3:Acc': key 'k'"):
            store.snapshot()

    def test_restore_before_first_use_is_kept_until_asked(self) -> None:
        store = kstate.StateStore()
        store.restore({"0:Count": [["a", 5]]})
        assert store.snapshot() == {"0:Count": [["a", 5]]}
        assert store.keyed("0:Count")["a"] == 5


def test_an_async_faas_awaiting_while_holding_state_is_an_error_not_a_deadlock() -> None:
    import asyncio

    @kf.faas("Holds")
    async def holds(flow: kf.Flow, rows: list[int]) -> None:
        st = flow.state()
        st["n"] = st.get("n", 0) + 1
        await asyncio.sleep(0.05)  # another run on this loop asks for the state meanwhile
        flow.commit_row_batch(rows)

    flow = kf.FlowBuilder("AsyncState").calculate("Holds").build()

    async def both() -> list[Any]:
        return await asyncio.gather(flow.arun([1]), flow.arun([2]), return_exceptions=True)

    first, second = asyncio.run(asyncio.wait_for(both(), 5))
    assert isinstance(first, kf.RunResult)
    assert first.output == [1]
    assert isinstance(second, kf.RunError)
    assert "must not await while it holds" in str(second)
    assert flow.state_store.keyed("0:Holds")["n"] == 1
