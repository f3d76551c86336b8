"""The routes of the dashboard: the page, its own scripts and styles, plotly.js, its views.

Who may open it follows the API's tokens (:class:`~sensorstream.api.auth.Auth`). With no
token configured, the page is served to loopback clients only, as every endpoint is. With
tokens, the page itself (static: it holds no data) is served to anyone, and asks for a
token, which it sends as ``Authorization: Bearer`` on every request it makes, the event
stream included (read with ``fetch``, not ``EventSource``, which cannot send headers).
A Content-Security-Policy allows scripts from this server only, so even a value that
slipped into the page as HTML could not run; the scripts render every value from data
as text (``textContent``) besides.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from sensorstream.api.auth import Auth, is_loopback
from sensorstream.pipeline.dashboard import Views

# The page's own files, and their types; nothing else is served from static/.
FILES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@cache
def plotly_js() -> bytes:
    """plotly.min.js from inside the installed plotly wheel (read once: about 5 MB)."""
    return plotly_path().read_bytes()


def plotly_path() -> Path:
    """Where the installed plotly wheel keeps plotly.min.js."""
    spec = find_spec("plotly")
    if spec is None or spec.origin is None:  # a dependency: only a broken install lacks it
        msg = "the plotly package is not installed: pip install 'plotly>=5.24'"
        raise RuntimeError(msg)
    return Path(spec.origin).parent / "package_data" / "plotly.min.js"


def dashboard_router(views: Views, auth: Auth, read: Sequence[Any] = ()) -> APIRouter:
    """The page at ``/``, its files under ``/dashboard/``, and ``GET /api/v1/dashboard``."""
    router = APIRouter(tags=["dashboard"])
    static = resources.files("sensorstream.dashboard") / "static"
    page = (static / "index.html").read_bytes()

    def page_allowed(request: Request) -> None:
        host = request.client.host if request.client is not None else None
        if auth.open_to_loopback and (host is None or not is_loopback(host)):
            msg = (
                "no API token is configured, so the dashboard is served to this machine only: "
                "configure a token in api.tokens or SENSORSTREAM_TOKENS"
            )
            raise HTTPException(403, msg)

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> Response:
        page_allowed(request)
        headers = {**HEADERS, "Cache-Control": "no-store"}
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)

    @router.get("/dashboard/plotly.min.js", include_in_schema=False)
    def plotly(request: Request) -> Response:
        page_allowed(request)
        body = plotly_js()
        headers = {**HEADERS, "Cache-Control": "max-age=86400"}
        return Response(body, media_type=FILES["dashboard.js"], headers=headers)

    @router.get("/dashboard/{name}", include_in_schema=False)
    def file(name: str, request: Request) -> Response:
        page_allowed(request)
        if name not in FILES:
            raise HTTPException(404, f"the dashboard has no file {name!r}")
        body = (static / name).read_bytes()
        return Response(
            body, media_type=FILES[name], headers={**HEADERS, "Cache-Control": "no-cache"}
        )

    @router.get(
        "/api/v1/dashboard",
        summary="The dashboard's views: gauges, heatmaps, map, series, with their levels",
        dependencies=list(read),
    )
    def dashboard() -> Views:
        return views

    return router
