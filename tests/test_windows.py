"""Window FaaS: registration checks, what a call sees, late rows, accounting, stream mode."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import kisflow as kf
from kisflow import _context, windows


@attrs.frozen
class Click:
    user: str
    ts: float
    page: str


def _clicks(*spec: tuple[str, float]) -> list[dict[str, Any]]:
    return [{"user": u, "ts": ts, "page": f"p{i}"} for i, (u, ts) in enumerate(spec)]


def _per_minute(grace: float = 5) -> kf.Flow:
    @kf.faas(
        "ClicksPerMinute",
        window=windows.tumbling(60, time="ts", key="user", grace=grace),
        replace=True,
    )
    def per_minute(flow: kf.Flow, rows: list[Click]) -> None:
        w = flow.window()
        flow.commit_row(
            {"user": w.key, "start": w.start, "end": w.end, "pages": [r.page for r in rows]}
        )

    return kf.FlowBuilder("Clicks").calculate("ClicksPerMinute").build()


class TestRun:
    def test_the_issue_example_counts_per_user_and_minute(self) -> None:
        flow = _per_minute()
        rows = _clicks(("a", 10), ("b", 20), ("a", 59.5), ("a", 61), ("b", 200))
        out = flow.run(rows).output
        assert out == [
            {"user": "a", "start": 0, "end": 60, "pages": ["p0", "p2"]},
            {"user": "b", "start": 0, "end": 60, "pages": ["p1"]},
            {"user": "a", "start": 60, "end": 120, "pages": ["p3"]},
            {"user": "b", "start": 180, "end": 240, "pages": ["p4"]},
        ]

    def test_rows_come_in_event_time_order(self) -> None:
        flow = _per_minute(grace=100)
        out = flow.run(_clicks(("a", 30), ("a", 10), ("a", 20))).output
        assert out[0]["pages"] == ["p1", "p2", "p0"]

    def test_a_late_row_is_a_dead_letter_with_reason_late(self) -> None:
        flow = _per_minute(grace=5)
        letters: list[kf.DeadLetter] = []
        # 66 moves the watermark to 61: [0, 60) closes; then 59 is late, 62 is not.
        rows = _clicks(("a", 1), ("a", 66), ("a", 59), ("a", 62))
        result = flow.run(rows, dead_letters=letters)
        assert [(r["start"], r["pages"]) for r in result.output] == [
            (0, ["p0"]),
            (60, ["p3", "p1"]),
        ]
        [letter] = letters
        assert letter.reason == "late"
        assert letter.row == Click("a", 59, "p2")
        assert "window [0, 60) of key 'a' closed (watermark 61)" in letter.error
        [stats] = result.stages
        assert (stats.rows_in, stats.rows_out, stats.dead_letters) == (4, 2, 1)
        assert stats.rows_in == stats.rows_out + stats.filtered + stats.dead_letters

    def test_a_row_behind_the_watermark_whose_window_is_open_is_accepted(self) -> None:
        flow = _per_minute(grace=5)
        rows = _clicks(("a", 64), ("a", 58))  # watermark 59 < end 60
        assert [r["pages"] for r in flow.run(rows).output] == [["p1"], ["p0"]]

    def test_without_a_sink_a_late_row_is_an_error(self) -> None:
        flow = _per_minute(grace=0)
        with pytest.raises(kf.RowRejectedError, match="late: window"):
            flow.run(_clicks(("a", 100), ("a", 1)))

    def test_a_row_without_event_time_is_rejected(self) -> None:
        @kf.faas("Count", window=windows.tumbling(10, time="ts"))
        def count(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
            flow.commit_row(len(rows))

        flow = kf.FlowBuilder("F").calculate("Count").build()
        letters: list[kf.DeadLetter] = []
        out = flow.run([{"ts": 1}, {"x": 2}, {"ts": "soon"}, {"ts": 3}], dead_letters=letters)
        assert out.output == [2]
        assert [(letter.row, letter.reason) for letter in letters] == [
            ({"x": 2}, "rejected"),
            ({"ts": "soon"}, "rejected"),
        ]
        assert "no event time" in letters[0].error
        assert "not a finite number" in letters[1].error

    def test_sliding_and_session_windows(self) -> None:
        @kf.faas("Slide", window=windows.sliding(10, 5, time="ts"))
        def slide(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
            w = flow.window()
            flow.commit_row((w.start, w.end, [r["ts"] for r in rows]))

        @kf.faas("Sess", window=windows.session(5, time="ts", key="k"))
        def sess(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
            w = flow.window()
            flow.commit_row((w.key, w.start, w.end, len(rows), w.kind))

        rows = [{"ts": 1, "k": "a"}, {"ts": 7, "k": "a"}, {"ts": 12, "k": "a"}]
        slid = kf.FlowBuilder("S").calculate("Slide").build().run(rows).output
        assert slid == [(-5, 5, [1]), (0, 10, [1, 7]), (5, 15, [7, 12]), (10, 20, [12])]
        rows = [{"ts": 1, "k": "a"}, {"ts": 2, "k": "b"}, {"ts": 4, "k": "a"}, {"ts": 20, "k": "a"}]
        sessions = kf.FlowBuilder("T").calculate("Sess").build().run(rows).output
        assert sorted(sessions) == [
            ("a", 1, 9, 2, "session"),
            ("a", 20, 25, 1, "session"),
            ("b", 2, 7, 1, "session"),
        ]

    def test_time_and_key_may_be_callables_and_the_key_none(self) -> None:
        @kf.faas(
            "ByParity", window=windows.tumbling(10, time=lambda r: r[0], key=lambda r: r[1] % 2)
        )
        def by_parity(flow: kf.Flow, rows: list[Any]) -> None:
            w = flow.window()
            flow.commit_row((w.key, w.start, [r[1] for r in rows]))

        @kf.faas("All", window=windows.tumbling(10, time=lambda r: r[0]))
        def everything(flow: kf.Flow, rows: list[Any]) -> None:
            flow.commit_row((flow.window().key, len(rows)))

        rows = [(1, 1), (2, 2), (3, 3), (12, 4)]
        out = kf.FlowBuilder("C").calculate("ByParity").build().run(rows).output
        assert out == [(1, 0, [1, 3]), (0, 0, [2]), (0, 10, [4])]
        assert kf.FlowBuilder("N").calculate("All").build().run(rows).output == [
            (None, 3),
            (None, 1),
        ]

    def test_a_generator_and_an_async_window_faas(self) -> None:
        @kf.faas("Gen", window=windows.tumbling(10, time="ts"))
        def gen(flow: kf.Flow, rows: list[dict[str, Any]]) -> Iterator[int]:
            yield flow.window().start
            yield len(rows)

        @kf.faas("Async", window=windows.tumbling(10, time="ts"))
        async def per(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
            flow.commit_row((flow.window().start, len(rows)))

        rows = [{"ts": 1}, {"ts": 2}, {"ts": 15}]
        assert kf.FlowBuilder("G").calculate("Gen").build().run(rows).output == [0, 2, 10, 1]
        out = kf.FlowBuilder("A").calculate("Async").build().run(rows).output
        assert out == [(0, 2), (10, 1)]

    def test_window_outside_a_window_faas_is_an_error(self) -> None:
        @kf.faas("Plain")
        def plain(flow: kf.Flow, rows: list[int]) -> None:
            flow.window()

        flow = kf.FlowBuilder("P").calculate("Plain").build()
        with pytest.raises(kf.RunError, match="registered without window="):
            flow.run([1])


class TestRegistration:
    def test_a_window_faas_must_take_rows(self) -> None:
        with pytest.raises(kf.FaaSSignatureError, match="takes no rows"):

            @kf.faas("NoRows", window=windows.tumbling(1, time="ts"))
            def no_rows(flow: kf.Flow) -> None: ...

    def test_a_field_the_row_type_lacks_is_refused(self) -> None:
        with pytest.raises(kf.FaaSSignatureError, match=r"window time='when'.*fields: page, ts"):

            @kf.faas("BadField", window=windows.tumbling(1, time="when", key="user"))
            def bad(flow: kf.Flow, rows: list[Click]) -> None: ...

    def test_not_a_window_spec(self) -> None:
        with pytest.raises(kf.FaaSSignatureError, match=r"must be a kisflow\.windows spec"):
            kf.faas("X", lambda flow, rows: None, window=60)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("make", "match"),
        [
            (lambda: windows.tumbling(0, time="ts"), "size must be finite and > 0"),
            (lambda: windows.tumbling(float("nan"), time="ts"), "size must be finite"),
            (lambda: windows.tumbling(1, time="ts", grace=-1), "grace must be finite and ≥ 0"),
            (lambda: windows.sliding(5, 10, time="ts"), "every=10 is longer than size=5"),
            (lambda: windows.session(True, time="ts"), "gap must be a number"),
            (lambda: windows.tumbling(1, time=""), "time= must be a field name"),
        ],
    )
    def test_bad_window_arguments(self, make: Any, match: str) -> None:
        with pytest.raises(kf.ConfigError, match=match):
            make()


class TestStreamMode:
    """Inside a stream's batch (``_context.STREAMING``) windows stay open between runs."""

    def test_windows_close_as_event_time_passes_across_batches(self) -> None:
        flow = _per_minute(grace=0)
        token = _context.STREAMING.set(True)
        try:
            first = flow.run(_clicks(("a", 1), ("a", 30)))
            second = flow.run(_clicks(("a", 59), ("a", 61)))
            third = flow.run(_clicks(("a", 125)))
        finally:
            _context.STREAMING.reset(token)
        assert first.output == []  # nothing closed yet: the flow stops with no rows
        assert [(r["start"], r["pages"]) for r in second.output] == [(0, ["p0", "p1", "p0"])]
        assert [(r["start"], r["pages"]) for r in third.output] == [(60, ["p1"])]
        snap = flow.state_store.snapshot()
        [(key, part)] = snap.items()
        assert key == "0:ClicksPerMinute#windows"
        assert part["max_time"] == 125
        assert [w[1:3] for w in part["open"]] == [[120, 180]]

    def test_open_windows_are_restored_from_a_snapshot(self) -> None:
        flow = _per_minute(grace=0)
        token = _context.STREAMING.set(True)
        try:
            flow.run(_clicks(("a", 1), ("b", 2)))
            saved = flow.state_store.snapshot()
            other = _per_minute(grace=0).fork()
            other.state_store.restore(saved)
            out = other.run(_clicks(("a", 100))).output
        finally:
            _context.STREAMING.reset(token)
        assert sorted((r["user"], r["pages"]) for r in out) == [("a", ["p0"]), ("b", ["p1"])]
        assert all(isinstance(r["pages"], list) for r in out)

    def test_a_failed_call_leaves_the_windows_refusing_until_restored(self) -> None:
        calls: list[int] = []

        @kf.faas("Fail", window=windows.tumbling(10, time="ts"))
        def fail(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
            calls.append(len(rows))
            raise ValueError("sink down")

        flow = kf.FlowBuilder("F").calculate("Fail").build()
        token = _context.STREAMING.set(True)
        try:
            flow.run([{"ts": 1}])
            with pytest.raises(kf.StageExecutionError, match="sink down"):
                flow.run([{"ts": 20}])
            with pytest.raises(kf.StageExecutionError, match="resume the stream from its"):
                flow.run([{"ts": 30}])
        finally:
            _context.STREAMING.reset(token)
        assert calls == [1]
