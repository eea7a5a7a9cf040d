"""The dashboard in a real browser: headless Chromium (Debian's, driven by selenium).

A stream with known counts runs while the page is open; one of its stages waits on a
gate, so the stream is held mid-run and every figure stands still while the page, the
JSON API, a Prometheus scrape and the batches' results are compared. A flow whose stage
fails shows its error on the page. The page is saved as a PNG; with
``KISFLOW_SCREENSHOT=1`` in the environment it replaces docs/images/dashboard.png (a plain
test run leaves the docs alone).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import kisflow as kf
from kisflow import metrics

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "images" / "dashboard.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

ROWS = 1200
BATCH = 100
HOLD_AT = 6
"""The Price stage's call that waits on the gate (its batch number)."""
FIGURES = ("calls", "failed_calls", "rows_in", "rows_out", "filtered", "dead_letters", "retries")
STAGES = ("CheckOrder", "Price", "Ship")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium with a fresh profile, no network chatter; quit after the module."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed; `make test` "
            "installs them (make system-deps)"
        )
    profile = tempfile.mkdtemp(prefix="kisflow-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1360,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def served() -> Iterator[tuple[Any, Any]]:
    """The dashboard and a Prometheus endpoint, both on loopback, both counting from zero."""
    metrics.disable()
    scrape_server = metrics.enable(serve=True, address="127.0.0.1:0")
    board = kf.dashboard.serve()
    try:
        yield board, scrape_server
    finally:
        board.stop()
        metrics.disable()


def get_json(url: str) -> Any:
    import json

    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)


def api_stages(board: Any, flow: str) -> dict[str, dict[str, Any]]:
    for view in get_json(board.url + "api/flows"):
        if view["name"] == flow:
            return {s["name"]: s for s in view["stages"]}
    raise AssertionError(f"/api/flows has no flow {flow!r}")


def scrape(server: Any, flow: str) -> dict[str, dict[str, float]]:
    """Per stage of ``flow``: the scraped counters, and FaaS calls (failed ones too)."""
    with urllib.request.urlopen(server.url, timeout=10) as reply:
        text = reply.read().decode()
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "func_schedule_cnts":
                out.setdefault(labels["func_name"], {})["faas_calls"] = sample.value
            elif labels.get("flow_name") == flow and "func_name" in labels:
                name = sample.name.removeprefix("func_").removesuffix("_total")
                out.setdefault(labels["func_name"], {})[name] = sample.value
    return out


def page_stages(browser: Any, flow: str) -> dict[str, dict[str, str]]:
    """The stage rows the page shows for ``flow``: figure name -> the text on the page."""
    rows = browser.find_elements(By.CSS_SELECTOR, f'section[data-flow="{flow}"] tbody tr')
    return {
        row.get_attribute("data-stage"): {
            cell.get_attribute("data-figure"): cell.text
            for cell in row.find_elements(By.CSS_SELECTOR, "td")
        }
        | {"state": row.get_attribute("data-state")}
        for row in rows
    }


def page_flow(browser: Any, flow: str, figure: str) -> str:
    selector = f'section[data-flow="{flow}"] [data-figure="{figure}"]'
    return str(browser.find_element(By.CSS_SELECTOR, selector).text)


def wait_for(browser: Any, check: Any, what: str) -> None:
    """Wait (up to 20 s) until the page meets ``check``; the failure says what it showed."""
    try:
        WebDriverWait(browser, 20, poll_frequency=0.1).until(lambda _: check())
    except Exception as exc:
        raise AssertionError(f"the page never showed {what}") from exc


