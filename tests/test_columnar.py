"""Columnar stages: a FaaS taking a Polars DataFrame, in a flow of row stages."""

from __future__ import annotations

import json
from typing import Annotated, Any

import attrs
import polars as pl
import pytest

import kisflow as kf
from kisflow import columnar
from kisflow.columnar import REASON, Columns
from kisflow.observers import StageCall


@attrs.define
class Score:
    stu_id: int
    score: int


@attrs.define
class Avg:
    stu_id: int
    avg_score: float


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"stu_id": i, "score": i % 100} for i in range(n)]


class Recorder:
    """What each stage's FaaS was handed, by stage name."""

    def __init__(self) -> None:
        self.got: dict[str, Any] = {}
        self.committed: dict[str, Any] = {}


def _columnar_chain() -> tuple[kf.Pool, Recorder]:
    """A new pool with three columnar stages, Keep (drops score < 10), Double and Tag, and
    the Recorder they fill."""
    pool = kf.Pool()
    rec = Recorder()

    def keep(flow: kf.Flow, rows: pl.DataFrame) -> None:
        rec.got["Keep"] = rows
        out = rows.filter(pl.col("score") >= 10)
        rec.committed["Keep"] = out
        flow.commit_row_batch(out)

    def double(flow: kf.Flow, rows: pl.DataFrame) -> None:
        rec.got["Double"] = rows
        out = rows.with_columns((pl.col("score") * 2).alias("score"))
        rec.committed["Double"] = out
        flow.commit_row_batch(out)

    def tag(flow: kf.Flow, rows: pl.DataFrame) -> None:
        rec.got["Tag"] = rows
        out = rows.with_columns(pl.lit("x").alias("tag"))
        rec.committed["Tag"] = out
        flow.commit_row_batch(out)

    pool.faas("Keep", keep)
    pool.faas("Double", double)
    pool.faas("Tag", tag)
    return pool, rec


