"""The dashboard without a browser: its figures, its HTTP answers, its start and stop.

The figures must be those of the runs' ``StageStats`` and of the Prometheus endpoint;
the page itself is tested in Chromium (tests/test_dashboard_browser.py).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import kisflow as kf
from kisflow import metrics
from kisflow.dashboard import _chain, _figures
from kisflow.observers import StreamStatus

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "kisflow"


@pytest.fixture
def board() -> Iterator[kf.dashboard.Dashboard]:
    """A dashboard on a free loopback port, stopped after the test."""
    with kf.dashboard.serve() as served:
        yield served


def get(url: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read()


def flows(board: kf.dashboard.Dashboard) -> dict[str, dict[str, Any]]:
    status, kind, body = get(board.url + "api/flows")
    assert (status, kind) == (200, "application/json")
    return {flow["name"]: flow for flow in json.loads(body)}


def build_shop() -> kf.Flow:
    """Verify (filters, dead-letters) -> Calculate (fails once per 3rd batch, retried)."""
    calls = [0]

    @kf.faas("Keep")
    def keep(flow: kf.Flow, rows: list[int]) -> None:
        for r in rows:
            if r % 7 == 0:
                flow.dead_letter(r, "seven")
            elif r % 2:
                flow.commit_row(r)

    @kf.faas("Flaky")
    def flaky(flow: kf.Flow, rows: list[int]) -> None:
        calls[0] += 1
        if calls[0] % 3 == 0:
            raise TimeoutError("slow store")
        flow.commit_row_batch(r + 1 for r in rows)

    return (
        kf.FlowBuilder("shop")
        .verify("Keep")
        .calculate("Flaky", option=kf.FuncOption(retry_times=2))
        .build()
    )


class TestFigures:
    """The figures equal the runs' StageStats and the Prometheus endpoint's."""

    def test_a_stream_counts_as_its_results_and_the_scrape(
        self, board: kf.dashboard.Dashboard
    ) -> None:
        metrics.disable()
        metrics.enable()
        try:
            letters: list[Any] = []
            results = list(
                build_shop().stream(
                    range(1000), batch_size=50, dead_letters=letters, handle_sigint=False
                )
            )
            text = metrics.scrape()
        finally:
            metrics.disable()
        shop = flows(board)["shop"]
        assert shop["kind"] == "stream"
        assert shop["runs"] == shop["runs_completed"] == shop["batches"] == 20
        assert shop["source_rows"] == 1000
        # What the stream itself reported (stream_committed) after its last batch.
        stream = shop["stream"]
        assert (stream["batch"], stream["committed"], stream["in_flight"]) == (20, 1000, 0)
        assert (stream["position"], stream["checkpoint_time"], stream["checkpoint_age"]) == (
            None,
            None,
            None,
        )
        scraped: dict[tuple[str, str], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if "func_name" in sample.labels:
                    scraped[sample.name, sample.labels["func_name"]] = sample.value
        for stage in shop["stages"]:
            name = stage["name"]
            stats = [r.stage(name) for r in results]
            assert stage["calls"] == sum(s.calls for s in stats) == 20
            assert stage["rows_in"] == sum(s.rows_in for s in stats)
            assert stage["rows_out"] == sum(s.rows_out for s in stats)
            assert stage["filtered"] == sum(s.filtered for s in stats)
            assert stage["dead_letters"] == sum(s.dead_letters for s in stats)
            assert stage["retries"] == sum(s.retries for s in stats)
            assert stage["seconds"] == pytest.approx(sum(s.duration for s in stats))
            assert scraped["func_rows_in_total", name] == stage["rows_in"]
            assert scraped["func_rows_out_total", name] == stage["rows_out"]
            assert scraped["func_rows_filtered_total", name] == stage["filtered"]
            assert scraped["func_rows_dead_lettered_total", name] == stage["dead_letters"]
            assert scraped["func_retries_total", name] == stage["retries"]
            assert scraped["func_schedule_cnts", name] == stage["calls"] + stage["failed_calls"]
        keep, flaky = shop["stages"]
        assert keep["dead_letters"] == len(letters) == 143  # multiples of 7 below 1000
        assert keep["filtered"] == 1000 - 143 - 429  # the even ones left
        # Every third FaaS call of Flaky fails and is retried: 20 batches take 29 calls.
        assert (flaky["calls"], flaky["failed_calls"], flaky["retries"]) == (20, 9, 9)
        assert flaky["last_error"]["type"] == "TimeoutError"
        assert flaky["last_error"]["message"] == "slow store"
        assert flaky["state"] == "idle"  # its last call succeeded

    def test_runs_from_many_threads_add_up(self, board: kf.dashboard.Dashboard) -> None:
        @kf.faas("Pass")
        def passing(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("threads").calculate("Pass").calculate("Pass").build()
        done: list[kf.RunResult] = []
        lock = threading.Lock()

        def work() -> None:
            for i in range(200):
                result = flow.run(list(range(i % 5 + 1)))
                with lock:
                    done.append(result)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        view = flows(board)["threads"]
        assert view["runs"] == view["runs_completed"] == 800
        assert view["runs_in_progress"] == 0
        for position, stage in enumerate(view["stages"]):
            assert stage["calls"] == 800
            assert stage["rows_in"] == sum(r.stages[position].rows_in for r in done) == 2400
            assert stage["state"] == "idle"

    def test_a_failed_run_keeps_its_error_and_marks_its_stage_failing(
        self, board: kf.dashboard.Dashboard, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        @kf.faas("Explode")
        def explode(flow: kf.Flow, rows: list[int]) -> None:
            raise KeyError("no such customer")

        flow = kf.FlowBuilder("boom").calculate("Explode").build()
        with pytest.raises(kf.StageExecutionError):
            flow.run([1, 2])
        monkeypatch.setattr(_figures, "ENDED_AFTER", 0.0)
        view = flows(board)["boom"]
        assert (view["status"], view["outcome"]) == ("ended", "failed")
        assert (view["runs"], view["runs_failed"], view["runs_in_progress"]) == (1, 1, 0)
        assert view["last_error"]["type"] == "StageExecutionError"
        assert view["last_error"]["stage"] == "Explode"
        assert "no such customer" in view["last_error"]["message"]
        (stage,) = view["stages"]
        assert (stage["state"], stage["calls"], stage["failed_calls"]) == ("failing", 0, 1)
        assert stage["last_error"]["type"] == "KeyError"
        assert stage["last_error"]["time"] == pytest.approx(time.time(), abs=60)

    def test_a_flow_under_way_is_running_and_an_ended_one_stays(
        self, board: kf.dashboard.Dashboard, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        inside = threading.Event()
        gate = threading.Event()

        @kf.faas("Wait")
        def wait(flow: kf.Flow, rows: list[int]) -> None:
            inside.set()
            assert gate.wait(30)
            flow.commit_row_batch(rows)

        @kf.faas("First")
        def first(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("slow").calculate("First").calculate("Wait").build()
        thread = threading.Thread(target=flow.run, args=([1, 2, 3],))
        thread.start()
        try:
            assert inside.wait(30)
            view = flows(board)["slow"]
            assert (view["status"], view["runs_in_progress"]) == ("running", 1)
            assert (view["runs"], view["runs_completed"], view["source_rows"]) == (1, 0, 3)
            done, waiting = view["stages"]
            # The run's finished call is shown while the run goes on.
            assert (done["state"], done["calls"], done["rows_out"]) == ("idle", 1, 3)
            assert (waiting["state"], waiting["calls"]) == ("running", 0)
        finally:
            gate.set()
            thread.join()
        monkeypatch.setattr(_figures, "ENDED_AFTER", 0.0)
        view = flows(board)["slow"]
        assert (view["status"], view["outcome"]) == ("ended", "completed")
        assert (view["runs"], view["runs_in_progress"], view["source_rows"]) == (1, 0, 3)
        for stage in view["stages"]:
            assert (stage["calls"], stage["rows_out"], stage["state"]) == (1, 3, "idle")

    def test_rate_and_percentiles(self, board: kf.dashboard.Dashboard) -> None:
        @kf.faas("Nap")
        def nap(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        flow = kf.FlowBuilder("rates").calculate("Nap").build()
        for _ in range(3):
            flow.run(list(range(100)))
        (stage,) = flows(board)["rates"]["stages"]
        # 300 rows in the last 10 s (the test takes far less than that).
        assert stage["rows_per_second"] == 300 / _figures.RATE_WINDOW
        assert 0 < stage["p50_ms"] <= stage["p99_ms"]
        assert _figures._percentile([0.001, 0.002, 0.003, 0.004], 0.5) == pytest.approx(2.0)
        assert _figures._percentile([0.001, 0.002, 0.003, 0.004], 0.99) == pytest.approx(4.0)
        assert _figures._percentile([], 0.5) is None

    def test_the_reservoir_is_bounded(self) -> None:
        figures = _figures.Figures()
        kf.observers.add(figures)
        try:

            @kf.faas("Tick")
            def tick(flow: kf.Flow, rows: list[int]) -> None:
                flow.commit_row_batch(rows)

            flow = kf.FlowBuilder("ticks").calculate("Tick").build()
            for _ in range(_figures.RESERVOIR + 50):
                flow.run([1])
        finally:
            kf.observers.remove(figures)
        (stage,) = figures._flows["ticks"].stages
        assert len(stage.durations) == _figures.RESERVOIR
        assert stage.next_duration == 50  # the ring went round once
        assert stage.calls == _figures.RESERVOIR + 50
        assert len(stage.view(time.monotonic(), False, [])["durations"]) == _figures.RESERVOIR

    def test_stream_status_is_shown_with_its_checkpoint_age(self) -> None:
        figures = _figures.Figures()
        figures.stream_committed(
            "feed",
            StreamStatus(
                batch=4,
                position={"offset": 400},
                committed=400,
                lag=25,
                in_flight=2,
                checkpoint_time=time.time() - 5,
            ),
        )
        (view,) = figures.snapshot()
        assert view["kind"] == "stream"
        assert view["batches"] == 4
        stream = view["stream"]
        assert stream["position"] == {"offset": 400}
        assert (stream["committed"], stream["lag"], stream["in_flight"]) == (400, 25, 2)
        assert 5 <= stream["checkpoint_age"] < 60


class TestServer:
    """The page, its JSON, its events and its SVG; read-only; started and stopped cleanly."""

    def test_the_page_and_its_assets_come_from_the_package(
        self, board: kf.dashboard.Dashboard
    ) -> None:
        status, kind, page = get(board.url)
        assert (status, kind) == (200, "text/html; charset=utf-8")
        assert b'<script src="dashboard.js">' in page
        # No CDN, nothing from the internet: every asset is one of ours.
        assert not re.search(rb"(src|href)=\"(https?:)?//", page)
        for asset, kind_wanted in (
            ("dashboard.js", "text/javascript; charset=utf-8"),
            ("dashboard.css", "text/css; charset=utf-8"),
        ):
            status, kind, body = get(board.url + asset)
            assert (status, kind) == (200, kind_wanted)
            assert b"http://" not in body
            assert b"https://" not in body
        assert get(board.url + "nothing")[0] == 404

    def test_it_is_read_only(self, board: kf.dashboard.Dashboard) -> None:
        request = urllib.request.Request(board.url + "api/flows", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=10)
        error.value.close()
        assert error.value.code == 405

    def test_events_carry_the_figures(self, board: kf.dashboard.Dashboard) -> None:
        @kf.faas("Echo")
        def echo(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        kf.FlowBuilder("echo").calculate("Echo").build().run([1, 2])
        assert kf.dashboard.INTERVAL <= 1.0  # at least once a second
        with urllib.request.urlopen(board.url + "events", timeout=10) as reply:
            assert reply.headers["Content-Type"] == "text/event-stream"
            events = []
            while len(events) < 2:
                line = reply.readline()
                if line.startswith(b"data: "):
                    events.append(json.loads(line[6:]))
        for event in events:
            (echo_view,) = (f for f in event if f["name"] == "echo")
            assert echo_view["stages"][0]["rows_in"] == 2

    def test_the_chain_svg(
        self, board: kf.dashboard.Dashboard, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        @kf.faas("A<b>")
        def a(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        @kf.faas("Z&z")
        def z(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch(rows)

        kf.FlowBuilder("drawn").verify("A<b>").calculate("Z&z").build().run([1])
        status, kind, svg = get(board.url + "api/chain.svg?flow=drawn")
        assert (status, kind) == (200, "image/svg+xml")
        assert svg.startswith(b"<svg")
        assert b"A&lt;b&gt;" in svg
        assert b"Z&amp;z" in svg
        assert b"<b>" not in svg
        assert b"<rect" not in svg  # drawn by dot
        # dot writes the id's dash as an entity
        assert re.search(rb'id="stage(-|&#45;)1"', svg)
        assert get(board.url + "api/chain.svg?flow=unknown")[0] == 404
        # Without Graphviz, the built-in layout: one group per stage, the same ids.
        monkeypatch.setattr(_chain.shutil, "which", lambda name: None)
        built = _chain.chain_svg("drawn", [("A<b>", "Verify"), ("A<b>", "Calculate")])
        assert built.count('class="node stage"') == 2
        assert 'id="stage-0"' in built
        assert 'id="stage-1"' in built
        assert "A&lt;b&gt;" in built
        assert "<b>" not in built
        kf.FlowBuilder("undrawn").verify("A<b>").build().run([1])
        status, _, served = get(board.url + "api/chain.svg?flow=undrawn")
        assert status == 200
        assert b"<rect" in served  # the built-in layout (dot draws paths and polygons)

    def test_stop_closes_the_port_and_stops_observing(self) -> None:
        board = kf.dashboard.serve("127.0.0.1:0")
        assert board.figures in kf.observers.active()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", board.url)
        assert get(board.url)[0] == 200
        board.stop()
        board.stop()  # idempotent
        assert board.stopped
        assert board.figures not in kf.observers.active()
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", board.port)) != 0

    def test_an_ipv6_loopback_address(self) -> None:
        with kf.dashboard.serve("[::1]:0") as board:
            assert re.fullmatch(r"http://\[::1\]:\d+/", board.url)
            assert get(board.url)[0] == 200

    @pytest.mark.parametrize("address", ["nowhere", "127.0.0.1:http", "1.2.3.4:5/x"])
    def test_a_bad_address_is_a_config_error(self, address: str) -> None:
        with pytest.raises(kf.ConfigError, match="dashboard address"):
            kf.dashboard.serve(address)

    def test_a_busy_port_is_a_config_error(self, board: kf.dashboard.Dashboard) -> None:
        with pytest.raises(
            kf.ConfigError, match=f"cannot serve the dashboard on 127.0.0.1:{board.port}"
        ):
            kf.dashboard.serve(f"127.0.0.1:{board.port}")

    def test_importing_kisflow_starts_nothing(self) -> None:
        code = (
            "import sys, threading, kisflow\n"
            "print(threading.active_count(), len(kisflow.observers.active()),"
            " 'kisflow.dashboard' in sys.modules, 'http.server' in sys.modules)\n"
            "import kisflow.dashboard\n"
            "print(threading.active_count(), len(kisflow.observers.active()))\n"
            "board = kisflow.dashboard.serve()\n"
            "print(threading.active_count(), len(kisflow.observers.active()))\n"
            "board.stop()\n"
            "print(threading.active_count(), len(kisflow.observers.active()))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            timeout=60,
        )
        assert proc.stdout.splitlines() == ["1 0 False False", "1 0", "2 1", "1 0"]


FAAS = """
import kisflow as kf

