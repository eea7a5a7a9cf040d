"""The Kafka source against a real Kafka-protocol broker (Tansu) started on 127.0.0.1.

Each test uses its own topic and group on one broker for the module: records are
produced, read through ``KafkaSource`` (confluent-kafka), acked, re-read and re-opened,
and the group's committed offsets are read back from the broker.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kisflow as kf
from kisflow import sources
from kisflow.checkpoint import Checkpoint
from kisflow.errors import SourceError
from kisflow.observers import Observer, StreamStatus
from kisflow.sources import Chunk, Takeover
from kisflow.sources._kafka import KafkaSource
from tests.kafka_broker import Broker, free_port, running_broker

FAST = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 300, "fetch.wait.max.ms": 50}
"""Short group timeouts: a join or a rebalance takes seconds, not the default 45."""

NONE = -1001
"""librdkafka's 'no committed offset'."""

_names = itertools.count()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with running_broker(tmp_path_factory.mktemp("tansu")) as b:
        yield b


@pytest.fixture
def topic(broker: Broker, request: pytest.FixtureRequest) -> str:
    """A fresh topic with two partitions, named for the test."""
    name = f"{request.node.name.replace('[', '-').rstrip(']')}-{next(_names)}"
    return broker.create_topic(name, partitions=2)


def source(
    broker: Broker, topic: str, group: str | None = None, consumer: str | None = None, **kw: Any
) -> KafkaSource:
    """A source reading ``topic`` in group ``group`` (by default one named as the topic)."""
    group = topic if group is None else group
    src = sources.kafka(
        broker.bootstrap, topic=topic, group=group, consumer=consumer, config={**FAST, **kw}
    )
    assert isinstance(src, KafkaSource)
    return src


def read_all(src: KafkaSource, n: int, deadline: float = 30.0) -> list[Chunk]:
    """Chunks until ``n`` records came (the first read waits for the group's join)."""
    chunks: list[Chunk] = []
    end = time.monotonic() + deadline
    while sum(c.size for c in chunks) < n:
        assert time.monotonic() < end, f"only {sum(c.size for c in chunks)} of {n} records came"
        chunk = src.read(100, 0.5)
        if chunk.size:
            chunks.append(chunk)
    return chunks


def wait_empty(src: KafkaSource, seconds: float = 2.0) -> list[Chunk]:
    """What ``src`` still reads within ``seconds`` (nothing, when all was read)."""
    got: list[Chunk] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        chunk = src.read(100, 0.2)
        if chunk.size:
            got.append(chunk)
    return got


def ids(chunk: Chunk) -> list[int]:
    return sorted(r["id"] for r in chunk.rows)