class _Counting:
    """Counts the conversions in both directions (wrapping kisflow.columnar's own)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.to_frame = 0
        self.to_rows = 0
        frame_of, rows_of = columnar.frame_of, columnar.rows_of

        def counted_frame_of(rows: Any, columns: Any = None) -> Any:
            self.to_frame += 1
            return frame_of(rows, columns)

        def counted_rows_of(frame: Any) -> list[Any]:
            self.to_rows += 1
            return rows_of(frame)

        monkeypatch.setattr(columnar, "frame_of", counted_frame_of)
        monkeypatch.setattr(columnar, "rows_of", counted_rows_of)


class TestConversion:
    """Rows become a DataFrame on entry to a columnar stage, and rows again after it."""

    def test_dicts_records_and_json_become_one_frame(self) -> None:
        pool, rec = _columnar_chain()
        flow = kf.FlowBuilder("conv", pool=pool).calculate("Keep").build()
        source = [{"stu_id": 1, "score": 50}, Score(2, 60), '{"stu_id": 3, "score": 70}']
        flow.run(source)
        got = rec.got["Keep"]
        assert isinstance(got, pl.DataFrame)
        assert got.schema == pl.Schema({"stu_id": pl.Int64, "score": pl.Int64})
        assert got.rows() == [(1, 50), (2, 60), (3, 70)]

    def test_the_frame_comes_back_as_dicts_for_an_untyped_row_stage(self) -> None:
        pool, _ = _columnar_chain()
        seen: list[Any] = []

        def show(flow: kf.Flow) -> None:
            seen.append(flow.input())
            flow.commit_row_batch(flow.input())

        pool.faas("Show", show)
        flow = kf.FlowBuilder("back", pool=pool).calculate("Double").expand("Show").build()
        result = flow.run([{"stu_id": 1, "score": 5}, {"stu_id": 2, "score": 7}])
        assert seen == [[{"stu_id": 1, "score": 10}, {"stu_id": 2, "score": 14}]]
        assert type(seen[0]) is list
        assert result.output == [{"stu_id": 1, "score": 10}, {"stu_id": 2, "score": 14}]

    def test_the_frame_comes_back_as_the_declared_row_type(self) -> None:
        pool = kf.Pool()
        seen: list[Any] = []

        def average(flow: kf.Flow, rows: pl.DataFrame) -> None:
            flow.commit_row_batch(rows.select("stu_id", (pl.col("score") / 2).alias("avg_score")))

        def typed(flow: kf.Flow, rows: list[Avg]) -> None:
            seen.extend(rows)
            flow.commit_row_batch(rows)

        pool.faas("Average", average, output=Columns(stu_id=pl.Int64, avg_score=pl.Float64))
        pool.faas("Typed", typed)
        flow = kf.FlowBuilder("typed", pool=pool).calculate("Average").expand("Typed").build()
        result = flow.run([Score(1, 50), Score(2, 61)])
        assert seen == [Avg(1, 25.0), Avg(2, 30.5)]
        assert result.output == [Avg(1, 25.0), Avg(2, 30.5)]

    def test_declared_columns_shape_the_frame(self) -> None:
        pool = kf.Pool()
        got: list[pl.DataFrame] = []

        def needs(flow: kf.Flow, rows: Annotated[pl.DataFrame, Columns(score=pl.Float64)]) -> None:
            got.append(rows)
            flow.commit_row_batch(rows)

        pool.faas("Needs", needs)
        flow = kf.FlowBuilder("cols", pool=pool).calculate("Needs").build()
        flow.run([{"stu_id": 1, "score": 2.5, "extra": "x"}, {"stu_id": 2}])
        assert got[0].schema == pl.Schema({"score": pl.Float64})
        assert got[0]["score"].to_list() == [2.5, None]

    def test_a_value_of_another_dtype_is_an_error_naming_the_row(self) -> None:
        pool = kf.Pool()

        def ints(flow: kf.Flow, rows: Annotated[pl.DataFrame, Columns(score=pl.Int64)]) -> None:
            flow.commit_row_batch(rows)

        pool.faas("Ints", ints)
        flow = kf.FlowBuilder("strict", pool=pool).calculate("Ints").build()
        with pytest.raises(kf.RowConversionError, match=r"stage 'Ints': row 1 cannot") as err:
            flow.run([{"score": 1}, {"score": 1.5}, {"score": 3}])
        assert err.value.row_index == 1
        assert err.value.row == {"score": 1.5}
        assert "Int64" in str(err.value)

    def test_unconvertible_rows_go_to_the_sink_and_the_rest_runs(self) -> None:
        pool = kf.Pool()
        got: list[pl.DataFrame] = []

        def ints(flow: kf.Flow, rows: Annotated[pl.DataFrame, Columns(score=pl.Int64)]) -> None:
            got.append(rows)
            flow.commit_row_batch(rows)

        pool.faas("Ints", ints)
        flow = kf.FlowBuilder("sink", pool=pool).calculate("Ints").build()
        sink: list[kf.DeadLetter] = []
        result = flow.run(
            [{"score": 1}, "not json", {"score": "x"}, {"score": 4}], dead_letters=sink
        )
        assert [(d.row_index, d.reason) for d in sink] == [(1, "conversion"), (2, "conversion")]
        assert got[0]["score"].to_list() == [1, 4]
        stats = result.stage("Ints")
        assert (stats.rows_in, stats.rows_out, stats.dead_letters, stats.filtered) == (4, 2, 2, 0)

    def test_mixed_types_are_an_error_not_a_string_column(self) -> None:
        pool, _ = _columnar_chain()
        flow = kf.FlowBuilder("mixed", pool=pool).calculate("Tag").build()
        with pytest.raises(kf.RowConversionError, match=r"row 2 cannot be converted") as err:
            flow.run([{"score": 1}, {"score": 2.5}, {"score": "3"}])
        assert "column 'score' holds int values, this row str '3'" in str(err.value)
        sink: list[kf.DeadLetter] = []
        result = flow.run([{"score": "3"}, {"score": 1}, {"score": 2.5}], dead_letters=sink)
        assert [d.row_index for d in sink] == [1, 2]  # the column is str from row 0
        assert result.output.rows() == [("3", "x")]

    def test_no_rows_make_an_empty_frame_that_stops_the_flow(self) -> None:
        pool, rec = _columnar_chain()
        flow = kf.FlowBuilder("empty", pool=pool).calculate("Keep").calculate("Tag").build()
        result = flow.run([{"stu_id": 1, "score": 1}])  # Keep drops it
        assert result.ended is kf.RunEnd.NO_ROWS
        assert result.stopped_at == "Keep"
        assert "Tag" not in rec.got


SOURCE = "<source>"
"""In a pass-through case: the run's source, as the object a stage is handed."""


