"""Prometheus metrics with KisFlow's names and labels, on kisflow's own registry.

Off by default, and off costs nothing measurable: a run reads one module attribute when
it starts and checks it once per stage call, never per row. Turn metrics on from a
``GlobalConfig`` (what a ``kistype: global`` file holds) or from code::

    import kisflow.metrics

    server = kisflow.metrics.enable(serve=True, address="127.0.0.1:9108")
    ...                       # runs are counted; GET http://127.0.0.1:9108/metrics
    kisflow.metrics.disable()  # stops the server; the next enable() starts from zero

KisFlow's metrics (SEMANTICS.md section 11) keep their names, types and labels:

=========================  =========  ===========================================
``kisflow_data_total``     counter    rows given to runs as source, all flows
``flow_data_total``        gauge      the same, per ``flow_name``
``flow_schedule_cnts``     gauge      runs started, per ``flow_name``
``func_schedule_cnts``     gauge      stage calls, per ``func_name``, ``func_mode``
``func_run_duration``      histogram  ms per stage call, per ``func_name``, ``func_mode``
``flow_run_duration``      histogram  ms per completed run, per ``flow_name``
=========================  =========  ===========================================

kisflow adds counters per stage, labelled ``flow_name``, ``func_name``, ``func_mode``:
``func_rows_in_total``, ``func_rows_out_total``, ``func_rows_filtered_total``,
``func_rows_dead_lettered_total`` and ``func_retries_total`` (see ``StageStats``).

``prometheus_client`` is an optional dependency: ``pip install 'kisflow[metrics]'``.
"""

from __future__ import annotations

import threading
import urllib.parse
from typing import TYPE_CHECKING, Any

from kisflow.config import GlobalConfig
from kisflow.errors import ConfigError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from kisflow.stage import Stage

__all__ = [
    "DEFAULT_ADDRESS",
    "DURATION_BUCKETS_MS",
    "MetricsServer",
    "disable",
    "enable",
    "enabled",
    "registry",
    "scrape",
    "serve",
]

DEFAULT_ADDRESS = "127.0.0.1:20004"
"""Where ``serve`` listens when no address is given (KisFlow's port, on loopback only)."""

DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.1,
    0.5,
    1,
    5,
    10,
    50,
    100,
    500,
    1000,
    5000,
    10000,
    60000,
)
"""Histogram buckets, in milliseconds, of ``func_run_duration`` and ``flow_run_duration``."""

_EXTRA = "kisflow.metrics needs prometheus_client; install it with pip install 'kisflow[metrics]'"


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ModuleNotFoundError as exc:  # pragma: no cover - the dev extra installs it
        raise ConfigError(_EXTRA, key="prometheus_enable") from exc
    return prometheus_client


class _Metrics:
    """The metric objects of one enable() .. disable() period, on a fresh registry."""

    def __init__(self) -> None:
        pc = _prometheus()
        reg = pc.CollectorRegistry(auto_describe=True)
        self.registry: CollectorRegistry = reg
        stage_labels = ("flow_name", "func_name", "func_mode")
        self.kisflow_data = pc.Counter(
            "kisflow_data", "Rows given to runs as source, all flows", registry=reg
        )
        self.flow_data = pc.Gauge(
            "flow_data_total", "Rows given to runs as source", ("flow_name",), registry=reg
        )
        self.flow_schedule = pc.Gauge(
            "flow_schedule_cnts", "Runs started", ("flow_name",), registry=reg
        )
        self.func_schedule = pc.Gauge(
            "func_schedule_cnts", "Stage calls", ("func_name", "func_mode"), registry=reg
        )
        self.func_duration = pc.Histogram(
            "func_run_duration",
            "Milliseconds per stage call (conversion and retries included)",
            ("func_name", "func_mode"),
            buckets=DURATION_BUCKETS_MS,
            registry=reg,
        )
        self.flow_duration = pc.Histogram(
            "flow_run_duration",
            "Milliseconds per completed run",
            ("flow_name",),
            buckets=DURATION_BUCKETS_MS,
            registry=reg,
        )
        self.rows_in = pc.Counter(
            "func_rows_in", "Rows a stage received", stage_labels, registry=reg
        )
        self.rows_out = pc.Counter(
            "func_rows_out", "Rows a stage passed on", stage_labels, registry=reg
        )
        self.rows_filtered = pc.Counter(
            "func_rows_filtered",
            "Rows a stage dropped without dead-lettering them",
            stage_labels,
            registry=reg,
        )
        self.rows_dead = pc.Counter(
            "func_rows_dead_lettered",
            "Rows a stage sent to its dead-letter sink",
            stage_labels,
            registry=reg,
        )
        self.retries = pc.Counter(
            "func_retries", "FaaS calls retried after an error", stage_labels, registry=reg
        )
        self._children: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    def run_started(self, flow: str, source_rows: int) -> None:
        """Count one run and its source rows."""
        self.kisflow_data.inc(source_rows)
        self.flow_data.labels(flow).inc(source_rows)
        self.flow_schedule.labels(flow).inc()

    def _stage_children(self, flow: str, stage: Stage) -> tuple[Any, ...]:
        key = (flow, stage.name, stage.mode.value)
        children = self._children.get(key)
        if children is None:
            with self._lock:
                labels = key
                func = (stage.name, stage.mode.value)
                children = (
                    self.func_schedule.labels(*func),
                    self.func_duration.labels(*func),
                    self.rows_in.labels(*labels),
                    self.rows_out.labels(*labels),
                    self.rows_filtered.labels(*labels),
                    self.rows_dead.labels(*labels),
                    self.retries.labels(*labels),
                )
                self._children[key] = children
        return children

    def stage_done(
        self,
        flow: str,
        stage: Stage,
        *,
        rows_in: int,
        rows_out: int,
        filtered: int,
        dead: int,
        retries: int,
        seconds: float,
    ) -> None:
        """Count one stage call."""
        schedule, duration, c_in, c_out, c_filtered, c_dead, c_retries = self._stage_children(
            flow, stage
        )
        schedule.inc()
        duration.observe(seconds * 1000.0)
        c_in.inc(rows_in)
        c_out.inc(rows_out)
        if filtered:
            c_filtered.inc(filtered)
        if dead:
            c_dead.inc(dead)
        if retries:
            c_retries.inc(retries)

    def run_done(self, flow: str, seconds: float) -> None:
        """Observe one completed run's duration."""
        self.flow_duration.labels(flow).observe(seconds * 1000.0)


