"""Prometheus metrics with KisFlow's names and labels, on kisflow's own registry.

Off by default, and off costs nothing measurable: metrics are an observer of runs
(``kisflow.observers``), registered by ``enable`` and removed by ``disable``; a run with
no observer checks one tuple once per stage call, never per row. Turn metrics on from a
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
``func_schedule_cnts``     gauge      FaaS calls (failed ones too), per function and mode
``func_run_duration``      histogram  ms per stage call that succeeded, per function and mode
``flow_run_duration``      histogram  ms per completed run, per ``flow_name``
=========================  =========  ===========================================

Like KisFlow, ``func_schedule_cnts`` counts every call it makes (each failed try, the
final failure, the success) and the histograms observe what succeeded, in KisFlow's
buckets (``FUNC_DURATION_BUCKETS_MS``, ``FLOW_DURATION_BUCKETS_MS``: from 0.005 ms).
kisflow adds counters per stage, labelled ``flow_name``, ``func_name``, ``func_mode``:
``func_rows_in_total``, ``func_rows_out_total``, ``func_rows_filtered_total``,
``func_rows_dead_lettered_total`` and ``func_retries_total`` (see ``StageStats``).

``prometheus_client`` is an optional dependency: ``pip install 'kisflow[metrics]'``;
without it, turning metrics on raises ``MissingExtraError`` naming that extra.
"""

from __future__ import annotations

import bisect
import math
import threading
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kisflow import observers
from kisflow.config import GlobalConfig
from kisflow.errors import ConfigError, MissingExtraError
from kisflow.observers import Observer, StageCall

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from kisflow._context import RunInfo
    from kisflow.result import RunResult
    from kisflow.stage import Stage

__all__ = [
    "DEFAULT_ADDRESS",
    "DURATION_BUCKETS_MS",
    "FLOW_DURATION_BUCKETS_MS",
    "FUNC_DURATION_BUCKETS_MS",
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

FUNC_DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.005,
    0.01,
    0.03,
    0.08,
    0.1,
    0.5,
    1.0,
    5.0,
    10.0,
    100.0,
    1000.0,
    5000.0,
    30000.0,
)
"""Buckets (ms) of ``func_run_duration``: KisFlow's (stage calls here take tens of µs)."""

FLOW_DURATION_BUCKETS_MS: tuple[float, ...] = (*FUNC_DURATION_BUCKETS_MS, 60000.0)
"""Buckets (ms) of ``flow_run_duration``: KisFlow's, the function's up to one minute."""

DURATION_BUCKETS_MS = FLOW_DURATION_BUCKETS_MS
"""The older name of ``FLOW_DURATION_BUCKETS_MS`` (once the buckets of both histograms)."""


