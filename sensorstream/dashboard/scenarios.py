"""The index of ``sensorstream demo all``: every scenario running, with a link to its dashboard.

Each scenario is its own pipeline with its own API and dashboard (the dashboard reads its
API from the root of its origin), so each is served on a port of its own; this index, on
the main port, lists them: name, title, the document it reproduces, its job, how it runs
now (lines read and per second, results, open alerts, or why it failed) and a link to each
of its dashboard's views. The page polls ``GET /api/v1/scenarios`` every second and writes
every value as text, under the same Content-Security-Policy as the dashboard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources
from typing import Literal

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel

from sensorstream.api.auth import is_loopback
from sensorstream.dashboard.page import FILES, HEADERS

__all__ = ["ScenarioStatus", "index_app"]

State = Literal["starting", "running", "finished", "stopped", "failed"]
_FILES = {**FILES, "scenarios.js": FILES["dashboard.js"]}


class ScenarioStatus(BaseModel):
    """One scenario of the index, as it runs now."""

    name: str
    title: str
    document: str
    job: str
    state: State
    url: str | None  # its dashboard; None when it is not served
    views: list[str]  # the dashboard's views with something declared: gauges, heatmap...
    lines: int = 0
    lines_per_second: float = 0.0
    results: int = 0
    open_alerts: int = 0
    dead_letters: int = 0
    error: str | None = None


def index_app(statuses: Callable[[], Sequence[ScenarioStatus]], title: str) -> FastAPI:
    """The index: the page at ``/``, its script, and ``GET /api/v1/scenarios``.

    Served to this machine only (as the demo's dashboards are without tokens).
    """
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    router = APIRouter()
    static = resources.files("sensorstream.dashboard") / "static"

    def local(request: Request) -> None:
        host = request.client.host if request.client is not None else None
        if host is None or not is_loopback(host):
            raise HTTPException(403, "the scenarios' index is served to this machine only")

    @router.get("/")
    def page(request: Request) -> Response:
        local(request)
        body = (static / "scenarios.html").read_bytes()
        headers = {**HEADERS, "Cache-Control": "no-store"}
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    @router.get("/dashboard/{name}")
    def file(name: str, request: Request) -> Response:
        local(request)
        if name not in _FILES:
            raise HTTPException(404, f"the index has no file {name!r}")
        body = (static / name).read_bytes()
        headers = {**HEADERS, "Cache-Control": "no-cache"}
        return Response(body, media_type=_FILES[name], headers=headers)

    @router.get("/api/v1/scenarios")
    def scenarios(request: Request) -> list[ScenarioStatus]:
        local(request)
        return list(statuses())

    app.include_router(router)
    return app
