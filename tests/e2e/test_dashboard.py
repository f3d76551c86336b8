"""The live dashboard in a real browser: the demo's page, every view, and data shown as text."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}
VIEWS = ("overview", "gauges", "heatmap", "map", "series", "alerts", "problems")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def started(command: list[str], cwd: Path, port: int) -> subprocess.Popen[str]:
    """A sensorstream command serving on ``port``, once it says where its dashboard is."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sensorstream", *command, "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert process.stderr is not None
    seen = []
    for _ in range(20):
        line = process.stderr.readline()
        seen.append(line)
        if line.startswith("Dashboard: "):
            assert line.strip() == f"Dashboard: http://127.0.0.1:{port}/"
            return process
    process.kill()
    pytest.fail(f"no dashboard announced: {seen}")


def stopped(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    """The demo with 100 devices (alerts and corrections come within seconds), its URL."""
    port = free_port()
    process = started(["demo", "--devices", "100", "--duration", "300s"], tmp_path, port)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        stopped(process)


def watched(page: Any) -> list[str]:
    """Collect the page's script errors and failed requests, to assert there were none.

    An acknowledgement asked before the pipeline stored the alert is answered 404 and
    retried by the page: the one failure expected.
    """
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on(
        "response",
        lambda response: (
            problems.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/ack")
            else None
        ),
    )
    return problems


def card(page: Any, label: str) -> str:
    return str(page.locator(f'.card[data-metric="{label}"] .value').inner_text())


def test_the_demo_dashboard_shows_every_view_live(browser: Any, demo: str, artifacts: Path) -> None:
    # Playwright's waits evaluate strings, which the page's CSP forbids (as it should);
    # the hostile-data test below keeps the CSP on.
    context = browser.new_context(viewport={"width": 1280, "height": 850}, bypass_csp=True)
    page = context.new_page()
    problems = watched(page)
    page.goto(demo)
    page.wait_for_selector("#status.live", timeout=20_000)

    # Overview: the /metrics figures, changing as readings come.
    page.wait_for_function(
        "document.querySelector('.card[data-metric=\"lines read\"] .value')"
        "?.textContent.replace(/,/g, '') > 0",
        timeout=20_000,
    )
    before = card(page, "lines read")
    page.wait_for_function(
        "(before) => document.querySelector('.card[data-metric=\"lines read\"] .value')"
        ".textContent !== before",
        arg=before,
        timeout=10_000,
    )
    assert page.locator("#streams-table td").first.inner_text() == "readings"
    page.screenshot(path=artifacts / "overview.png", full_page=True)

    # Gauges: a tile per device, coloured by the rule's levels, values changing per window.
    page.click("#tabs button[data-view=gauges]")
    page.wait_for_function("document.querySelectorAll('.gauge').length >= 50", timeout=20_000)
    legend = page.locator(".legend").first.inner_text()
    assert "warning ≥ 25" in legend
    assert "critical ≥ 28" in legend
    first = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.gauge')]"
        ".map((g) => [g.dataset.key, g.querySelector('.value').textContent]))"
    )
    page.wait_for_function(
        "(first) => [...document.querySelectorAll('.gauge')].some((g) => "
        "first[g.dataset.key] !== undefined && "
        "g.querySelector('.value').textContent !== first[g.dataset.key])",
        arg=first,
        timeout=20_000,
    )
    levels = set(page.eval_on_selector_all(".gauge", "(gs) => gs.map((g) => g.dataset.level)"))
    assert levels <= {"ok", "warning", "critical"}
    page.screenshot(path=artifacts / "gauges.png")

    # Heatmap: devices x windows.
    page.click("#tabs button[data-view=heatmap]")
    page.wait_for_selector("#heatmap-0 .heatmaplayer image, #heatmap-0 .hm", timeout=20_000)
    page.screenshot(path=artifacts / "heatmap.png")

    # Map: every device at its position, no tiles fetched (the page loads nothing external).
    page.click("#tabs button[data-view=map]")
    page.wait_for_function(
        "document.querySelectorAll('#map .scatterlayer .point').length >= 50", timeout=20_000
    )
    page.screenshot(path=artifacts / "map.png")

    # Alerts: one appears; acknowledging it with a note shows who did.
    page.click("#tabs button[data-view=alerts]")
    # A warm device's alert (two warm windows in a row) stays open a while; a spike's clears
    # with the next reading.
    row = page.locator("#open-alerts tbody tr[data-alert]", has_text="warm_device").first
    row.wait_for(timeout=40_000)
    alert_id = row.get_attribute("data-alert")
    row.locator("input.ack-note").fill("checked the sensor")
    row.locator("button.ack").click()
    acked = page.locator(f'#open-alerts tbody tr[data-alert="{alert_id}"] td.acked')
    try:
        acked.filter(has_text="api").wait_for(timeout=10_000)  # a loopback caller is "api"
    except Exception:
        page.screenshot(path=artifacts / "alerts-failed.png", full_page=True)
        raise AssertionError(page.locator("#action-error").inner_text()) from None
    stored = httpx.get(f"{demo}api/v1/alerts/{alert_id}", timeout=10).json()
    assert "checked the sensor" in json.dumps(stored)
    assert page.locator("#alert-feed li").count() > 0
    page.screenshot(path=artifacts / "alerts.png", full_page=True)

    # A late reading within the allowed lateness corrects a window: marked, with its revision.
    page.click("#tabs button[data-view=series]")
    page.wait_for_selector("#series-chart .scatterlayer", timeout=20_000)
    page.locator("#corrections li.correction").first.wait_for(timeout=40_000)
    assert "revision 1" in page.locator("#corrections li.correction").first.inner_text()
    page.screenshot(path=artifacts / "series.png", full_page=True)

    # Dead letters and late readings, grouped by reason.
    page.click("#tabs button[data-view=problems]")
    page.locator("#dead-reasons tbody tr td").first.wait_for(timeout=20_000)
    page.wait_for_function(
        "document.querySelector('#dead-reasons').textContent.match(/invalid_json|wrong_type|"
        "missing_timestamp|time_in_future/)",
        timeout=20_000,
    )
    page.screenshot(path=artifacts / "problems.png", full_page=True)

    # A phone's width: the page fits, nothing but a table scrolls sideways.
    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, bypass_csp=True
    )
    small = phone.new_page()
    problems += watched(small)
    small.goto(demo + "#alerts")
    small.wait_for_selector("#status.live", timeout=20_000)
    small.locator("#open-alerts tbody tr").first.wait_for(timeout=20_000)
    width = small.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the page is {width}px wide at a phone's 390"
    small.screenshot(path=artifacts / "phone-alerts.png")
    small.goto(demo + "#gauges")
    small.wait_for_function("document.querySelectorAll('.gauge').length >= 50", timeout=20_000)
    small.screenshot(path=artifacts / "phone-gauges.png")
    phone.close()
    context.close()
    assert problems == []


