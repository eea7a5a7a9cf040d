"""Local servers for the tests and the benchmark: a free loopback port, a wait until a
started server is ready, and a redis-server.

No pytest here, so ``bench/`` starts its servers the same way as the tests; a server that
is missing or does not start raises ``ServerError`` naming it, its address and the tail
of its log, and each caller turns that into a skip, a failure or an exit message.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from types import TracebackType

import attrs

HOST = "127.0.0.1"
"""Every server here listens on loopback only."""

__all__ = [
    "HOST",
    "Server",
    "ServerError",
    "ServerMissing",
    "free_port",
    "launch",
    "listening",
    "log_tail",
    "redis_pong",
    "start_redis",
    "stop_process",
    "wait_ready",
]


class ServerError(RuntimeError):
    """A local server could not be started; the message names it and its address."""


class ServerMissing(ServerError):
    """The server's program is not installed on this machine."""


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    with closing(socket.socket()) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def listening(port: int, host: str = HOST) -> bool:
    """Whether ``host:port`` accepts a TCP connection right now."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def redis_pong(port: int, host: str = HOST) -> bool:
    """Whether a redis-server at ``host:port`` answers PING (it has loaded and serves)."""
    try:
        with socket.create_connection((host, port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def log_tail(log: Path | None, chars: int = 2000) -> str:
    """The last ``chars`` characters of a server's log ("" when there is none to read)."""
    if log is None:
        return ""
    try:
        return log.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def wait_ready(
    name: str,
    proc: subprocess.Popen[bytes],
    port: int,
    *,
    host: str = HOST,
    probe: Callable[[], bool] | None = None,
    timeout: float = 10.0,
    log: Path | None = None,
) -> None:
    """Return once ``probe()`` is true (by default: ``host:port`` accepts a connection).

    Raises ``ServerError`` naming ``name``, its address, why (the process exited, with its
    code, or ``timeout`` seconds passed) and the tail of ``log``, when there is one.
    """
    ready = probe if probe is not None else lambda: listening(port, host)
    deadline = time.monotonic() + timeout
    while not ready():
        code = proc.poll()
        if code is not None:
            why = f"it exited with code {code}"
        elif time.monotonic() > deadline:
            why = f"not ready after {timeout:g} s"
        else:
            time.sleep(0.05)
            continue
        tail = log_tail(log)
        said = f"; the end of its log {log}:\n{tail}" if tail else ""
        raise ServerError(f"{name} did not start on {host}:{port} ({why}){said}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate ``proc`` and wait for it; kill it when it does not end within ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


@attrs.define
class Server:
    """A server process ``launch`` started and found ready; stopped on leaving a ``with``."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    host: str = HOST
    log: Path | None = None

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        """Terminate the process (kill it if it does not end) and wait for it."""
        stop_process(self.proc)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def launch(
    name: str,
    args: Sequence[str],
    port: int,
    *,
    log: Path | None = None,
    cwd: Path | None = None,
    probe: Callable[[], bool] | None = None,
    timeout: float = 10.0,
) -> Server:
    """Start ``args`` (its output into ``log``, or nowhere) and wait until it is ready.

    ``probe`` and ``timeout`` are ``wait_ready``'s. A server that is not ready is stopped
    and ``ServerError`` raised, so a caller never has a half-started process to clean up.
    """
    try:
        if log is None:
            proc = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd
            )
        else:
            with log.open("wb") as out:
                proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    except OSError as exc:
        raise ServerError(f"{name} could not be run on {HOST}:{port} ({args[0]}): {exc}") from exc
    server = Server(name, proc, port, log=log)
    try:
        wait_ready(name, proc, port, probe=probe, timeout=timeout, log=log)
    except BaseException:
        server.stop()
        raise
    return server


def start_redis(workdir: Path, timeout: float = 10.0) -> Server:
    """A redis-server without persistence on a free loopback port, answering PING.

    Its log is ``workdir/redis-<port>.log``. Raises ``ServerMissing`` when redis-server is
    not installed and ``ServerError`` when it does not start.
    """
    program = shutil.which("redis-server")
    if program is None:
        raise ServerMissing("redis-server is not installed (make system-deps installs it)")
    port = free_port()
    args = [program, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    args += ["--dir", str(workdir)]
    return launch(
        "redis-server",
        args,
        port,
        log=workdir / f"redis-{port}.log",
        probe=lambda: redis_pong(port),
        timeout=timeout,
    )
