"""Prometheus metrics: KisFlow's names and labels, served over loopback, scraped after runs."""

from __future__ import annotations

import concurrent.futures
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

import kisflow as kf
from kisflow import _run as kf_run
from kisflow import metrics
from kisflow.metrics import parse_address


@pytest.fixture(autouse=True)
def _metrics_off() -> Iterator[None]:
    """Each test starts and ends with metrics off and no server."""
    metrics.disable()
    yield
    metrics.disable()


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET the endpoint and return {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode("utf-8")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _known_flow() -> kf.Flow:
    calls: list[int] = []

    @kf.faas("KeepEven")
    def keep_even(flow: kf.Flow, rows: list[int]) -> None:
        for r in rows:
            if r % 2 == 0:
                flow.commit_row(r)

    @kf.faas("Flaky")
    def flaky(flow: kf.Flow, rows: list[int]) -> None:
        calls.append(1)
        flow.commit_row_batch(rows)
        if len(calls) % 2 == 1:
            raise OSError("every other call fails")

    return (
        kf.FlowBuilder("Known")
        .verify("KeepEven")
        .save("Flaky", option=kf.FuncOption(retry_times=1))
        .build()
    )


def _stage(func: str, mode: str) -> tuple[tuple[str, str], ...]:
    return (("flow_name", "Known"), ("func_mode", mode), ("func_name", func))


class TestScrape:
    """After known runs, a scrape over 127.0.0.1 shows the right counts."""

    def test_counts_after_two_runs(self) -> None:
        server = metrics.enable(serve=True, address="127.0.0.1:0")
        assert server is not None
        assert server.host == "127.0.0.1"
        assert server.port > 0
        flow = _known_flow()
        sink: list[kf.DeadLetter] = []
        flow.run([1, 2, 3, 4, "x"], dead_letters=sink)  # 2 even, 2 odd, 1 dead letter
        flow.run([6, 8, 10])

        got = _scrape(server.url)
        assert got[("kisflow_data_total", ())] == 8
        flow_label = (("flow_name", "Known"),)
        assert got[("flow_data_total", flow_label)] == 8
        assert got[("flow_schedule_cnts", flow_label)] == 2
        assert got[("flow_run_duration_count", flow_label)] == 2
        verify = (("func_mode", "Verify"), ("func_name", "KeepEven"))
        save = (("func_mode", "Save"), ("func_name", "Flaky"))
        assert got[("func_schedule_cnts", verify)] == 2
        # Flaky fails its first call in each run: 2 failed calls and 2 that succeeded.
        assert got[("func_schedule_cnts", save)] == 4
        assert got[("func_run_duration_count", save)] == 2
        assert got[("func_run_duration_bucket", (*save, ("le", "+Inf")))] == 2
        assert got[("func_rows_in_total", _stage("KeepEven", "Verify"))] == 8
        assert got[("func_rows_out_total", _stage("KeepEven", "Verify"))] == 5
        assert got[("func_rows_filtered_total", _stage("KeepEven", "Verify"))] == 2
        assert got[("func_rows_dead_lettered_total", _stage("KeepEven", "Verify"))] == 1
        assert got[("func_rows_in_total", _stage("Flaky", "Save"))] == 5
        assert got[("func_rows_out_total", _stage("Flaky", "Save"))] == 5
        assert got[("func_retries_total", _stage("Flaky", "Save"))] == 2
        assert got[("func_rows_dead_lettered_total", _stage("Flaky", "Save"))] == 0

    def test_retries_of_a_failed_run_are_counted(self) -> None:
        metrics.enable()

        @kf.faas("Down")
        def down(flow: kf.Flow, rows: list[int]) -> None:
            raise OSError("store down")

        flow = kf.FlowBuilder("Known").save("Down", option=kf.FuncOption(retry_times=2)).build()
        with pytest.raises(kf.StageExecutionError):
            flow.run([1])
        text = metrics.scrape()
        assert 'func_retries_total{flow_name="Known",func_mode="Save",func_name="Down"} 2.0' in text
        assert 'flow_schedule_cnts{flow_name="Known"} 1.0' in text
        # Every call is counted, as KisFlow counts it: the first and both retries.
        assert 'func_schedule_cnts{func_mode="Save",func_name="Down"} 3.0' in text
        # The failed call and run are not timed: only completed ones are.
        assert 'flow_run_duration_count{flow_name="Known"} 0.0' in text
        assert 'func_run_duration_count{func_mode="Save",func_name="Down"} 0.0' in text

    def test_a_failed_call_without_retries_is_counted(self) -> None:
        metrics.enable()

        @kf.faas("Once")
        def once(flow: kf.Flow, rows: list[int]) -> None:
            raise ValueError("bad row")

        flow = kf.FlowBuilder("Known").calculate("Once").build()
        for _ in range(2):
            with pytest.raises(kf.StageExecutionError):
                flow.run([1])
        text = metrics.scrape()
        assert 'func_schedule_cnts{func_mode="Calculate",func_name="Once"} 2.0' in text
        assert (
            'func_retries_total{flow_name="Known",func_mode="Calculate",func_name="Once"} 0.0'
            in text
        )

    def test_failed_tries_then_success_count_every_call(self) -> None:
        metrics.enable()
        calls: list[int] = []

        @kf.faas("Third")
        def third(flow: kf.Flow, rows: list[int]) -> None:
            calls.append(1)
            if len(calls) < 3:
                raise OSError("not yet")
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("Known").save("Third", option=kf.FuncOption(retry_times=2)).build()
        assert flow.run([1, 2]).output == [1, 2]
        got = metrics.scrape()
        assert 'func_schedule_cnts{func_mode="Save",func_name="Third"} 3.0' in got
        assert 'func_run_duration_count{func_mode="Save",func_name="Third"} 1.0' in got
        assert 'func_retries_total{flow_name="Known",func_mode="Save",func_name="Third"} 2.0' in got

    def test_runs_from_threads_add_up(self) -> None:
        metrics.enable()
        flow = _known_flow()

        def work(_: int) -> int:
            return len(flow.run([2, 4, 6, 7]).output)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            outputs = list(pool.map(work, range(40)))
        assert outputs == [3] * 40
        text = metrics.scrape()
        assert "kisflow_data_total 160.0" in text
        assert 'flow_schedule_cnts{flow_name="Known"} 40.0' in text
        assert 'func_schedule_cnts{func_mode="Verify",func_name="KeepEven"} 40.0' in text
        verify = 'flow_name="Known",func_mode="Verify",func_name="KeepEven"'
        assert f"func_rows_in_total{{{verify}}} 160.0" in text
        assert f"func_rows_filtered_total{{{verify}}} 40.0" in text
        assert 'func_run_duration_count{func_mode="Verify",func_name="KeepEven"} 40.0' in text

    def test_scrape_text_without_http_matches(self) -> None:
        metrics.enable()
        flow = _known_flow()
        flow.run([2, 4])
        text = metrics.scrape()
        assert "kisflow_data_total 2.0" in text
        assert 'flow_schedule_cnts{flow_name="Known"} 1.0' in text
        assert "# TYPE func_run_duration histogram" in text

    def test_runs_while_off_are_not_counted(self) -> None:
        flow = _known_flow()
        flow.run([2])
        metrics.enable()
        flow.run([2, 4, 6])
        assert "kisflow_data_total 3.0" in metrics.scrape()

    def test_disable_drops_counts(self) -> None:
        metrics.enable()
        _known_flow().run([2])
        metrics.disable()
        assert not metrics.enabled()
        with pytest.raises(kf.ConfigError, match="metrics are off"):
            metrics.registry()
        metrics.enable()
        assert "kisflow_data_total 0.0" in metrics.scrape()


class TestEnable:
    """Metrics are enabled from a GlobalConfig or the API; the server starts only when asked."""

    def test_from_global_config(self) -> None:
        config = kf.GlobalConfig(
            prometheus_enable=True, prometheus_listen=True, prometheus_serve="127.0.0.1:0"
        )
        server = metrics.enable(config)
        assert server is not None
        assert metrics.enabled()
        _known_flow().run([2])
        assert _scrape(server.url)[("kisflow_data_total", ())] == 1

    def test_global_config_without_listen_serves_nothing(self) -> None:
        assert metrics.enable(kf.GlobalConfig(prometheus_enable=True)) is None
        assert metrics.enabled()

    def test_global_config_disabled_does_nothing(self) -> None:
        config = kf.GlobalConfig(prometheus_enable=False, prometheus_listen=True)
        assert metrics.enable(config) is None
        assert not metrics.enabled()

    def test_wrong_config_type(self) -> None:
        with pytest.raises(kf.ConfigError, match="takes a GlobalConfig"):
            metrics.enable({"prometheus_enable": True})  # type: ignore[arg-type]

    def test_stop_closes_the_port(self) -> None:
        server = metrics.enable(serve=True, address="127.0.0.1:0")
        assert server is not None
        url = server.url
        assert _scrape(url)
        metrics.disable()
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=2)
        assert "stopped" in repr(server)
        server.stop()  # idempotent

    def test_second_server_is_an_error(self) -> None:
        server = metrics.serve("127.0.0.1:0")
        with pytest.raises(kf.ConfigError, match=r"already served at http://127\.0\.0\.1:"):
            metrics.serve("127.0.0.1:0")
        assert _scrape(server.url)

    def test_a_stopped_server_can_be_replaced(self) -> None:
        first = metrics.serve("127.0.0.1:0")
        first.stop()
        assert first.stopped
        second = metrics.serve("127.0.0.1:0")
        assert not second.stopped
        _known_flow().run([2, 4])
        assert _scrape(second.url)[("kisflow_data_total", ())] == 2

    def test_busy_port_is_a_config_error(self) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            expected = rf"cannot serve metrics on 127\.0\.0\.1:{port}"
            with pytest.raises(kf.ConfigError, match=expected):
                metrics.serve(f"127.0.0.1:{port}")
            assert not metrics.enabled()  # a failed start leaves metrics as they were: off
            metrics.enable()
            with pytest.raises(kf.ConfigError, match=expected):
                metrics.serve(f"127.0.0.1:{port}")
        assert metrics.enabled()  # ...and on when they were on

    def test_server_as_context_manager(self) -> None:
        server = metrics.serve("127.0.0.1:0")
        with server as same:
            assert same is server
            assert _scrape(server.url)
        assert "stopped" in repr(server)

    def test_importing_kisflow_starts_nothing(self) -> None:
        code = (
            "import sys, threading, kisflow; "
            "print(threading.active_count(), 'prometheus_client' in sys.modules)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        assert out.split() == ["1", "False"]


class TestAddress:
    """Addresses default to loopback and a bad one is a ConfigError naming the key."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (":20004", ("127.0.0.1", 20004)),
            ("20004", ("127.0.0.1", 20004)),
            ("127.0.0.1:0", ("127.0.0.1", 0)),
            ("0.0.0.0:20004", ("0.0.0.0", 20004)),
            ("[::1]:9", ("::1", 9)),
            ("localhost:80", ("localhost", 80)),
        ],
    )
    def test_parse(self, text: str, expected: tuple[str, int]) -> None:
        assert parse_address(text) == expected

    @pytest.mark.parametrize("text", ["", "host", "host:port", "h:99999", "h:1/metrics", "[::1"])
    def test_bad(self, text: str) -> None:
        with pytest.raises(kf.ConfigError) as info:
            parse_address(text)
        assert info.value.key == "prometheus_serve"


class TestBuckets:
    """The duration histograms use KisFlow's buckets, down to 0.005 ms."""

    def test_kisflows_bounds(self) -> None:
        assert metrics.FUNC_DURATION_BUCKETS_MS == (
            0.005, 0.01, 0.03, 0.08, 0.1, 0.5, 1.0, 5.0, 10.0, 100.0, 1000.0, 5000.0, 30000.0
        )  # fmt: skip
        assert metrics.FLOW_DURATION_BUCKETS_MS[:-1] == metrics.FUNC_DURATION_BUCKETS_MS
        assert metrics.FLOW_DURATION_BUCKETS_MS[-1] == 60000.0

    def test_a_20_microsecond_call_lands_below_0_03_ms(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        ticks = iter(range(10**6))
        # Each reading of the run's clock is 20 µs after the last: every stage call takes 20 µs.
        monkeypatch.setattr(kf_run, "_clock", lambda: next(ticks) * 20e-6)
        metrics.enable()
        flow = _known_flow()
        flow.run([2, 4])  # two stages: KeepEven once, Flaky twice (a retry), 20 µs each
        got = {
            (sample.name, sample.labels.get("le"), sample.labels.get("func_name")): sample.value
            for family in text_string_to_metric_families(metrics.scrape())
            for sample in family.samples
        }
        assert got["func_run_duration_bucket", "0.01", "KeepEven"] == 0
        assert got["func_run_duration_bucket", "0.03", "KeepEven"] == 1
        assert got["func_run_duration_bucket", "0.005", "Flaky"] == 0
        assert got["func_run_duration_bucket", "0.03", "Flaky"] == 1
        assert got["func_run_duration_sum", None, "KeepEven"] == pytest.approx(0.02)
        # The run: two stage calls of 20 µs, 0.04 ms, between the 0.03 and 0.08 bounds.
        assert got["flow_run_duration_bucket", "0.03", None] == 0
        assert got["flow_run_duration_bucket", "0.08", None] == 1
        assert got["flow_run_duration_bucket", "60000.0", None] == 1