@kf.faas("Copy")
def copy(flow: kf.Flow, rows: list[dict]) -> None:
    flow.commit_row_batch(rows)
"""


@pytest.fixture
def copying(tmp_path: Path) -> tuple[Path, Path]:
    """A config folder with one flow, Copying (one Calculate stage), and its FaaS file."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "flow.yml").write_text(
        "kistype: flow\nstatus: 1\nflow_name: Copying\nflows:\n  - fname: Copy\n"
    )
    (conf / "func-copy.yml").write_text("kistype: func\nfname: Copy\nfmode: Calculate\n")
    faas = tmp_path / "faas.py"
    faas.write_text(FAAS)
    return conf, faas


def test_the_cli_serves_the_dashboard_while_the_run_lasts(copying: tuple[Path, Path]) -> None:
    conf, faas = copying
    with subprocess.Popen(
        [str(SCRIPT), "run", str(conf), "--faas", str(faas), "--batch-size", "1", "--dashboard"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        port = _serve_one_batch(proc)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def _serve_one_batch(proc: subprocess.Popen[str]) -> int:
    """Read the URL, run one batch, check the API, end the input; the dashboard's port."""
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        line = proc.stderr.readline()
        match = re.fullmatch(
            r"dashboard at (http://127\.0\.0\.1:(\d+)/) while the run lasts\n", line
        )
        assert match, line
        url = match[1]
        proc.stdin.write('{"n": 1}\n')
        proc.stdin.flush()
        assert proc.stdout.readline() == '{"n": 1}\n'  # the first batch ran
        for _ in range(100):  # the batch's row is written as the stream hands it out
            status, _, body = get(url + "api/flows")
            (view,) = json.loads(body)
            if view["batches"] == 1:
                break
            time.sleep(0.05)
        assert (status, view["name"], view["runs_completed"]) == (200, "Copying", 1)
        assert (view["kind"], view["batches"]) == ("stream", 1)  # the CLI streams its input
        assert view["stages"][0]["rows_out"] == 1
        proc.stdin.close()  # the input ends: so does the run, and the dashboard with it
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()
    return int(match[2])


def test_the_cli_refuses_a_bad_dashboard_address(copying: tuple[Path, Path]) -> None:
    conf, faas = copying
    proc = subprocess.run(
        [str(SCRIPT), "run", str(conf), "--faas", str(faas), "--dashboard", "nowhere"],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--dashboard: dashboard address 'nowhere' is not host:port" in proc.stderr


def test_the_cli_stops_its_dashboard_when_the_run_ends(copying: tuple[Path, Path]) -> None:
    """In process (click's runner): the URL is printed, and after the run the port is closed
    and the dashboard observes nothing."""
    from click.testing import CliRunner

    from kisflow.cli import main

    conf, faas = copying
    before = kf.observers.active()
    result = CliRunner().invoke(
        main,
        ["run", str(conf), "--faas", str(faas), "--dashboard=127.0.0.1:0"],
        input='{"n": 1}\n{"n": 2}\n',
    )
    assert result.exit_code == 0, result.output
    match = re.search(r"dashboard at http://127\.0\.0\.1:(\d+)/ while the run lasts", result.stderr)
    assert match, result.stderr
    assert result.stdout == '{"n": 1}\n{"n": 2}\n'
    assert kf.observers.active() == before
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(match[1]))) != 0


def test_the_cost_bench_streams_both_ways() -> None:
    """bench/dashboard.py runs (tiny): both sides stream every row, the dashboard watched."""
    from bench import dashboard as bench_dashboard

    figures = bench_dashboard.measure(rows=2000, batch_size=500, repeat=1)
    assert figures["rows"] == 2000
    assert figures["off_s"] > 0
    assert figures["on_s"] > 0
    assert figures["slowdown"] == figures["on_s"] / figures["off_s"] - 1.0
    assert not any(isinstance(o, kf.dashboard.Figures) for o in kf.observers.active())


def test_the_cost_bench_times_the_redis_stream_both_ways() -> None:
    """bench/dashboard.py --redis (tiny): the stream bench's exactly-once side, both ways;
    each side stores every row and leaves nothing pending (bench.stream checks)."""
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed; `make test` installs it (make system-deps)")
    from bench import dashboard as bench_dashboard

    figures = bench_dashboard.measure_redis(n=2000, repeat=1)
    assert figures["rows"] == 2000
    assert figures["slowdown_cpu"] == figures["on_cpu_s"] / figures["off_cpu_s"] - 1.0
    assert not any(isinstance(o, kf.dashboard.Figures) for o in kf.observers.active())


def test_the_rate_counts_the_rows_of_runs_that_ended_in_the_window(
    board: kf.dashboard.Dashboard,
) -> None:
    """rows/s: each stage's rows in since the first mark inside the window (a mark is taken
    as the first run of a second ends), divided by the window; marks are set by hand."""

    @kf.faas("Count")
    def count(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(rows[: len(rows) // 2])

    flow = kf.FlowBuilder("marked").calculate("Count").build()
    flow.run(list(range(400)))  # 400 in, 200 out
    figures = board.figures._flows["marked"]
    now = int(time.monotonic())
    window = _figures.RATE_WINDOW
    figures.marks.clear()
    figures.marks.extend([(now - window - 5, [0]), (now - window + 1, [100])])
    (stage,) = flows(board)["marked"]["stages"]
    assert stage["rows_per_second"] == (400 - 100) / window  # 300 rows since the mark
    figures.marks.clear()
    figures.marks.append((now - window - 5, [0]))  # nothing ended inside the window
    (stage,) = flows(board)["marked"]["stages"]
    assert stage["rows_per_second"] == 0