def build_flows(gate: threading.Event, held: threading.Event) -> tuple[kf.Flow, kf.Flow]:
    """``orders`` (a stream: filter, dead-letter, a retried call, a held batch), ``payments``
    (its last stage always fails, once retried)."""
    price_calls = [0]

    @kf.faas("CheckOrder")
    def check_order(flow: kf.Flow, rows: list[int]) -> None:
        for r in rows:
            if r % 10 == 0:
                continue  # filtered
            if r % 25 == 1:
                flow.dead_letter(r, "order number ends badly")
                continue
            flow.commit_row(r)

    @kf.faas("Price")
    def price(flow: kf.Flow, rows: list[int]) -> None:
        price_calls[0] += 1
        if price_calls[0] == 2:  # the second batch's first try fails, its retry passes
            raise ConnectionError("price service flaked")
        if price_calls[0] == HOLD_AT + 2:  # batch HOLD_AT + 1 (batch 2 took two calls)
            held.set()
            assert gate.wait(60), "the test never opened the gate"
        time.sleep(0.01)
        flow.commit_row_batch(r * 3 for r in rows)

    @kf.faas("Ship")
    def ship(flow: kf.Flow, rows: list[int]) -> None:
        flow.commit_row_batch(rows)

    @kf.faas("Charge")
    def charge(flow: kf.Flow, rows: list[int]) -> None:
        raise ValueError(f"card declined for {len(rows)} payments")

    retry = kf.FuncOption(retry_times=1)
    orders = (
        kf.FlowBuilder("orders")
        .verify("CheckOrder")
        .calculate("Price", option=retry)
        .calculate("Ship")
        .build()
    )
    payments = (
        kf.FlowBuilder("payments").verify("CheckOrder").calculate("Charge", option=retry).build()
    )
    return orders, payments