class TestRead:
    def test_rows_spans_headers_and_bad_records(self, broker: Broker, topic: str) -> None:
        broker.produce(topic, [{"id": i} for i in range(10)], partition=0, headers=[("h", b"v")])
        broker.produce(topic, [b"not json", None, b"\xff", {"id": 10}], partition=1)
        src = source(broker, topic)
        src.open(None)
        try:
            batch = src.join(read_all(src, 14))
            assert ids(batch) == list(range(11))
            assert batch.span == {"0": [0, 10], "1": [0, 4]}
            assert [b.reason.split(":")[0] for b in batch.bad] == [
                "is not JSON",
                "has no value (a tombstone)",
                "is not JSON",
            ]
            texts = {b.text for b in batch.bad}
            assert texts == {"not json", "", "\\xff"}
            assert {b.where for b in batch.bad} == {
                f"kafka topic {topic} partition 1 offset {o}" for o in (0, 1, 2)
            }
            assert batch.headers is not None
            assert len(batch.headers) == 11
            by_id = dict(zip((r["id"] for r in batch.rows), batch.headers, strict=True))
            assert by_id[3] == {"h": "v"}
            assert by_id[10] == {}
            assert batch.wheres is not None
            assert f"kafka topic {topic} partition 0 offset 3" in batch.wheres
            one = src.reread({"1": [0, 4]})  # a bad record's index: its place among all
            assert [b.index for b in one.bad] == [0, 1, 2]
            assert one.rows == [{"id": 10}]
        finally:
            src.close()

    def test_nothing_is_committed_before_ack(self, broker: Broker, topic: str) -> None:
        broker.produce(topic, [{"id": i} for i in range(6)], partition=0)
        src = source(broker, topic)
        src.open(None)
        try:
            batch = src.join(read_all(src, 6))
            assert broker.committed(topic, topic, 2) == {0: NONE, 1: NONE}
            assert src.position(batch.span) == {"0": 6}
            src.ack(batch.span)
            assert broker.committed(topic, topic, 2) == {0: 6, 1: NONE}
        finally:
            src.close()

    def test_a_reopened_source_goes_on_after_the_acked_offsets(
        self, broker: Broker, topic: str
    ) -> None:
        broker.produce(topic, [{"id": i} for i in range(8)], partition=0)
        src = source(broker, topic)
        src.open(None)
        first = src.join(read_all(src, 8))
        half = {"0": [0, 5]}
        src.ack(half)  # only 0..4 stored: 5..7 must come again
        src.close()
        broker.produce(topic, [{"id": 8}], partition=1)
        again = source(broker, topic)
        again.open(src.position(half))
        try:
            batch = again.join(read_all(again, 4))
            assert ids(batch) == [5, 6, 7, 8]
            assert batch.span == {"0": [5, 8], "1": [0, 1]}
            assert ids(first) == list(range(8))
            assert wait_empty(again) == []
        finally:
            again.close()

    def test_a_checkpoint_ahead_of_kafka_wins_and_is_committed(
        self, broker: Broker, topic: str
    ) -> None:
        """A crash after the checkpoint's commit but before the ack: the next start
        reads after the checkpoint's position and commits it to Kafka."""
        broker.produce(topic, [{"id": i} for i in range(8)], partition=0)
        src = source(broker, topic)
        src.open({"0": 5})
        try:
            batch = src.join(read_all(src, 3))
            assert ids(batch) == [5, 6, 7]
            assert broker.committed(topic, topic, 2)[0] == 5
        finally:
            src.close()

    def test_a_span_holds_every_partition_held(self, broker: Broker, topic: str) -> None:
        """A partition without records in a chunk is in its span as an empty range at its
        next offset, so the position after one batch's span alone covers every partition
        (a restart opens there when that batch was left uncommitted)."""
        broker.produce(topic, [{"id": i} for i in range(3)], partition=0)
        broker.produce(topic, [{"id": 10 + i} for i in range(2)], partition=1)
        src = source(broker, topic)
        src.open(None)
        try:
            first = src.join(read_all(src, 5))
            src.ack(first.span)
            broker.produce(topic, [{"id": 3}], partition=0)
            later = src.join(read_all(src, 1))
            assert later.span == {"0": [3, 4], "1": [2, 2]}
            assert ids(later) == [3]
            fresh = source(broker, topic)  # not opened: knows nothing but the span
            assert fresh.position(later.span) == {"0": 4, "1": 2}
            assert ids(src.reread(later.span)) == [3]
        finally:
            src.close()

    def test_lag_counts_what_is_not_read(self, broker: Broker, topic: str) -> None:
        broker.produce(topic, [{"id": i} for i in range(10)], partition=0)
        src = source(broker, topic)
        src.open(None)
        try:
            assert src.lag() is None  # nothing assigned yet
            got = 0
            end = time.monotonic() + 30
            while got < 4:
                assert time.monotonic() < end
                got += src.read(4 - got, 0.5).size
            assert src.lag() == 6
        finally:
            src.close()


