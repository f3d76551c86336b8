"""The live endpoints: ``GET /api/v1/events`` (Server-Sent Events) and ``GET /metrics``.

The event stream sends every new window result (a correction is a result with a higher
revision) and alert transition as it is written, each with its id; a client that
reconnects with ``Last-Event-ID`` gets exactly the events it missed, while the hub still
holds them. One it can no longer catch up is sent a ``missed`` event saying how many were
lost to it (read them from the store). A comment every ``heartbeat`` seconds keeps
proxies from closing an idle stream and lets the server notice a client that left. When
the server stops, the hub is closed and every stream ends. Ids count from 1 in each run:
an id beyond the newest is an earlier run's, and its client gets every event the hub holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, Protocol

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from sensorstream.sinks.live import LiveHub

PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def events_router(
    hub: LiveHub, dependencies: Sequence[Any] = (), *, heartbeat: float = 15.0
) -> APIRouter:
    """The SSE stream of one pipeline's hub."""
    router = APIRouter(prefix="/api/v1", tags=["live"], dependencies=list(dependencies))

    @router.get(
        "/events",
        summary="Window results and alert transitions as they happen (Server-Sent Events)",
        response_class=StreamingResponse,
    )
    async def events(
        request: Request,
        last_event_id: Annotated[int | None, Header(ge=0)] = None,
        since: Annotated[int | None, Query(ge=0, description="the last id seen")] = None,
    ) -> StreamingResponse:
        start = last_event_id if last_event_id is not None else since
        if start is not None and start > hub.last_id:  # an id of an earlier run: replay all
            start = 0
        return StreamingResponse(
            _stream(hub, request, hub.last_id if start is None else start, heartbeat),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


async def _stream(
    hub: LiveHub, request: Request, last_id: int, heartbeat: float
) -> AsyncIterator[bytes]:
    yield b": connected\n\n"
    while not hub.closed and not await request.is_disconnected():
        found, missed = await anyio.to_thread.run_sync(hub.after, last_id, heartbeat)
        if missed is not None:
            yield b'event: missed\ndata: {"count": %d}\n\n' % missed.count
        for event in found:
            yield event.sse()
            last_id = event.id
        if not found and not hub.closed:
            yield b": heartbeat\n\n"


class Scraped(Protocol):
    """What ``/metrics`` serves: a runner's metrics as Prometheus text (``PipelineMetrics``)."""

    def text(self) -> bytes:
        """The exposition text, as of now."""
        ...


def metrics_router(metrics: Scraped, dependencies: Sequence[Any] = ()) -> APIRouter:
    """``GET /metrics`` in Prometheus' text format."""
    router = APIRouter(tags=["live"], dependencies=list(dependencies))

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def scrape() -> Response:
        return Response(metrics.text(), media_type=PROMETHEUS)

    return router