_active: _Metrics | None = None
"""The live metrics, or None when off. Runs read this once when they start."""

_server: MetricsServer | None = None
_lock = threading.Lock()


class MetricsServer:
    """An HTTP server answering ``GET /metrics`` from kisflow's registry, in a daemon thread."""

    def __init__(self, host: str, port: int, reg: CollectorRegistry) -> None:
        pc = _prometheus()
        try:
            self._httpd, self._thread = pc.start_http_server(port, addr=host, registry=reg)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {_join(host, port)}: {exc}; "
                f"pick a free port in prometheus_serve",
                key="prometheus_serve",
            ) from exc
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._stopped = False

    @property
    def url(self) -> str:
        """The scrape URL, e.g. ``http://127.0.0.1:20004/metrics``."""
        return f"http://{_join(self.host, self.port)}/metrics"

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "serving"
        return f"<MetricsServer {self.url} {state}>"


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"``, ``":port"`` or ``"port"`` -> (host, port); the host defaults to loopback.

    Raises:
        ConfigError: the address has no valid port.
    """
    text = address.strip()
    if text.isdigit():
        text = ":" + text
    try:
        parts = urllib.parse.urlsplit("//" + text)
        port = parts.port
        host = parts.hostname or "127.0.0.1"
    except ValueError as exc:
        raise ConfigError(
            f"prometheus_serve {address!r} is not host:port: {exc}", key="prometheus_serve"
        ) from exc
    if port is None or parts.path or parts.query or parts.fragment:
        raise ConfigError(
            f"prometheus_serve {address!r} is not host:port; e.g. '127.0.0.1:20004'",
            key="prometheus_serve",
        )
    return host, port


def enable(
    config: GlobalConfig | None = None,
    *,
    serve: bool | None = None,
    address: str | None = None,
) -> MetricsServer | None:
    """Turn metrics on; with ``serve``, also start the ``/metrics`` endpoint and return it.

    Args:
        config: a ``GlobalConfig``: ``prometheus_enable`` false leaves metrics as they
            are and returns None; ``prometheus_listen`` and ``prometheus_serve`` give the
            defaults of ``serve`` and ``address``. None means "enable, do not serve".
        serve: start the HTTP endpoint (default: ``config.prometheus_listen``, else no).
        address: ``host:port`` to listen on; a missing host means 127.0.0.1 (default:
            ``config.prometheus_serve``, else ``DEFAULT_ADDRESS``). Port 0 picks a free one.

    Calling it again while on keeps the counts; a second server is an error.

    Raises:
        ConfigError: bad address, busy port, a server already running, or
            prometheus_client not installed.
    """
    global _active, _server
    if config is not None and not isinstance(config, GlobalConfig):
        raise ConfigError(
            f"metrics.enable() takes a GlobalConfig or None, got {type(config).__name__}"
        )
    if config is not None and not config.prometheus_enable:
        return None
    if serve is None:
        serve = config.prometheus_listen if config is not None else False
    if address is None and config is not None and config.prometheus_serve:
        address = config.prometheus_serve
    with _lock:
        if _active is None:
            _active = _Metrics()
        if not serve:
            return None
        if _server is not None:
            raise ConfigError(
                f"metrics are already served at {_server.url}; call kisflow.metrics.disable() "
                f"(or stop that server) first",
                key="prometheus_listen",
            )
        host, port = parse_address(address or DEFAULT_ADDRESS)
        _server = MetricsServer(host, port, _active.registry)
        return _server


def serve(address: str = DEFAULT_ADDRESS) -> MetricsServer:
    """Enable metrics and serve them at ``address`` (``enable(serve=True, address=...)``)."""
    server = enable(serve=True, address=address)
    assert server is not None
    return server


def disable() -> None:
    """Stop the endpoint if one runs and turn metrics off; counts are dropped.

    Runs already under way finish counting into the old registry, which nothing serves.
    """
    global _active, _server
    with _lock:
        server, _server = _server, None
        _active = None
    if server is not None:
        server.stop()


def enabled() -> bool:
    """Whether metrics are on."""
    return _active is not None


def registry() -> CollectorRegistry:
    """kisflow's registry (to serve it your own way, or to collect it in tests).

    Raises:
        ConfigError: metrics are off.
    """
    active = _active
    if active is None:
        raise ConfigError(
            "kisflow metrics are off; call kisflow.metrics.enable() first",
            key="prometheus_enable",
        )
    return active.registry


def scrape() -> str:
    """The current metrics in Prometheus' text format, without HTTP."""
    text: bytes = _prometheus().generate_latest(registry())
    return text.decode("utf-8")