HOSTILE = ("<script>window.__xss = 1</script>", '<img src=x onerror="window.__xss = 2">')


def test_data_is_shown_as_text_never_as_html(browser: Any, tmp_path: Path, artifacts: Path) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        """
name: hostile
source: {type: http}
readings: {measurements: {temperature: float}}
event_time: {out_of_orderness: 0s, idle_timeout: 1s}
steps:
  - name: per_device
    window: {type: tumbling, size: 1s}
    aggregates: [mean(temperature)]
  - name: hot
    input: per_device
    rule: {threshold: temperature_mean, above: {critical: 30}}
sinks: [{type: duckdb, path: store.duckdb}]
"""
    )
    port = free_port()
    process = started(["run", str(pipeline)], tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        now = time.time()
        lines = [
            json.dumps({"device_id": device, "ts": now - 5 + i, "temperature": 40.0})
            for device in HOSTILE
            for i in range(4)
        ]
        posted = httpx.post(
            f"{base}/api/v1/readings", content="\n".join(lines).encode(), timeout=10
        )
        assert posted.status_code < 300, posted.text
        context = browser.new_context()
        page = context.new_page()
        problems = watched(page)
        page.goto(base + "/#gauges")
        page.locator(".gauge").nth(1).wait_for(timeout=20_000)  # the CSP forbids string waits
        keys = page.eval_on_selector_all(".gauge .key", "(ks) => ks.map((k) => k.textContent)")
        assert sorted(keys) == sorted(HOSTILE)
        page.click("#tabs button[data-view=alerts]")
        page.locator("#open-alerts tr[data-alert]").nth(1).wait_for(timeout=20_000)
        shown = page.locator("#open-alerts").inner_text()
        for device in HOSTILE:
            assert device in shown.replace('\\"', '"')  # inside the key's JSON text
        for view in ("heatmap", "map", "series", "problems", "overview"):
            page.click(f"#tabs button[data-view={view}]")
            page.wait_for_timeout(500)
        assert page.evaluate("window.__xss") is None
        assert page.locator("main img, main script").count() == 0
        page.screenshot(path=artifacts / "hostile.png")
        context.close()
        assert [p for p in problems if "xss" in p.lower()] == []
    finally:
        stopped(process)