class TestReread:
    def test_reread_gives_exactly_the_span(self, broker: Broker, topic: str) -> None:
        broker.produce(topic, [{"id": i} for i in range(20)], partition=0)
        broker.produce(topic, [{"id": 100 + i} for i in range(5)], partition=1)
        src = source(broker, topic)
        src.open(None)
        try:
            batch = src.join(read_all(src, 25))
            again = src.reread(batch.span)
            assert ids(again) == ids(batch)
            assert again.span == batch.span
            part = src.reread({"0": [3, 7], "1": [4, 5]})
            assert ids(part) == [3, 4, 5, 6, 104]
            assert part.span == {"0": [3, 7], "1": [4, 5]}
            assert part.wheres is not None
            assert f"kafka topic {topic} partition 0 offset 3" in part.wheres
        finally:
            src.close()

    def test_reread_in_a_fresh_process_does_not_reread_from_the_group(
        self, broker: Broker, topic: str
    ) -> None:
        """Recovery: open at the checkpoint, reread the intent, ack it; the group's
        reads start after the intent (it is not read a second time)."""
        broker.produce(topic, [{"id": i} for i in range(10)], partition=0)
        src = source(broker, topic)
        src.open({"0": 2})
        try:
            intent = src.reread({"0": [2, 6]})
            assert ids(intent) == [2, 3, 4, 5]
            assert src.position(intent.span) == {"0": 6}
            src.ack(intent.span)
            rest = src.join(read_all(src, 4))
            assert ids(rest) == [6, 7, 8, 9]
            assert broker.committed(topic, topic, 2)[0] == 6
        finally:
            src.close()

    def test_the_committed_position_told_after_open_is_not_read_again(
        self, broker: Broker, topic: str
    ) -> None:
        """The stream opens after its last intent ({"0": 6}, a batch [4, 6) left
        uncommitted) and tells the checkpoint's committed position ({"0": 4, "1": 3}),
        whose ack a crash cut off: partition 1 starts at 3 and that is committed."""
        broker.produce(topic, [{"id": i} for i in range(8)], partition=0)
        broker.produce(topic, [{"id": 10 + i} for i in range(5)], partition=1)
        src = source(broker, topic)
        src.open({"0": 6})
        src.committed({"0": 4, "1": 3})
        try:
            assert ids(src.reread({"0": [4, 6]})) == [4, 5]
            batch = src.join(read_all(src, 4))
            assert ids(batch) == [6, 7, 13, 14]
            assert broker.committed(topic, topic, 2) == {0: 6, 1: 3}
            with pytest.raises(SourceError, match="is not offsets per partition"):
                src.committed(["nope"])
        finally:
            src.close()

    def test_offsets_that_are_gone_are_a_source_error(self, broker: Broker, topic: str) -> None:
        broker.produce(topic, [{"id": i} for i in range(3)], partition=0)
        src = source(broker, topic)
        src.open(None)
        try:
            with pytest.raises(SourceError, match=r"partition 0 \[2, 9\)") as info:
                src.reread({"0": [2, 9]})
            assert info.value.source == f"kafka:{broker.bootstrap}/{topic}/{topic}"
        finally:
            src.close()


class TestRebalance:
    @pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
    def test_a_lost_partition_is_not_committed(
        self, broker: Broker, topic: str, strategy: str
    ) -> None:
        broker.produce(topic, [{"id": i} for i in range(4)], partition=0)
        broker.produce(topic, [{"id": 10 + i} for i in range(4)], partition=1)
        a = source(broker, topic, **{"partition.assignment.strategy": strategy})
        a.open(None)
        b = source(broker, topic, **{"partition.assignment.strategy": strategy})
        try:
            batch = a.join(read_all(a, 8))  # a holds both partitions
            assert batch.span == {"0": [0, 4], "1": [0, 4]}
            b.open(None)
            end = time.monotonic() + 40
            while len(a.assigned) != 1 or len(b.assigned) != 1:
                assert time.monotonic() < end, (a.assigned, b.assigned)
                a.read(100, 0.1)
                b.read(100, 0.1)
            (kept,) = a.assigned
            assert b.assigned == (1 - kept,)
            a.ack(batch.span)
            committed = broker.committed(topic, topic, 2)
            assert committed[kept] == 4
            assert committed[1 - kept] == NONE  # a lost it: b's to commit
        finally:
            a.close()
            b.close()


class TestErrors:
    def test_config_the_source_owns_is_refused(self, broker: Broker) -> None:
        for name in ("enable.auto.commit", "group.id", "bootstrap.servers"):
            with pytest.raises(SourceError, match=name):
                sources.kafka(broker.bootstrap, topic="t", group="g", config={name: "x"})

    def test_a_bad_setting_is_a_source_error(self, broker: Broker, topic: str) -> None:
        src = source(broker, topic, **{"no.such.setting": 1})
        with pytest.raises(SourceError, match=r"bad config.*no\.such\.setting"):
            src.open(None)

    def test_a_missing_topic(self, broker: Broker) -> None:
        src = source(broker, "never-made")
        with pytest.raises(SourceError, match=r"'never-made'.*does not exist") as info:
            src.open(None)
        assert not info.value.retryable

    def test_an_unreachable_broker(self) -> None:
        src = KafkaSource(f"127.0.0.1:{free_port()}", topic="t", group="g", open_timeout=1)
        with pytest.raises(SourceError, match="cannot connect") as info:
            src.open(None)
        assert info.value.retryable

    def test_read_before_open(self, broker: Broker) -> None:
        with pytest.raises(SourceError, match="not open"):
            source(broker, "t").read(1, 0)

    def test_key_and_describe(self, broker: Broker, tmp_path: Path) -> None:
        one = sources.kafka("h:1", topic="t", group="g")
        two = sources.kafka("h:1", topic="t", group="g", consumer="w2")
        assert (one.key, two.key) == ("kafka:h:1/t/g", "kafka:h:1/t/g/w2")
        assert one.describe() == "kafka topic 't' (group 'g' at h:1)"


