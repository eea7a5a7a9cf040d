"""The ``redis`` connector (extra ``kisflow[redis]``): ``key`` names a list or a stream.

``addrs`` is ``host:port`` (the first of KisFlow's comma-separated list) or a
``redis://`` URL. ``params.structure`` is ``list`` (default: Save RPUSHes one JSON value
per row, Load LRANGEs) or ``stream`` (Save XADDs ``{"row": json}``, Load XRANGEs).
Reads do not remove anything. ``params.db`` selects the database, ``params.timeout``
the socket timeout in seconds (default 5).

Run by an executor (process pool, Dask), Save adds the JSON array ``[flow, stage,
partition key]`` to the set ``<key>:kisflow_partitions`` in the same MULTI/EXEC as the
rows, guarded by WATCH on that set, and writes nothing for a partition already in it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kisflow.connectors._base import (
    LEDGER,
    SaveMark,
    Store,
    matches,
    to_json_text,
)

__all__ = ["RedisConnector"]

_STRUCTURES = ("list", "stream")


class RedisConnector(Store):
    """Rows as JSON values in a Redis list or stream."""

    type_name = "redis"

    def check(self) -> None:
        """Check the config; ``MissingExtraError`` when the redis package is missing."""
        super().check()
        self.require("redis", "redis")
        if not self.config.key:
            raise self.error("has no key; set it to the list or stream name")
        self._address()
        self._structure(self.config.params)

    def _address(self) -> tuple[str, int] | str:
        first = self.config.addrs.split(",")[0].strip()
        if "://" in first:
            return first
        host, sep, port = first.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise self.error("addrs must be host:port or a redis:// URL")
        return host, int(port)

    def _structure(self, params: Mapping[str, Any]) -> str:
        structure = params.get("structure", "list")
        if structure not in _STRUCTURES:
            raise self.error(f"params.structure must be list or stream, got {structure!r}")
        return str(structure)

    def _client(self, params: Mapping[str, Any]) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        timeout = params.get("timeout", 5)
        db = params.get("db", 0)
        address = self._address()
        options: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "decode_responses": True,
            # kisflow retries by the stage's retry_times; redis-py must not retry too.
            "retry": Retry(NoBackoff(), 0),
        }
        if isinstance(address, str):
            return redis.Redis.from_url(address, **options)
        host, port = address
        return redis.Redis(host=host, port=port, db=db, **options)

    def ledger_key(self) -> str:
        """The set beside the list/stream that records the partitions already saved."""
        return f"{self.config.key}:{LEDGER}"

    def save(
        self, rows: Sequence[Any], params: Mapping[str, Any], mark: SaveMark | None = None
    ) -> int:
        import redis

        structure = self._structure(params)
        values = []
        for i, row in enumerate(rows):
            try:
                values.append(to_json_text(row))
            except (TypeError, ValueError) as exc:
                raise self.error(f"cannot store row {i} as JSON: {exc}") from exc
        if not values:
            return 0
        try:
            with self._client(params) as client, client.pipeline(transaction=True) as pipe:
                if mark is None:
                    self._queue(pipe, structure, values)
                    pipe.execute()
                elif not self._save_once(pipe, structure, values, mark):
                    return 0
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise self.unreachable(exc) from exc
        except redis.RedisError as exc:
            raise self.error(f"failed to save to {self.config.key!r}: {exc}") from exc
        return len(values)

    def _queue(self, pipe: Any, structure: str, values: list[str]) -> None:
        if structure == "list":
            pipe.rpush(self.config.key, *values)
        else:
            for value in values:
                pipe.xadd(self.config.key, {"row": value})

    def _save_once(self, pipe: Any, structure: str, values: list[str], mark: SaveMark) -> bool:
        """Rows and ledger entry in one MULTI/EXEC under WATCH; False if already recorded.

        A WATCH conflict (another partition recorded meanwhile) retries the check.
        """
        import redis

        ledger, member = self.ledger_key(), mark.as_json()
        while True:
            try:
                pipe.watch(ledger)
                if pipe.sismember(ledger, member):
                    pipe.unwatch()
                    return False
                pipe.multi()
                self._queue(pipe, structure, values)
                pipe.sadd(ledger, member)
                pipe.execute()
                return True
            except redis.WatchError:
                pipe.reset()
                continue

    def load(self, params: Mapping[str, Any]) -> list[Any]:
        import redis

        structure = self._structure(params)
        where, limit = self.where_limit(params)
        try:
            with self._client(params) as client:
                if structure == "list":
                    raw = client.lrange(self.config.key, 0, -1)
                else:
                    raw = [
                        fields.get("row", "null") for _id, fields in client.xrange(self.config.key)
                    ]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise self.unreachable(exc) from exc
        except redis.RedisError as exc:
            raise self.error(f"failed to load from {self.config.key!r}: {exc}") from exc
        out: list[Any] = []
        for i, text in enumerate(raw):
            if limit is not None and len(out) >= limit:
                break
            try:
                row = json.loads(text)
            except ValueError as exc:
                raise self.error(f"entry {i} of {self.config.key!r} is not JSON: {exc}") from exc
            if matches(row, where):
                out.append(row)
        return out
