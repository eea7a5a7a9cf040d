"""tests/servers.py: free ports, the wait until a server is ready, its errors, redis-server.

Real processes throughout: small Python children that listen, exit or hang, and a real
redis-server; the callers' translations (a skip, a failure, bench's exit) are checked too.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import stream
from tests import servers
from tests.redisserver import redis_server
from tests.servers import ServerError, ServerMissing, launch, start_redis

LISTEN = (
    "import socket, sys, time\n"
    "s = socket.socket()\n"
    "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
    "s.listen()\n"
    "time.sleep(60)\n"
)
HANG = "import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(60)\n"


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port this test listens on (and never answers), so a server cannot bind it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_free_port_can_be_bound() -> None:
    port = servers.free_port()
    assert 0 < port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # raises if something holds it
    assert not servers.listening(port)


def test_a_listening_server_is_ready_and_stopped_on_leaving(tmp_path: Path) -> None:
    port = servers.free_port()
    log = tmp_path / "listen.log"
    with launch("listener", [sys.executable, "-c", LISTEN, str(port)], port, log=log) as server:
        assert server.address == f"127.0.0.1:{port}"
        assert servers.listening(port)
        assert server.proc.poll() is None
    assert server.proc.returncode is not None
    assert not servers.listening(port)


def test_a_server_that_exits_names_itself_its_code_and_its_log(tmp_path: Path) -> None:
    port = servers.free_port()
    code = "import sys; print('cannot bind: address in use', flush=True); sys.exit(3)"
    with pytest.raises(ServerError) as info:
        launch("fakesrv", [sys.executable, "-c", code], port, log=tmp_path / "f.log", timeout=30)
    message = str(info.value)
    assert message.startswith(f"fakesrv did not start on 127.0.0.1:{port} (")
    assert "(it exited with code 3)" in message
    assert message.endswith("cannot bind: address in use\n")
    assert str(tmp_path / "f.log") in message


def test_a_server_never_ready_is_stopped_and_named(tmp_path: Path) -> None:
    port = servers.free_port()
    pid_file = tmp_path / "pid"

    def started() -> bool:  # not ready, once the child has written its pid
        for _ in range(600):
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.05)
        return False

    argv = [sys.executable, "-c", HANG, str(pid_file)]
    with pytest.raises(ServerError, match=rf"^hanger did not start on 127\.0\.0\.1:{port} "):
        launch("hanger", argv, port, probe=started, timeout=0.2)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # stopped and reaped: no such process
        os.kill(pid, 0)


def test_the_timeout_is_said(tmp_path: Path) -> None:
    port = servers.free_port()
    calls: list[int] = []

    def probe() -> bool:
        calls.append(1)
        return False

    argv = [sys.executable, "-c", HANG, str(tmp_path / "pid")]
    with pytest.raises(ServerError) as info:
        launch("hanger", argv, port, probe=probe, timeout=1)
    assert str(info.value) == f"hanger did not start on 127.0.0.1:{port} (not ready after 1 s)"
    assert len(calls) >= 2  # the probe was asked again until the deadline


def test_a_program_that_cannot_run_is_a_server_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-server")
    with pytest.raises(ServerError, match=r"^nosuch could not be run on 127\.0\.0\.1:\d+ \("):
        launch("nosuch", [missing], servers.free_port())


def _callers_say(tmp_path: Path, fixture_raises: type[BaseException], text: str) -> None:
    """The tests' redis_server raises ``fixture_raises`` (a skip, a failure) and bench's
    redis_server its SystemExit, both with start_redis's message, which starts ``text``."""
    with pytest.raises(fixture_raises, match=f"^{text}"), redis_server(tmp_path):
        pass
    bench_says = rf"^bench/stream\.py: {text}"
    with pytest.raises(SystemExit, match=bench_says), stream.redis_server(tmp_path):
        pass


def test_start_redis_answers_ping_until_stopped(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed; `make test` installs it")
    with start_redis(tmp_path) as server:
        assert server.name == "redis-server"
        assert servers.redis_pong(server.port)
        assert server.log == tmp_path / f"redis-{server.port}.log"
    assert not servers.redis_pong(server.port)


def test_redis_on_a_taken_port_fails_with_its_log(
    tmp_path: Path, held_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed; `make test` installs it")
    monkeypatch.setattr(servers, "free_port", lambda: held_port)
    with pytest.raises(ServerError) as info:
        start_redis(tmp_path)
    message = str(info.value)
    assert message.startswith(f"redis-server did not start on 127.0.0.1:{held_port} (it exited")
    assert "Address already in use" in message
    _callers_say(tmp_path, pytest.fail.Exception, "redis-server did not start")


def test_redis_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerMissing, match=r"^redis-server is not installed"):
        start_redis(tmp_path)
    _callers_say(tmp_path, pytest.skip.Exception, "redis-server is not installed")