class TestStream:
    """``flow.stream`` over the Kafka source, in this process: letters, lag, resume."""

    @pytest.mark.parametrize("in_flight", [1, 3])
    def test_stream_stores_once_letters_bad_messages_and_resumes(
        self, broker: Broker, topic: str, tmp_path: Path, in_flight: int
    ) -> None:
        broker.produce(topic, [{"id": i} for i in range(30)], partition=0)
        broker.produce(topic, [b"{broken", *({"id": 30 + i} for i in range(10))], partition=1)
        db, ckpt = tmp_path / "rows.db", tmp_path / "c.ckpt"
        conn = kf.ConnConfig(cname="DB", type="sqlite", addrs=str(db), key="rows")
        flow = kf.FlowBuilder(f"k{in_flight}").save("Store", conn=conn).build()
        letters: list[kf.DeadLetter] = []
        seen: list[StreamStatus] = []

        class Watch(Observer):
            def stream_committed(self, flow: str, status: StreamStatus) -> None:
                seen.append(status)

        stream = flow.stream(
            source(broker, topic),
            kf.RunOptions(observers=(Watch(),)),
            batch_size=7,
            max_in_flight=in_flight,
            max_wait=0.2,
            checkpoint=ckpt,
            idle_timeout=4.0,
            delivery="exactly-once",
            dead_letters=letters,
        )
        with stream:
            outputs = [len(r.output) for r in stream]
        assert sum(outputs) == 40
        assert stream.committed == 41
        assert stream.position == {"0": 30, "1": 11}
        assert [(x.row, x.error.split(" is not")[0]) for x in letters] == [
            ("{broken", f"kafka topic {topic} partition 1 offset 0")
        ]
        assert seen[-1].lag == 0
        assert seen[-1].committed == 41
        assert broker.committed(topic, topic, 2) == {0: 30, 1: 11}
        con = sqlite3.connect(db)
        stored = sorted(i for (i,) in con.execute("SELECT id FROM rows"))
        con.close()
        assert stored == list(range(40))
        broker.produce(topic, [{"id": 40}], partition=0)
        again = flow.stream(source(broker, topic), batch_size=7, checkpoint=ckpt, idle_timeout=4.0)
        with again:
            assert [r.output for r in again] == [[{"id": 40}]]
        assert again.position == {"0": 31, "1": 11}


class TestSpans:
    """Spans are offsets per partition as JSON; joined chunks merge them per partition."""

    def test_join_merges_spans_per_partition(self) -> None:
        src = sources.kafka("h:1", topic="t", group="g")
        one = Chunk([{"id": 1}], {"0": [3, 4]}, (), [{}], ["a"])
        two = Chunk([{"id": 2}, {"id": 3}], {"0": [4, 6], "2": [9, 10]}, (), [{}, {}], ["b", "c"])
        joined = src.join([one, two])
        assert joined.span == {"0": [3, 6], "2": [9, 10]}
        assert joined.rows == [{"id": 1}, {"id": 2}, {"id": 3}]
        assert joined.wheres == ["a", "b", "c"]
        assert src.position(joined.span) == {"0": 6, "2": 10}

    def test_empty_ranges_only_place_a_partition(self) -> None:
        src = sources.kafka("h:1", topic="t", group="g")
        one = Chunk([{"id": 1}], {"0": [3, 4], "1": [2, 2], "2": [7, 7]})
        two = Chunk([{"id": 2}], {"0": [4, 4], "1": [2, 3], "2": [7, 7]})
        assert src.join([one, two]).span == {"0": [3, 4], "1": [2, 3], "2": [7, 7]}

    @pytest.mark.parametrize("span", [[1, 2], {"0": "x"}, {"zero": [1, 2]}, "0:1"])
    def test_a_span_not_made_by_the_source_is_a_source_error(self, span: object) -> None:
        src = sources.kafka("h:1", topic="t", group="g")
        with pytest.raises(SourceError, match="is not \\[start, end\\] offsets per partition"):
            src.position(span)

    def test_a_position_not_made_by_the_source_is_a_source_error(self) -> None:
        src = sources.kafka("h:1", topic="t", group="g")
        with pytest.raises(SourceError, match="is not offsets per partition"):
            src.open({"0": "far"})


