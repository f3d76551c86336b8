"""The index of ``demo all``: its routes, who may see it, and its script rendering text only."""

from __future__ import annotations

import re
from importlib import resources

from fastapi.testclient import TestClient

from sensorstream.dashboard.scenarios import ScenarioStatus, index_app

LOOPBACK = ("127.0.0.1", 50000)
ELSEWHERE = ("192.0.2.7", 50000)
RUNNING = ScenarioStatus(
    name="weather",
    title="Weather stations",
    document="pyflink-weather.md",
    job="averages",
    state="running",
    url="http://127.0.0.1:8001/",
    views=["gauges", "series"],
    lines=120,
    lines_per_second=0.8,
)
FAILED = RUNNING.model_copy(
    update={"name": "rooms", "state": "failed", "url": None, "views": [], "error": "port taken"}
)


def client(address: tuple[str, int] = LOOPBACK) -> TestClient:
    return TestClient(index_app(lambda: [RUNNING, FAILED], "scenarios"), client=address)


def static_text(name: str) -> str:
    return (resources.files("sensorstream.dashboard") / "static" / name).read_text()


def test_the_index_lists_each_scenario_as_it_runs_now() -> None:
    answer = client().get("/api/v1/scenarios")

    assert answer.status_code == 200
    assert [item["name"] for item in answer.json()] == ["weather", "rooms"]
    assert answer.json()[0]["lines_per_second"] == 0.8
    assert answer.json()[1] == {**FAILED.model_dump(mode="json")}


def test_the_page_and_its_files_are_served_under_the_dashboards_policy() -> None:
    page = client().get("/")
    script = client().get("/dashboard/scenarios.js")
    styles = client().get("/dashboard/dashboard.css")

    assert page.status_code == script.status_code == styles.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/dashboard/scenarios.js"' in page.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert client().get("/dashboard/secrets.txt").status_code == 404


def test_the_index_is_served_to_this_machine_only() -> None:
    for path in ("/", "/api/v1/scenarios", "/dashboard/scenarios.js"):
        answer = client(ELSEWHERE).get(path)
        assert answer.status_code == 403, path
        assert "this machine only" in answer.json()["detail"]


def test_the_script_never_writes_html_and_fetches_only_its_own_server() -> None:
    script = static_text("scenarios.js")

    for sink in (r"\.innerHTML\b", r"\.outerHTML\b", r"insertAdjacentHTML", r"document\.write"):
        assert re.search(sink, script) is None, sink
    assert "textContent" in script
    assert re.search(r"""["'`]https?://""", script) is None
    assert 'fetch("/api/v1/scenarios"' in script
