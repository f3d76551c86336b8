"""Several scenarios at once in one process (``demo all``'s engine), in a real browser.

Only ``weather`` may exist, so the ensemble here runs it twice under two names (each with
its own store and checkpoint) beside a third member that cannot start (its port is
taken): the index lists all three, the failure shown and the others running, and stopping
them all leaves each its checkpoint.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensorstream.runtime.ensemble import Ensemble, Listing, Member
from sensorstream.scenarios import scenario

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
WAIT_MS = 30_000
HOSTILE = '<img src=x onerror="document.title=1">copy'


def member(name: str, title: str, *, port: int = 0) -> Member:
    """The weather scenario as pipeline ``name``, with a minute of history, served on ``port``."""
    weather = scenario("weather")
    spec = weather.spec(
        start=datetime.now(UTC) - timedelta(minutes=1),
        changes={
            "name": name,
            "sinks": [{"type": "duckdb", "path": f".sensorstream/{name}.duckdb"}],
            "checkpoint": {"dir": f".sensorstream/checkpoints/{name}", "interval": "1s"},
            "api": {"host": "127.0.0.1", "port": port},
        },
    )
    return Member(Listing(name, title, weather.document, weather.job), spec, fresh=True)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def test_the_index_shows_every_member_running_and_a_failed_one_failed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    taken_port: int,
    new_page: Any,
    page_errors: Any,
    artifacts: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    members = [
        member("weather", "Weather stations"),
        member("weather_copy", HOSTILE),
        member("weather_blocked", "Port taken", port=taken_port),
    ]
    ensemble = Ensemble(members, port=0).start()
    try:
        assert [m.state for m in members] == ["running", "running", "failed"]
        page = new_page(1280, 850, bypass_csp=True)
        page.goto(ensemble.url + "/")
        for name in ("weather", "weather_copy"):
            page.wait_for_function(
                f'Number(document.querySelector(\'tr[data-scenario="{name}"] '
                "td[data-metric=lines_per_second]')?.textContent.replace(/,/g, '')) > 0",
                timeout=WAIT_MS,
            )
        assert page.locator("#status").inner_text() == "2 of 3 running"
        blocked = page.locator('tr[data-scenario="weather_blocked"]').inner_text()
        assert "failed" in blocked
        assert "in use" in blocked  # the OSError's own words
        assert page.locator('tr[data-scenario="weather_blocked"] td.views a').count() == 0
        # Data is text: the hostile title shows as written, and runs nothing.
        copy = page.locator('tr[data-scenario="weather_copy"]')
        assert HOSTILE in copy.inner_text()
        assert copy.locator("img").count() == 0
        assert page.title() == "Scenarios · sensorstream"
        page.screenshot(path=artifacts / "index-of-three.png", full_page=True)
        # Each running member's link opens its own pipeline's dashboard.
        urls = {m.listing.name: m.server.url for m in members if m.server is not None}
        assert set(urls) == {"weather", "weather_copy"}
        assert len(set(urls.values())) == 2
        for name, url in urls.items():
            page.locator(f'tr[data-scenario="{name}"] td.views a[data-view=gauges]').click()
            page.wait_for_selector("#status.live", timeout=WAIT_MS)
            assert page.url == f"{url}/#gauges"
            views = httpx.get(f"{url}/api/v1/dashboard", timeout=30).json()
            assert views["pipeline"] == name
            page.go_back()
    finally:
        ensemble.close()
    assert [m.state for m in members] == ["stopped", "stopped", "failed"]
    for m in members[:2]:
        assert m.summary is not None
        assert m.summary.balanced
        assert m.summary.counters.get("lines") > 0
        folder = tmp_path / ".sensorstream" / "checkpoints" / m.listing.name
        assert (folder / "pipeline.json").exists()
        assert (tmp_path / ".sensorstream" / f"{m.listing.name}.duckdb").exists()
    assert page_errors.messages == []