class TestPoison:
    def test_without_a_sink_a_bad_message_stops_the_stream_before_its_batch(
        self, broker: Broker, topic: str, tmp_path: Path
    ) -> None:
        broker.produce(topic, [{"id": 1}, b"\xffpoison", {"id": 2}], partition=0)
        seen: list[Any] = []

        @kf.faas("SeenKafka", replace=True)
        def see(flow: kf.Flow, rows: list[Any]) -> None:
            seen.extend(rows)
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder(f"p-{topic}").calculate("SeenKafka").build()
        ckpt = tmp_path / "c.ckpt"
        stream = flow.stream(source(broker, topic), checkpoint=ckpt, idle_timeout=4.0)
        where = f"kafka topic {topic} partition 0 offset 1 is not JSON"
        with stream, pytest.raises(SourceError, match=where) as info:
            list(stream)
        assert seen == []  # the batch holding it never ran
        assert "\\xffpoison" in str(info.value)
        assert stream.committed == 0
        assert broker.committed(topic, topic, 2) == {0: NONE, 1: NONE}


class TestPeers:
    """A partition the group gives a consumer, checked against the other consumers'
    positions and intents in the shared checkpoint (``Source.peers``)."""

    def test_a_partition_starts_past_a_peer_and_its_intent_is_taken_over(
        self, broker: Broker, topic: str, tmp_path: Path
    ) -> None:
        broker.produce(topic, [{"id": i} for i in range(10)], partition=0)
        broker.produce(topic, [{"id": 100 + i} for i in range(10)], partition=1)
        ckpt = Checkpoint(tmp_path / "c.ckpt")
        dead = f"kafka:{broker.bootstrap}/{topic}/{topic}/a"
        ckpt.commit(dead, 1, {"0": 2, "1": 3}, rows=5)  # stored: 0..1 and 100..102
        ckpt.begin(dead, 2, {"0": [2, 5], "1": [3, 3]})  # in flight when a died: 2..4
        src = source(broker, topic, consumer="b")
        src.open(None)
        src.peers(ckpt)
        try:
            got = src.join(read_all(src, 12))
            assert ids(got) == [5, 6, 7, 8, 9, *range(103, 110)]
            assert src.takeovers() == [Takeover(key=dead, span={"0": [2, 5]})]
            assert src.takeovers() == []  # reported once
            assert src.without({"0": [2, 5]}, [{"0": [2, 5], "1": [3, 3]}]) is None
            # the peer's committed position is stored: committed to Kafka for it
            assert broker.committed(topic, topic, 2) == {0: 2, 1: 3}
            assert wait_empty(src) == []
        finally:
            src.close()
            ckpt.close()

    def test_a_peer_without_intents_is_no_takeover(
        self, broker: Broker, topic: str, tmp_path: Path
    ) -> None:
        broker.produce(topic, [{"id": i} for i in range(6)], partition=0)
        broker.produce(topic, [{"id": 100 + i} for i in range(2)], partition=1)
        ckpt = Checkpoint(tmp_path / "c.ckpt")
        ckpt.commit(f"kafka:{broker.bootstrap}/{topic}/{topic}/a", 3, {"0": 4}, rows=4)
        ckpt.commit(f"kafka:{broker.bootstrap}/{topic}/other/a", 3, {"0": 6, "1": 2}, rows=8)
        src = source(broker, topic, consumer="b")
        src.open(None)
        src.peers(ckpt)
        try:
            got = src.join(read_all(src, 4))
            assert ids(got) == [4, 5, 100, 101]  # another group's position counts for nothing
            assert src.takeovers() == []
            assert broker.committed(topic, topic, 2) == {0: 4, 1: NONE}
        finally:
            src.close()
            ckpt.close()

    def test_a_bad_peer_position_stops_the_next_read(
        self, broker: Broker, topic: str, tmp_path: Path
    ) -> None:
        broker.produce(topic, [{"id": 1}], partition=0)
        ckpt = Checkpoint(tmp_path / "c.ckpt")
        ckpt.commit(f"kafka:{broker.bootstrap}/{topic}/{topic}/a", 1, ["not", "offsets"], rows=1)
        src = source(broker, topic, consumer="b")
        src.open(None)
        src.peers(ckpt)
        try:
            end = time.monotonic() + 30
            with pytest.raises(SourceError, match="is not offsets per partition"):  # noqa: PT012
                while time.monotonic() < end:
                    assert src.read(100, 0.5).size == 0
        finally:
            src.close()
            ckpt.close()

    def test_assign_logic_on_given_partitions(self, tmp_path: Path) -> None:
        """``_from_peers`` alone (no broker): floors and takeovers for the partitions
        given, peers of this group and topic only, this consumer's own key excluded."""
        ckpt = Checkpoint(tmp_path / "c.ckpt")
        base = "kafka:h:1/t/g"
        ckpt.commit(f"{base}/a", 4, {"0": 10, "1": 20, "2": 30}, rows=60)
        ckpt.begin(f"{base}/a", 5, {"0": [10, 15], "1": [20, 20], "2": [30, 31]})
        ckpt.begin(f"{base}/a", 6, {"0": [15, 18], "1": [20, 20], "2": [31, 31]})
        ckpt.begin(f"{base}/c", 2, {"1": [40, 44]})  # c held partition 1 later
        ckpt.begin(f"{base}/b", 9, {"0": [90, 99]})  # this consumer's own: not a peer's
        ckpt.begin("kafka:h:1/t/g2/a", 1, {"1": [70, 80]})  # another group
        ckpt.begin(base, 3, {"2": [50, 52]})  # a consumer without a name
        src = sources.kafka("h:1", topic="t", group="g", consumer="b")
        assert isinstance(src, KafkaSource)
        assert src._from_peers([1]) == {}  # no view yet: nothing known
        src.peers(ckpt)
        assert src._from_peers([1]) == {1: 44}
        assert src.takeovers() == [Takeover(key=f"{base}/c", span={"1": [40, 44]})]
        # a's intents span 0 and 2: given 0 only, its records on 0 are the takeover's
        # span (the stream replays a's intents whole; the Saves' marks keep 2 once)
        assert src._from_peers([0]) == {0: 18}
        assert src.takeovers() == [Takeover(key=f"{base}/a", span={"0": [10, 18]})]
        assert src._from_peers([0, 2]) == {0: 18, 2: 52}
        assert src.takeovers() == [
            Takeover(key=base, span={"2": [50, 52]}),
            Takeover(key=f"{base}/a", span={"0": [10, 18], "2": [30, 31]}),
        ]
        assert src._from_peers([3]) == {}
        assert src.takeovers() == []
        # the peers' committed positions are stored, their intents not (not stored yet)
        assert src.position({"0": [18, 18]}) == {"0": 18, "1": 20, "2": 30}
        ckpt.close()

    def test_a_stream_replays_a_dead_consumers_intent_under_its_key(
        self, broker: Broker, topic: str, tmp_path: Path
    ) -> None:
        broker.produce(topic, [{"id": i} for i in range(10)], partition=0)
        db, path = tmp_path / "rows.db", tmp_path / "c.ckpt"
        ckpt = Checkpoint(path)
        dead = f"kafka:{broker.bootstrap}/{topic}/{topic}/a"
        ckpt.begin(dead, 1, {"0": [0, 4]})  # a died in its first batch
        conn = kf.ConnConfig(cname="DB", type="sqlite", addrs=str(db), key="rows")
        flow = kf.FlowBuilder(f"peers-{topic}").save("Store", conn=conn).build()
        src = source(broker, topic, consumer="b")
        stream = flow.stream(
            src, batch_size=100, checkpoint=ckpt, idle_timeout=3.0, delivery="exactly-once"
        )
        with stream:
            outputs = sorted(len(r.output) for r in stream)
        assert outputs == [4, 6]  # b's own 4..9, then a's 0..3 under a's key
        con = sqlite3.connect(db)
        stored = sorted(i for (i,) in con.execute("SELECT id FROM rows"))
        con.close()
        assert stored == list(range(10))
        assert ckpt.intents(dead) == []
        mine, was = ckpt.load(src.key), ckpt.load(dead)
        assert mine is not None
        assert was is not None
        assert (mine.committed, was.committed, was.seq) == (6, 4, 1)
        assert broker.committed(topic, topic, 2)[0] == 10
        ckpt.close()
