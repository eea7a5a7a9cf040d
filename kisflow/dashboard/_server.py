"""The dashboard's HTTP server: one page, its JSON and its server-sent events, read-only.

A stdlib ``ThreadingHTTPServer`` in a daemon thread answers ``GET`` only:

- ``/``: the page (HTML, CSS and script shipped in the package: no CDN, no internet);
- ``/api/flows``: every flow's figures as JSON (``Figures.snapshot``);
- ``/api/chain.svg?flow=NAME``: the flow's chain as SVG;
- ``/events``: the same JSON as server-sent events, ``INTERVAL`` seconds apart.
"""

from __future__ import annotations

import importlib.resources
import json
import socket
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loguru import logger

from kisflow import metrics, observers
from kisflow.dashboard._chain import chain_svg
from kisflow.dashboard._figures import Figures
from kisflow.errors import ConfigError
from kisflow.rows import safe_repr

__all__ = ["DEFAULT_ADDRESS", "INTERVAL", "Dashboard", "parse_address", "serve"]

DEFAULT_ADDRESS = "127.0.0.1:0"
"""Where ``serve`` listens by default: loopback, a free port."""

INTERVAL = 0.5
"""Seconds between two server-sent events (the page updates twice a second)."""

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
}


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"``, ``":port"`` or ``"port"`` -> (host, port); the host defaults to loopback.

    Raises:
        ConfigError: the address has no valid port.
    """
    return metrics.parse_address(address, what="dashboard address", key=None, example=_EXAMPLE)


_EXAMPLE = "127.0.0.1:8050"


def _json(data: Any) -> bytes:
    """JSON of the figures; a stream position that is not JSON shows as its repr."""
    return json.dumps(data, default=safe_repr, allow_nan=False).encode()


class Dashboard:
    """A running dashboard: its ``url``, its ``figures`` and ``stop()`` (also a context manager).

    While it runs, its ``Figures`` observe every run of the process.
    """

    def __init__(self, host: str, port: int) -> None:
        self.figures = Figures()
        self._stopping = threading.Event()
        self._svgs: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}
        self._svg_lock = threading.Lock()
        server_class = _Server6 if ":" in host else _Server
        try:
            self._httpd: _Server = server_class((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve the dashboard on {_join(host, port)}: {exc}; pick a free port "
                f"(port 0 picks one)"
            ) from exc
        self._httpd.dashboard = self
        self.host = host
        self.port: int = self._httpd.server_address[1]
        observers.add(self.figures)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"kisflow-dashboard-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The page's address, e.g. ``http://127.0.0.1:8050/``."""
        return f"http://{_join(self.host, self.port)}/"

    @property
    def stopped(self) -> bool:
        """Whether ``stop`` was called."""
        return self._stopping.is_set()

    def flows(self) -> list[dict[str, Any]]:
        """The figures ``/api/flows`` serves."""
        return self.figures.snapshot()

    def svg(self, flow: str) -> bytes | None:
        """The chain of ``flow`` as SVG (drawn once per chain), or None for an unknown flow."""
        for view in self.figures.snapshot():
            if view["name"] == flow:
                chain = tuple((s["name"], s["mode"]) for s in view["stages"])
                break
        else:
            return None
        key = (flow, chain)
        with self._svg_lock:
            svg = self._svgs.get(key)
        if svg is None:
            svg = chain_svg(flow, chain).encode()
            with self._svg_lock:
                self._svgs[key] = svg
        return svg

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as the dashboard is stopping."""
        return self._stopping.wait(seconds)

    def stop(self) -> None:
        """Stop observing, stop serving and close the socket (idempotent)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        observers.remove(self.figures)
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Dashboard {self.url} {'stopped' if self.stopped else 'serving'}>"


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    dashboard: Dashboard

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that failed (most often: the page went away) is logged, not printed."""
        logger.opt(exception=True).debug("dashboard: request from {} failed", client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """Answers GET (and HEAD); any other method is refused: the dashboard is read-only."""

    server: _Server
    server_version = "kisflow-dashboard"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("dashboard: " + format, *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        dashboard = self.server.dashboard
        if url.path in _STATIC:
            name, content_type = _STATIC[url.path]
            body = (importlib.resources.files("kisflow.dashboard") / "static" / name).read_bytes()
            self._send(HTTPStatus.OK, body, content_type)
        elif url.path == "/api/flows":
            self._send(HTTPStatus.OK, _json(dashboard.flows()), "application/json")
        elif url.path == "/api/chain.svg":
            flow = urllib.parse.parse_qs(url.query).get("flow", [""])[0]
            svg = dashboard.svg(flow)
            if svg is None:
                self._send(HTTPStatus.NOT_FOUND, b"no such flow\n", "text/plain; charset=utf-8")
            else:
                self._send(HTTPStatus.OK, svg, "image/svg+xml")
        elif url.path == "/events":
            self._events(dashboard)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _refuse(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only\n", "text/plain; charset=utf-8")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _events(self, dashboard: Dashboard) -> None:
        """Server-sent events: the figures every ``INTERVAL`` s until either side stops."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            self.wfile.write(b"retry: 1000\n\n")
            while True:
                self.wfile.write(b"data: " + _json(dashboard.flows()) + b"\n\n")
                self.wfile.flush()
                if dashboard.wait(INTERVAL):
                    return
        except (BrokenPipeError, ConnectionResetError):  # the page went away
            return


def serve(address: str = DEFAULT_ADDRESS) -> Dashboard:
    """Serve the live dashboard at ``address`` (``host:port``; port 0 picks a free one).

    Returns the running ``Dashboard``: its ``url``, and ``stop()`` (or use it in a
    ``with`` block). From now until it stops, every run of this process is shown.

    Raises:
        ConfigError: a bad address or a port in use.
    """
    if not isinstance(address, str):
        raise ConfigError(f"dashboard address must be 'host:port', got {type(address).__name__}")
    host, port = parse_address(address)
    return Dashboard(host, port)