class TestFramesPassThrough:
    """Consecutive columnar stages hand each other the DataFrame itself: no conversion."""

    @pytest.mark.parametrize(
        ("stages", "source", "same", "conversions", "kept"),
        [
            pytest.param(
                [("verify", "Keep"), ("calculate", "Double"), ("calculate", "Tag")],
                _rows(50),
                [("Double", "Keep"), ("Tag", "Double")],
                (1, 0),  # once on entry, never back
                range(10, 50),
                id="columnar-stages-get-the-committed-frame",
            ),
            pytest.param(
                [("verify", "Keep"), ("calculate", "Double")],
                pl.DataFrame(_rows(30)),
                [("Keep", SOURCE)],
                (0, 0),
                range(10, 30),
                id="a-frame-source-reaches-the-first-stage-as-it-is",
            ),
            pytest.param(
                [("calculate", "Keep"), ("calculate", "Rows"), ("calculate", "Double")],
                _rows(20),
                [],
                (2, 1),  # rows -> frame (Keep), frame -> rows (Rows), rows -> frame (Double)
                range(10, 20),
                id="rows-are-made-once-where-a-row-stage-follows",
            ),
        ],
    )
    def test_conversions_happen_only_between_kinds(
        self,
        monkeypatch: pytest.MonkeyPatch,
        stages: list[tuple[str, str]],
        source: Any,
        same: list[tuple[str, str]],
        conversions: tuple[int, int],
        kept: range,
    ) -> None:
        """``same``: (stage, committer) pairs where the stage gets that very object."""
        counts = _Counting(monkeypatch)
        pool, rec = _columnar_chain()

        def rows_stage(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
            flow.commit_row_batch(rows)

        pool.faas("Rows", rows_stage)
        builder = kf.FlowBuilder("pass", pool=pool)
        for mode, name in stages:
            builder = getattr(builder, mode)(name)
        result = builder.build().run(source)
        for stage, committer in same:
            handed = source if committer == SOURCE else rec.committed[committer]
            assert rec.got[stage] is handed, (stage, committer)
        assert (counts.to_frame, counts.to_rows) == conversions
        # The last stage is columnar: the output is its DataFrame, not rows.
        assert isinstance(result.output, pl.DataFrame)
        assert result.output is rec.committed[stages[-1][1]]
        assert result.output["score"].to_list() == [s * 2 for s in kept]

    def test_a_row_output_stays_a_list(self) -> None:
        pool = kf.Pool()

        def count(flow: kf.Flow, rows: pl.DataFrame) -> None:
            flow.commit_row({"n": rows.height})

        pool.faas("Count", count)
        flow = kf.FlowBuilder("one", pool=pool).expand("Count").build()
        assert flow.run(_rows(7)).output == [{"n": 7}]


class TestDrivers:
    """``arun`` and streams run columnar stages as ``run`` does."""

    def test_arun(self) -> None:
        import asyncio

        pool, rec = _columnar_chain()
        flow = kf.FlowBuilder("async", pool=pool).verify("Keep").calculate("Double").build()
        result = asyncio.run(flow.arun(_rows(15)))
        assert rec.got["Double"] is rec.committed["Keep"]
        assert result.output["score"].to_list() == [s * 2 for s in range(10, 15)]

    def test_stream_batches(self) -> None:
        pool, _ = _columnar_chain()
        flow = kf.FlowBuilder("stream", pool=pool).calculate("Double").build()
        results = list(flow.stream(iter(_rows(25)), batch_size=10, handle_sigint=False))
        assert [r.output.height for r in results] == [10, 10, 5]
        assert pl.concat([r.output for r in results])["score"].to_list() == [
            (i % 100) * 2 for i in range(25)
        ]


class TestCounts:
    """Rows in, out, filtered and dead-lettered are exact for columnar stages."""

    def test_stage_stats_and_observer_figures(self) -> None:
        pool, _ = _columnar_chain()

        def verify(flow: kf.Flow, rows: pl.DataFrame) -> None:
            bad = rows.filter(pl.col("stu_id") % 10 == 0)
            flow.dead_letter(bad, "tenth student")
            flow.commit_row_batch(rows.filter(pl.col("stu_id") % 10 != 0))

        pool.faas("Verify", verify)
        calls: list[StageCall] = []

        class Seen(kf.Observer):
            def stage_done(self, run: Any, call: StageCall) -> None:
                calls.append(call)

        flow = (
            kf.FlowBuilder("counts", pool=pool)
            .verify("Verify")
            .calculate("Keep")
            .calculate("Double")
            .build()
        )
        sink: list[kf.DeadLetter] = []
        result = flow.run(_rows(100), kf.RunOptions(observers=(Seen(),)), dead_letters=sink)
        figures = [
            (s.name, s.rows_in, s.rows_out, s.filtered, s.dead_letters) for s in result.stages
        ]
        # Verify: 10 tenth students dead-lettered; Keep: scores 0..9 of the 90 left filtered
        assert figures == [
            ("Verify", 100, 90, 0, 10),
            ("Keep", 90, 81, 9, 0),
            ("Double", 81, 81, 0, 0),
        ]
        assert all(s.balanced() for s in result.stages)
        assert [(c.stage.name, c.rows_in, c.rows_out, c.filtered, c.dead) for c in calls] == [
            ("Verify", 100, 90, 0, 10),
            ("Keep", 90, 81, 9, 0),
            ("Double", 81, 81, 0, 0),
        ]
        assert len(sink) == result.dead_letters == 10


class TestDeadLetters:
    """A columnar Verify rejects rows by handing a DataFrame to ``flow.dead_letter``."""

    @staticmethod
    def _flow(verify: Any) -> kf.Flow:
        pool = kf.Pool()
        pool.faas("Check", verify)
        return kf.FlowBuilder("dl", pool=pool).verify("Check").build()

    def test_each_row_with_the_reason_of_its_column(self) -> None:
        def verify(flow: kf.Flow, rows: pl.DataFrame) -> None:
            why = (
                pl.when(pl.col("score") < 0)
                .then(pl.lit("negative"))
                .otherwise(pl.lit("too high"))
                .alias(REASON)
            )
            bad = rows.filter((pl.col("score") < 0) | (pl.col("score") > 100))
            flow.dead_letter(bad.with_columns(why))
            flow.commit_row_batch(rows.filter(pl.col("score").is_between(0, 100)))

        sink: list[kf.DeadLetter] = []
        source = [{"id": 1, "score": -5}, {"id": 2, "score": 50}, {"id": 3, "score": 500}]
        result = self._flow(verify).run(source, dead_letters=sink)
        assert [(d.row, d.error, d.reason, d.row_index) for d in sink] == [
            ({"id": 1, "score": -5}, "negative", "rejected", -1),
            ({"id": 3, "score": 500}, "too high", "rejected", -1),
        ]
        assert result.output.rows() == [(2, 50)]
        assert json.loads(json.dumps(sink[0].to_json()))["row"] == {"id": 1, "score": -5}

    def test_without_a_column_every_row_gets_the_reason_given(self) -> None:
        def verify(flow: kf.Flow, rows: pl.DataFrame) -> None:
            flow.dead_letter(rows.filter(pl.col("score") > 1), "over one")
            flow.commit_row_batch(rows.filter(pl.col("score") <= 1))

        sink: list[kf.DeadLetter] = []
        self._flow(verify).run([{"score": s} for s in range(4)], dead_letters=sink)
        assert [(d.row, d.error) for d in sink] == [
            ({"score": 2}, "over one"),
            ({"score": 3}, "over one"),
        ]

    def test_no_sink_is_an_error_naming_the_stage(self) -> None:
        def verify(flow: kf.Flow, rows: pl.DataFrame) -> None:
            flow.dead_letter(rows, "all bad")

        with pytest.raises(kf.RowRejectedError, match=r"stage 'Check' rejected row \{'score': 1\}"):
            self._flow(verify).run([{"score": 1}])

    def test_data_reuse_after_rejecting_a_frame_is_refused(self) -> None:
        def verify(flow: kf.Flow, rows: pl.DataFrame) -> None:
            flow.dead_letter(rows.head(1), "first")
            flow.next(kf.actions.data_reuse)

        with pytest.raises(
            kf.ActionError, match="dead-lettered a DataFrame and asked for data_reuse"
        ):
            self._flow(verify).run([{"score": 1}, {"score": 2}], dead_letters=[])

    def test_a_retried_attempt_drops_its_rejected_rows(self) -> None:
        attempts: list[int] = []

        def verify(flow: kf.Flow, rows: pl.DataFrame) -> None:
            attempts.append(1)
            flow.dead_letter(rows.head(1), "first")
            if len(attempts) == 1:
                raise RuntimeError("flaky")
            flow.commit_row_batch(rows.tail(1))

        pool = kf.Pool()
        pool.faas("Check", verify)
        flow = (
            kf.FlowBuilder("retry", pool=pool)
            .verify("Check", option=kf.FuncOption(retry_times=1, return_duration=0))
            .build()
        )
        sink: list[kf.DeadLetter] = []
        result = flow.run([{"score": 1}, {"score": 2}], dead_letters=sink)
        assert len(attempts) == 2
        assert [d.row for d in sink] == [{"score": 1}]
        assert result.stage("Check").dead_letters == 1


class TestCommits:
    """What a stage commits besides one DataFrame."""

    def test_rows_then_a_frame_then_a_frame_concatenate(self) -> None:
        pool = kf.Pool()

        def mixed(flow: kf.Flow, rows: pl.DataFrame) -> None:
            flow.commit_row({"a": 0})
            flow.commit_row_batch(pl.DataFrame({"a": [1, 2]}))
            flow.commit_row_batch(pl.DataFrame({"a": [3], "b": ["x"]}))
            flow.commit_row_batch([{"a": 4}])

        pool.faas("Mixed", mixed)
        flow = kf.FlowBuilder("mix", pool=pool).calculate("Mixed").build()
        out = flow.run([{"a": 9}]).output
        assert out.rows() == [(0, None), (1, None), (2, None), (3, "x"), (4, None)]

    def test_commit_row_after_a_frame_is_an_error(self) -> None:
        pool = kf.Pool()

        def late(flow: kf.Flow, rows: pl.DataFrame) -> None:
            flow.commit_row_batch(rows)
            flow.commit_row({"a": 1})

        pool.faas("Late", late)
        flow = kf.FlowBuilder("late", pool=pool).calculate("Late").build()
        with pytest.raises(
            kf.CommitError, match="stage 'Late': commit_row after a DataFrame"
        ) as err:
            flow.run([{"a": 9}])
        assert (err.value.flow, err.value.stage) == ("late", "Late")

    def test_a_retried_attempt_may_commit_rows_after_a_frame_before(self) -> None:
        pool = kf.Pool()
        calls: list[int] = []

        def flaky(flow: kf.Flow, rows: pl.DataFrame) -> None:
            calls.append(1)
            if len(calls) == 1:
                flow.commit_row_batch(rows)  # a frame, then the attempt fails
                raise OSError("once")
            flow.commit_row({"a": 2})  # the retry's rows: commit_row works again

        pool.faas("Flaky", flaky)
        flow = (
            kf.FlowBuilder("retry-frame", pool=pool)
            .calculate("Flaky", option=kf.FuncOption(retry_times=1))
            .build()
        )
        assert flow.run([{"a": 9}]).output == [{"a": 2}]
        assert len(calls) == 2

    def test_a_row_stage_may_commit_a_frame(self) -> None:
        pool = kf.Pool()

        def load(flow: kf.Flow) -> None:
            flow.commit_row_batch(pl.DataFrame({"a": [1, 2, 3]}))

        pool.faas("Load", load)
        flow = kf.FlowBuilder("rowframe", pool=pool).load("Load").build()
        result = flow.run([{"go": 1}])
        assert isinstance(result.output, pl.DataFrame)
        assert result.stage("Load").rows_out == 3


def _pass_frame(flow: kf.Flow, rows: pl.DataFrame) -> None:
    """A columnar stage passing its frame on."""
    flow.commit_row_batch(rows)


def _pass_avgs(flow: kf.Flow, rows: list[Avg]) -> None:
    """A row stage taking Avg records and passing them on."""
    flow.commit_row_batch(rows)


class TestTypeCheck:
    """The build-time check reads declared Columns against the next stage."""

    @staticmethod
    def _flow(pool: kf.Pool) -> kf.Flow:
        return kf.FlowBuilder("types", pool=pool).calculate("Up").calculate("Down").build()

    def test_columns_must_hold_the_next_record_types_fields(self) -> None:
        pool = kf.Pool()
        pool.faas("Up", _pass_frame, output=Columns(stu_id=pl.Int64))
        pool.faas("Down", _pass_avgs)
        with pytest.raises(kf.FlowTypeError, match=r"stage 'Up' outputs Columns\(stu_id: Int64\)"):
            self._flow(pool).validate()
        pool.faas(
            "Up", _pass_frame, output={"stu_id": pl.Int64, "avg_score": pl.Int32}, replace=True
        )
        self._flow(pool).validate()  # an int column feeds a float field
        pool.faas(
            "Up", _pass_frame, output={"stu_id": pl.Int64, "avg_score": pl.String}, replace=True
        )
        with pytest.raises(kf.FlowTypeError, match="takes Avg"):
            self._flow(pool).validate()

    def test_columns_against_the_next_stages_columns(self) -> None:
        pool = kf.Pool()

        def down(flow: kf.Flow, rows: Annotated[pl.DataFrame, Columns(x=pl.Float64)]) -> None:
            flow.commit_row_batch(rows)

        pool.faas("Down", down)
        pool.faas("Up", _pass_frame, output=pl.Schema({"y": pl.Float64}))
        with pytest.raises(kf.FlowTypeError, match=r"takes DataFrame\[Columns\(x: Float64\)\]"):
            self._flow(pool).validate()
        pool.faas("Up", _pass_frame, output=Columns(x=pl.Int64, y=pl.Float64), replace=True)
        self._flow(pool).validate()
        pool.faas("Up", _pass_frame, output=Columns(x=pl.String), replace=True)
        with pytest.raises(kf.FlowTypeError):
            self._flow(pool).validate()

    def test_a_record_output_against_a_stages_columns(self) -> None:
        pool = kf.Pool()

        def up(flow: kf.Flow, rows: list[Score]) -> None:
            flow.commit_row_batch(rows)

        def down(flow: kf.Flow, rows: Annotated[pl.DataFrame, Columns(score=pl.Int64)]) -> None:
            flow.commit_row_batch(rows)

        def down_missing(
            flow: kf.Flow, rows: Annotated[pl.DataFrame, Columns(grade=pl.String)]
        ) -> None:
            flow.commit_row_batch(rows)

        pool.faas("Up", up, output=Score)
        pool.faas("Down", down)
        self._flow(pool).validate()
        pool.faas("Down", down_missing, replace=True)
        with pytest.raises(kf.FlowTypeError, match="outputs Score"):
            self._flow(pool).validate()

    def test_an_undeclared_frame_fits_anything(self) -> None:
        pool = kf.Pool()
        pool.faas("Up", _pass_frame)
        pool.faas("Down", _pass_avgs)
        flow = self._flow(pool)
        flow.validate()  # raises FlowTypeError when it does not fit
        assert flow.plan().specs[0].signature.output_type is None  # nothing declared
        assert [s.name for s in flow.plan().stages] == ["Up", "Down"]

    def test_the_signature_reads_the_declared_columns(self) -> None:
        pool = kf.Pool()

        def down(flow: kf.Flow, rows: Annotated[pl.DataFrame, Columns(x=pl.Float64)]) -> None:
            flow.commit_row_batch(rows)

        sig = pool.faas("Down", down).signature
        assert sig.frames is True
        assert sig.rows_type == columnar.Frame(Columns(x=pl.Float64))
        assert repr(sig.rows_type) == "DataFrame[Columns(x: Float64)]"


class TestBenchWorkload:
    """The benchmark's columnar flow and hand-written Polars give the loop's counts."""

    def test_frame_and_dict_inputs(self) -> None:
        from bench import columnar as bench_columnar
        from bench import workload

        rows = workload.make_rows(2000)
        expected = workload.loop(rows)
        flow = bench_columnar.build(kf.Pool())
        assert bench_columnar.run_flow(flow, pl.from_dicts(rows)) == expected
        assert bench_columnar.run_flow(flow, rows) == expected
        assert bench_columnar.by_hand(pl.from_dicts(rows)) == expected
        assert sum(expected.values()) == 1800


class TestDeclarations:
    """What a FaaS may declare about DataFrames, and what it may not."""

    def test_an_output_mapping_must_name_polars_dtypes(self) -> None:
        def up(flow: kf.Flow, rows: pl.DataFrame) -> None:
            flow.commit_row_batch(rows)

        with pytest.raises(kf.FaaSSignatureError, match="is not a supported row type"):
            kf.faas("Up", up, output={"a": int})
        spec = kf.Pool().faas("Up", up, output={"a": pl.Int64, "b": pl.List(pl.String)})
        assert spec.signature.output_type == Columns(a=pl.Int64, b=pl.List(pl.String))

    def test_a_lazy_frame_is_not_a_rows_annotation(self) -> None:
        def lazy(flow: kf.Flow, rows: pl.LazyFrame) -> None:
            flow.commit_row_batch(rows.collect())

        with pytest.raises(kf.FaaSSignatureError, match="rows must be annotated as list"):
            kf.faas("Lazy", lazy)