def test_the_page_shows_the_same_figures_as_the_api_the_scrape_and_the_results(
    browser: Any, served: tuple[Any, Any], tmp_path: Path
) -> None:
    board, scrape_server = served
    gate, held = threading.Event(), threading.Event()
    orders, payments = build_flows(gate, held)
    with pytest.raises(kf.StageExecutionError, match="card declined"):
        payments.run(list(range(2, 26)))

    results: list[kf.RunResult] = []
    letters: list[Any] = []
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            for result in orders.stream(
                range(ROWS), batch_size=BATCH, dead_letters=letters, handle_sigint=False
            ):
                results.append(result)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        assert held.wait(30), "the stream never reached the held batch"
        browser.get(board.url)

        # -- mid-run: the Price stage holds batch HOLD_AT + 1 (its 7th call); nothing moves.
        api = api_stages(board, "orders")
        assert api["Price"]["state"] == "running"
        assert api["CheckOrder"]["calls"] == HOLD_AT + 1
        assert api["Price"]["calls"] == HOLD_AT
        assert api["Ship"]["calls"] == HOLD_AT
        wait_for(
            browser,
            lambda: page_stages(browser, "orders").get("Price", {}).get("calls") == str(HOLD_AT),
            f"Price with {HOLD_AT} calls",
        )
        shown = page_stages(browser, "orders")
        scraped = scrape(scrape_server, "orders")
        done = results[:]  # the batches handed out so far
        assert len(done) == HOLD_AT
        for name in STAGES:
            for figure in FIGURES:
                assert shown[name][figure] == str(api[name][figure]), (name, figure)
            for figure in ("p50_ms", "p99_ms"):
                assert shown[name][figure] == f"{api[name][figure]:.3f}", (name, figure)
            assert scraped[name]["rows_in"] == api[name]["rows_in"]
            assert scraped[name]["rows_out"] == api[name]["rows_out"]
            assert scraped[name]["rows_filtered"] == api[name]["filtered"]
            assert scraped[name]["rows_dead_lettered"] == api[name]["dead_letters"]
            assert scraped[name]["retries"] == api[name]["retries"]
        # The stages after CheckOrder finished HOLD_AT batches, all handed out.
        for name in ("Price", "Ship"):
            stats = [r.stage(name) for r in done]
            assert api[name]["rows_in"] == sum(s.rows_in for s in stats)
            assert api[name]["rows_out"] == sum(s.rows_out for s in stats)
            retried = 1 if name == "Price" else 0
            assert api[name]["retries"] == sum(s.retries for s in stats) == retried
        # The stream's own report (stream_committed) after its sixth batch.
        assert page_flow(browser, "orders", "committed") == str(HOLD_AT * BATCH)
        assert page_flow(browser, "orders", "position") == "\N{EN DASH}"  # an iterable has none
        assert page_flow(browser, "orders", "batches") == str(HOLD_AT)
        assert shown["Price"]["state"] == "running"
        assert shown["CheckOrder"]["state"] == "idle"
        assert shown["Price"]["last_error"].startswith("ConnectionError: price service flaked")
        assert page_flow(browser, "orders", "status") == "running"
        state = browser.find_element(
            By.CSS_SELECTOR, 'section[data-flow="orders"] .chain #stage-1'
        ).get_attribute("data-state")
        assert state == "running"  # the chain's Price node is coloured as running

        # The failed flow, on the same page: its stage's error and the run's.
        failed = page_stages(browser, "payments")
        assert failed["Charge"]["state"] == "failing"
        assert failed["Charge"]["last_error"].startswith(
            "ValueError: card declined for 22 payments"
        )
        assert failed["Charge"]["failed_calls"] == "2"  # the try and its retry
        assert failed["Charge"]["retries"] == "1"
        assert failed["Charge"]["calls"] == "0"
        assert "run failed in Charge: StageExecutionError" in page_flow(
            browser, "payments", "flow_error"
        )
        assert scrape(scrape_server, "payments")["Charge"]["faas_calls"] == 2

        shot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("KISFLOW_SCREENSHOT") == "1":
            shutil.copyfile(shot, SCREENSHOT)  # the docs' picture, refreshed on purpose
    finally:
        gate.set()
        thread.join(60)
    assert not errors, errors

    # -- the stream ended: the page keeps its final figures, marked ended.
    assert len(results) == ROWS // BATCH
    wait_for(browser, lambda: page_flow(browser, "orders", "status") == "ended", "orders ended")
    shown = page_stages(browser, "orders")
    api = api_stages(board, "orders")
    scraped = scrape(scrape_server, "orders")
    for name in STAGES:
        stats = [r.stage(name) for r in results]
        expected = {
            "calls": sum(s.calls for s in stats),
            "rows_in": sum(s.rows_in for s in stats),
            "rows_out": sum(s.rows_out for s in stats),
            "filtered": sum(s.filtered for s in stats),
            "dead_letters": sum(s.dead_letters for s in stats),
            "retries": sum(s.retries for s in stats),
        }
        for figure, value in expected.items():
            assert api[name][figure] == value, (name, figure)
            assert shown[name][figure] == str(value), (name, figure)
        assert scraped[name]["rows_in"] == expected["rows_in"]
        assert scraped[name]["rows_out"] == expected["rows_out"]
        assert scraped[name]["rows_filtered"] == expected["filtered"]
        assert scraped[name]["rows_dead_lettered"] == expected["dead_letters"]
        assert scraped[name]["retries"] == expected["retries"]
        assert shown[name]["state"] == "idle"
    # Known counts: 1200 rows, 120 filtered, 48 dead-lettered (every 25th from 1),
    # 10 + 10 + 10 + 1 FaaS calls of Price (one retried).
    assert api["CheckOrder"]["filtered"] == 120
    assert api["CheckOrder"]["dead_letters"] == len(letters) == 48
    assert api["Ship"]["rows_out"] == ROWS - 120 - 48
    assert scraped["Price"]["faas_calls"] == ROWS // BATCH + 1
    assert page_flow(browser, "orders", "batches") == str(ROWS // BATCH)
    assert page_flow(browser, "orders", "committed") == str(ROWS)
    assert page_flow(browser, "orders", "in_flight") == "0"
    assert page_flow(browser, "orders", "runs_completed") == str(ROWS // BATCH)
    assert page_flow(browser, "payments", "status") == "ended"
    assert page_flow(browser, "payments", "outcome") == "failed"
