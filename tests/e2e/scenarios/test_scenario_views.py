"""Every scenario's dashboard in a real browser, and the index of ``demo all``; screenshots.

Each scenario runs as ``sensorstream demo NAME --history 3m`` (its devices started three
minutes ago, so windows have closed by the time the page opens); the test opens each view
its dashboard declares, waits until data is drawn there, and saves a screenshot per view to
the test's artifacts folder (``test-artifacts/<test>/``) and, when ``SENSORSTREAM_SCREENSHOTS``
names a folder, there too (``<scenario>-<view>.png``). New scenarios join by being in
``SCENARIOS``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensorstream.scenarios import SCENARIOS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]
ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "PYTHONPATH": str(REPO)}
WAIT_MS = 30_000  # a loaded 2-core machine: plotly alone is 5 MB to parse

# Drawn: a view has data on the page, not just its frame.
DRAWN = {
    "overview": "Number(document.querySelector('.card[data-metric=\"lines read\"] .value')"
    "?.textContent.replace(/,/g, '')) > 0",
    "gauges": "document.querySelectorAll('#gauges .gauge').length > 0 && "
    "[...document.querySelectorAll('#gauges .gauge .value')].every((v) => v.textContent.trim())",
    # A plotly chart of the view holding at least one trace with points.
    **{
        view: f"[...document.querySelectorAll('#view-{view} .js-plotly-plot')].some((gd) => "
        "(gd.data || []).some((t) => (t.z || t.x || t.lat || []).length > 0))"
        for view in ("heatmap", "map", "series")
    },
}


def screenshot_folders(artifacts: Path) -> list[Path]:
    """The artifacts folder, and ``SENSORSTREAM_SCREENSHOTS`` when set."""
    folders = [artifacts]
    if extra := os.environ.get("SENSORSTREAM_SCREENSHOTS"):
        folders.append(Path(extra))
        folders[-1].mkdir(parents=True, exist_ok=True)
    return folders


def save(page: Any, folders: list[Path], name: str) -> None:
    """A full-page screenshot, in every folder."""
    first = folders[0] / f"{name}.png"
    page.screenshot(path=first, full_page=True)
    assert first.stat().st_size > 10_000  # a drawn page, not a blank one
    for folder in folders[1:]:
        shutil.copyfile(first, folder / first.name)


def started(command: list[str], cwd: Path, announced: str) -> tuple[subprocess.Popen[str], str]:
    """A sensorstream command, once it printed the line starting with ``announced``: its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sensorstream", *command],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert process.stderr is not None
    seen = []
    for _ in range(40):
        line = process.stderr.readline()
        seen.append(line)
        if line.startswith(announced):
            match = re.fullmatch(rf"{announced}(http://127\.0\.0\.1:\d+/)\s*", line)
            assert match is not None, line
            return process, match[1]
        if not line:
            break
    process.kill()
    pytest.fail(f"nothing announced as {announced!r}: {seen}")


def stopped(process: subprocess.Popen[str]) -> None:
    """Ctrl-C, as a user would; it must end at a checkpoint, with 130."""
    process.send_signal(signal.SIGINT)
    try:
        _, errors = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("the demo did not stop within 60 s of Ctrl-C")
    assert process.returncode == 130, errors


@pytest.fixture(params=list(SCENARIOS))
def scenario_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A scenario running live with three minutes of history: its name and dashboard URL."""
    name = str(request.param)
    command = ["demo", name, "--history", "3m", "--duration", "120s", "--port", "0"]
    process, url = started(command, tmp_path, "Dashboard: ")
    try:
        yield name, url
    finally:
        stopped(process)


def test_each_scenario_view_draws_its_data(
    scenario_url: tuple[str, str], new_page: Any, page_errors: Any, artifacts: Path
) -> None:
    name, url = scenario_url
    views = httpx.get(url + "api/v1/dashboard", timeout=30).json()
    shown = ["overview"]
    shown += ["gauges"] if views["gauges"] else []
    shown += ["heatmap"] if views["heatmaps"] else []
    shown += ["map"] if views["map"] else []
    shown += ["series"] if views["series"] else []
    # Playwright's waits evaluate strings, which the page's CSP rightly forbids.
    page = new_page(1280, 850, bypass_csp=True)
    page.goto(url)
    page.wait_for_selector("#status.live", timeout=WAIT_MS)
    assert page.locator("#title").inner_text() == views["title"]
    folders = screenshot_folders(artifacts)
    for view in shown:
        page.click(f"#tabs button[data-view={view}]")
        page.wait_for_function(DRAWN[view], timeout=WAIT_MS)
        page.wait_for_timeout(300)  # plotly's transitions settle before the picture
        save(page, folders, f"{name}-{view}")
    assert page_errors.messages == []


def test_the_index_lists_every_scenario_with_working_links(
    tmp_path: Path, new_page: Any, page_errors: Any, artifacts: Path
) -> None:
    command = ["demo", "all", "--history", "2m", "--duration", "120s", "--port", "0"]
    process, index = started(command, tmp_path, "Scenarios: ")
    try:
        page = new_page(1280, 850, bypass_csp=True)
        page.goto(index)
        for name in SCENARIOS:
            page.wait_for_function(
                f'Number(document.querySelector(\'tr[data-scenario="{name}"] '
                "td[data-metric=lines_per_second]')?.textContent.replace(/,/g, '')) > 0",
                timeout=WAIT_MS,
            )
        rows = page.locator("#scenarios tbody tr")
        assert rows.count() == len(SCENARIOS)
        for name, item in SCENARIOS.items():
            row = page.locator(f'tr[data-scenario="{name}"]')
            text = row.inner_text()
            assert item.title in text
            assert item.document in text
            assert "running" in text
            links = row.locator("td.views a")
            targets = [links.nth(i).get_attribute("href") for i in range(links.count())]
            assert targets[0] is not None
            assert targets[0].endswith("/#overview")
            for target in targets:
                assert target is not None
                assert httpx.get(target, timeout=30).status_code == 200
        save(page, screenshot_folders(artifacts), "index")
        # The first scenario's link opens its own dashboard.
        first = next(iter(SCENARIOS.values()))
        page.locator(f'tr[data-scenario="{first.name}"] td:first-child a').click()
        page.wait_for_selector("#status.live", timeout=WAIT_MS)
        views = httpx.get(page.url.split("#")[0] + "api/v1/dashboard", timeout=30).json()
        assert views["pipeline"] == first.name
    finally:
        stopped(process)
    assert page_errors.messages == []