def _prometheus() -> Any:
    """The prometheus_client module, or ``MissingExtraError`` naming ``kisflow[metrics]``."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise MissingExtraError(
            "metrics", "prometheus_client", needed_by="kisflow.metrics"
        ) from exc
    return prometheus_client


# Per-stage cells: [calls, rows_in, rows_out, filtered, dead, retries, ms_sum, *buckets];
# per-flow cells: [runs, source_rows, completed_runs, ms_sum, *buckets].
_CALLS, _IN, _OUT, _FILTERED, _DEAD, _RETRIES, _STAGE_SUM = range(7)
_RUNS, _DATA, _DONE, _FLOW_SUM = range(4)


class _Metrics(Observer):
    """The figures of one enable() .. disable() period, and the collector that shows them.

    Runs add plain integers under one lock (about a microsecond per stage call); the
    Prometheus metric families are built only when the registry is collected (a scrape),
    which keeps metrics on cheap for many small runs.
    """

    def __init__(self) -> None:
        pc = _prometheus()
        self._lock = threading.Lock()
        self._stages: dict[tuple[str, str, str], list[float]] = {}
        self._flows: dict[str, list[float]] = {}
        # (flow, stage id) -> the cells of (flow, function, mode); read without the lock.
        self._by_stage: dict[tuple[str, str], list[float]] = {}
        self._source_rows = 0
        self.registry: CollectorRegistry = pc.CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def run_started(self, run: RunInfo, rows: int) -> None:
        """Count one run and its source rows."""
        flow, source_rows = run.flow_name, rows
        with self._lock:
            cells = self._flows.get(flow)
            if cells is None:
                cells = self._flows[flow] = [0] * (_FLOW_SUM + 2 + len(FLOW_DURATION_BUCKETS_MS))
            cells[_RUNS] += 1
            cells[_DATA] += source_rows
            self._source_rows += source_rows

    def stage_done(self, run: RunInfo, call: StageCall) -> None:
        """Count one completed stage call (its failed tries were counted as they failed)."""
        stage, _, rows_in, rows_out, filtered, dead, seconds, _ = call
        ms = seconds * 1000.0
        bucket = _STAGE_SUM + 1 + bisect.bisect_left(FUNC_DURATION_BUCKETS_MS, ms)
        cells = self._by_stage.get((run.flow_name, stage.id))
        if cells is None:
            cells = self._stage_cells(run.flow_name, stage)
        with self._lock:
            cells[_CALLS] += 1
            cells[_IN] += rows_in
            cells[_OUT] += rows_out
            cells[_FILTERED] += filtered
            cells[_DEAD] += dead
            cells[_STAGE_SUM] += ms
            cells[bucket] += 1

    def _stage_cells(self, flow: str, stage: Stage) -> list[float]:
        """The cells of ``stage`` of ``flow``, by stage id (made once, under the lock)."""
        cells = self._by_stage.get((flow, stage.id))
        if cells is None:
            with self._lock:
                cells = self._by_stage[flow, stage.id] = self._cells(
                    (flow, stage.name, stage.mode.value)
                )
        return cells

    def _cells(self, key: tuple[str, str, str]) -> list[float]:
        cells = self._stages.get(key)
        if cells is None:
            cells = self._stages[key] = [0] * (_STAGE_SUM + 2 + len(FUNC_DURATION_BUCKETS_MS))
        return cells

    def call_failed(self, run: RunInfo, stage: Stage, attempt: int, error: BaseException) -> None:
        """Count a failed FaaS call as a call, as KisFlow counts every call it makes."""
        cells = self._stage_cells(run.flow_name, stage)
        with self._lock:
            cells[_CALLS] += 1

    def retried(self, run: RunInfo, stage: Stage, attempt: int, error: BaseException) -> None:
        """Count one retry, when it happens (so retries of a failed run count too)."""
        with self._lock:
            self._cells((run.flow_name, stage.name, stage.mode.value))[_RETRIES] += 1

    def run_done(self, run: RunInfo, result: RunResult | None, error: BaseException | None) -> None:
        """Observe one completed run's duration (failed runs are counted as started only)."""
        if result is None:
            return
        flow = run.flow_name
        ms = result.duration * 1000.0
        bucket = _FLOW_SUM + 1 + bisect.bisect_left(FLOW_DURATION_BUCKETS_MS, ms)
        with self._lock:
            cells = self._flows[flow]
            cells[_DONE] += 1
            cells[_FLOW_SUM] += ms
            cells[bucket] += 1

    # -- the prometheus_client collector protocol ---------------------------------------

    def collect(self) -> Iterator[Any]:
        """Build the metric families from a consistent copy of the figures."""
        _prometheus()
        import prometheus_client.core as core

        with self._lock:
            source_rows = self._source_rows
            flows = {k: list(v) for k, v in self._flows.items()}
            stages = {k: list(v) for k, v in self._stages.items()}

        total = core.CounterMetricFamily(
            "kisflow_data", "Rows given to runs as source, all flows", labels=()
        )
        total.add_metric((), source_rows)
        yield total

        flow_data = core.GaugeMetricFamily(
            "flow_data_total", "Rows given to runs as source", labels=("flow_name",)
        )
        flow_runs = core.GaugeMetricFamily(
            "flow_schedule_cnts", "Runs started", labels=("flow_name",)
        )
        flow_ms = core.HistogramMetricFamily(
            "flow_run_duration", "Milliseconds per completed run", labels=("flow_name",)
        )
        for flow, cells in sorted(flows.items()):
            flow_data.add_metric((flow,), cells[_DATA])
            flow_runs.add_metric((flow,), cells[_RUNS])
            flow_buckets = _buckets(FLOW_DURATION_BUCKETS_MS, cells[_FLOW_SUM + 1 :])
            flow_ms.add_metric((flow,), flow_buckets, cells[_FLOW_SUM])
        yield from (flow_data, flow_runs, flow_ms)

        # KisFlow labels these by function only: sum the stages of every flow.
        funcs: dict[tuple[str, str], list[float]] = {}
        for (_, name, mode), cells in stages.items():
            acc = funcs.setdefault((name, mode), [0] * len(cells))
            for i, value in enumerate(cells):
                acc[i] += value
        func_runs = core.GaugeMetricFamily(
            "func_schedule_cnts", "FaaS calls, failed ones too", labels=("func_name", "func_mode")
        )
        func_ms = core.HistogramMetricFamily(
            "func_run_duration",
            "Milliseconds per stage call that succeeded (conversion and retries included)",
            labels=("func_name", "func_mode"),
        )
        for key, cells in sorted(funcs.items()):
            func_runs.add_metric(key, cells[_CALLS])
            func_ms.add_metric(
                key, _buckets(FUNC_DURATION_BUCKETS_MS, cells[_STAGE_SUM + 1 :]), cells[_STAGE_SUM]
            )
        yield from (func_runs, func_ms)

        labels = ("flow_name", "func_name", "func_mode")
        for index, name, doc in (
            (_IN, "func_rows_in", "Rows a stage received"),
            (_OUT, "func_rows_out", "Rows a stage passed on"),
            (_FILTERED, "func_rows_filtered", "Rows a stage dropped without dead-lettering"),
            (_DEAD, "func_rows_dead_lettered", "Rows a stage sent to its dead-letter sink"),
            (_RETRIES, "func_retries", "FaaS calls retried after an error"),
        ):
            family = core.CounterMetricFamily(name, doc, labels=labels)
            for stage_key, cells in sorted(stages.items()):
                family.add_metric(stage_key, cells[index])
            yield family


