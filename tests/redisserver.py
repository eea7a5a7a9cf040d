"""A real redis-server on a free loopback port, for the Redis tests (tests/servers.py starts it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.servers import ServerError, ServerMissing, free_port, start_redis

__all__ = ["free_port", "redis_server"]


@contextmanager
def redis_server(workdir: Path) -> Iterator[int]:
    """Start redis-server (no persistence) on a free port; yield the port; stop it.

    Skips the test when redis-server is not installed and fails it when it does not start.
    """
    try:
        server = start_redis(workdir)
    except ServerMissing as exc:
        pytest.skip(f"{exc}; `make test` installs it")
    except ServerError as exc:
        pytest.fail(str(exc))
    with server:
        yield server.port
