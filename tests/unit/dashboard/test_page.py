"""The dashboard's routes: the page and its files, plotly.js, the views, and who may see them."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from sensorstream.api.auth import Auth
from sensorstream.cli.specs import demo_spec
from sensorstream.dashboard import dashboard_router
from sensorstream.tokens import Token

TOKEN = "a-long-token-0123456789"
LOOPBACK = ("127.0.0.1", 50000)
ELSEWHERE = ("192.0.2.7", 50000)


def app_with(auth: Auth) -> FastAPI:
    app = FastAPI()
    read = [Depends(auth.require("read"))]
    app.include_router(dashboard_router(demo_spec().views(), auth, read))
    return app


def loopback() -> TestClient:
    return TestClient(app_with(Auth()), client=LOOPBACK)


def with_tokens(client: tuple[str, int] = ELSEWHERE) -> TestClient:
    return TestClient(app_with(Auth([Token.of(TOKEN, ["read"], "dash")])), client=client)


def static_text(name: str) -> str:
    return (resources.files("sensorstream.dashboard") / "static" / name).read_text()


# -- the page and its files ---------------------------------------------------------------------


def test_the_page_is_served_with_a_content_security_policy() -> None:
    answer = loopback().get("/")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "<script" in answer.text


def test_the_page_loads_nothing_from_elsewhere() -> None:
    page = loopback().get("/").text

    assert "http:" not in page
    assert "https:" not in page
    assert "//" not in "".join(re.findall(r'(?:src|href)="([^"]*)"', page))
    assert set(re.findall(r'<script[^>]*src="([^"]*)"', page)) == {
        "/dashboard/plotly.min.js",
        "/dashboard/dashboard.js",
    }


def test_plotly_is_served_from_the_installed_wheel() -> None:
    answer = loopback().get("/dashboard/plotly.min.js")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert answer.text.startswith("/**\n* plotly.js v")
    assert len(answer.content) > 1_000_000


@pytest.mark.parametrize(
    ("name", "kind"), [("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")]
)
def test_the_pages_own_files_are_served(name: str, kind: str) -> None:
    answer = loopback().get(f"/dashboard/{name}")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(kind)
    assert answer.text == static_text(name)
    assert "script-src 'self'" in answer.headers["content-security-policy"]


@pytest.mark.parametrize("name", ["index.html", "nothing.js", "__init__.py", "page.py"])
def test_any_other_file_is_not_found(name: str) -> None:
    assert loopback().get(f"/dashboard/{name}").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/..%2Fpage.py",
        "/dashboard/..%2F..%2Fdashboard%2Fpage.py",
        "/dashboard/%2E%2E%2F__init__.py",
        "/dashboard/static%2Fdashboard.js",
    ],
)
def test_a_path_outside_the_files_is_not_found(path: str) -> None:
    answer = loopback().get(path)

    assert answer.status_code == 404
    assert "from __future__" not in answer.text


def test_the_views_are_served_as_json() -> None:
    answer = loopback().get("/api/v1/dashboard")

    assert answer.status_code == 200
    views = answer.json()
    assert views["pipeline"] == "demo"
    assert views["gauges"][0]["measure"] == "temperature_mean"
    assert views["gauges"][0]["levels"] == {"warning": 25, "critical": 28}
    assert views["map"]["lat"] == "lat"


# -- who may see it ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/dashboard/dashboard.js", "/dashboard/plotly.min.js", "/api/v1/dashboard"]
)
def test_without_tokens_other_clients_are_refused(path: str) -> None:
    for client in (TestClient(app_with(Auth())), TestClient(app_with(Auth()), client=ELSEWHERE)):
        answer = client.get(path)

        assert answer.status_code == 403
        assert "configure a token" in answer.json()["detail"]


def test_with_tokens_the_page_is_served_to_anyone() -> None:
    client = with_tokens()

    for path in ("/", "/dashboard/dashboard.js", "/dashboard/dashboard.css"):
        assert client.get(path).status_code == 200, path


def test_with_tokens_the_views_need_the_token() -> None:
    client = with_tokens()

    assert client.get("/api/v1/dashboard").status_code == 401
    wrong = {"Authorization": "Bearer not-the-token-0123456789"}
    assert client.get("/api/v1/dashboard", headers=wrong).status_code == 401
    answer = client.get("/api/v1/dashboard", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.json()["pipeline"] == "demo"


def test_with_tokens_loopback_needs_the_token_too() -> None:
    assert with_tokens(LOOPBACK).get("/api/v1/dashboard").status_code == 401


# -- the script renders data as text --------------------------------------------------------------


def test_the_script_never_writes_html() -> None:
    script = static_text("dashboard.js")

    for sink in (r"\.innerHTML\b", r"\.outerHTML\b", r"insertAdjacentHTML", r"document\.write"):
        assert re.search(sink, script) is None, sink
    assert "textContent" in script


def test_the_script_fetches_nothing_from_elsewhere() -> None:
    assert re.search(r"""["'`]https?://""", static_text("dashboard.js")) is None