def _buckets(bounds: tuple[float, ...], counts: list[float]) -> list[tuple[str, float]]:
    """Per-bucket counts -> Prometheus' cumulative (le, count) pairs, ending with +Inf."""
    out: list[tuple[str, float]] = []
    running = 0.0
    for bound, count in zip([*bounds, math.inf], counts, strict=True):
        running += count
        out.append(("+Inf" if bound == math.inf else repr(float(bound)), running))
    return out


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

    @property
    def stopped(self) -> bool:
        """Whether ``stop`` was called."""
        return self._stopped

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


def parse_address(
    address: str,
    *,
    what: str = "prometheus_serve",
    key: str | None = "prometheus_serve",
    example: str = "127.0.0.1:20004",
) -> tuple[str, int]:
    """``"host:port"``, ``":port"`` or ``"port"`` -> (host, port); the host defaults to loopback.

    ``what`` names the setting in messages (the dashboard's address uses this too).

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
        raise ConfigError(f"{what} {address!r} is not host:port: {exc}", key=key) from exc
    if port is None or parts.path or parts.query or parts.fragment:
        raise ConfigError(f"{what} {address!r} is not host:port; e.g. '{example}'", key=key)
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
        ConfigError: bad address, busy port, or a server already running.
        MissingExtraError: prometheus_client is not installed (``kisflow[metrics]``).
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
        fresh = _active is None
        if _active is None:
            _active = _Metrics()
            observers.add(_active)
        if not serve:
            return None
        try:
            if _server is not None and not _server.stopped:
                raise ConfigError(
                    f"metrics are already served at {_server.url}; call "
                    f"kisflow.metrics.disable() (or stop that server) first",
                    key="prometheus_listen",
                )
            host, port = parse_address(address or DEFAULT_ADDRESS)
            _server = MetricsServer(host, port, _active.registry)
        except BaseException:
            if fresh:  # a failed start leaves metrics as they were: off
                observers.remove(_active)
                _active = None
            raise
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
        if _active is not None:
            observers.remove(_active)
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
