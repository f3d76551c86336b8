"""The API of one pipeline as one FastAPI app: queries, metrics over a range, live events.

:func:`create_app` composes the routers of :mod:`~sensorstream.api.queries`,
:mod:`~sensorstream.api.actions` and :mod:`~sensorstream.api.live` around what it is
given: a store opener (a stopped store's file, or a running pipeline's reader), the
alerts' acknowledgements and silences (the file beside the store), and for a running
pipeline its live hub and metrics. ``read`` guards every read endpoint (FastAPI
dependencies: a token with the read scope, or loopback only) and ``admin`` the writes
(acknowledging, silencing: a dependency giving the caller's grant, e.g.
``auth.require("admin")``; without it they are not served), so the app itself holds no
policy and no global state.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI

from sensorstream.actions.alert_actions import AlertActions
from sensorstream.api.actions import Admin, actions_router
from sensorstream.api.auth import Auth
from sensorstream.api.live import Scraped, events_router, metrics_router
from sensorstream.api.queries import ActionsOpener, StoreOpener, compute_router, query_router
from sensorstream.sinks.live import LiveHub
from sensorstream.store import Store


@dataclass
class Serving:
    """What one pipeline's API serves."""

    pipeline: str
    open_store: StoreOpener
    hub: LiveHub | None = None  # live events (a running pipeline)
    metrics: Scraped | None = None  # /metrics (a running pipeline's PipelineMetrics)
    routers: Sequence[APIRouter] = field(default_factory=tuple)  # more (ingest)
    actions: ActionsOpener | None = None  # acknowledgements and silences (beside the store)


def create_app(
    serving: Serving,
    *,
    read: Sequence[Any] = (),
    admin: Admin | None = None,
    title: str = "sensorstream",
) -> FastAPI:
    """The app serving one pipeline; ``read`` guards the read endpoints, ``admin`` the writes.

    Without ``admin`` the endpoints that need it (actions, SQL) are not served at all.
    """
    app = FastAPI(
        title=f"{title}: {serving.pipeline}",
        summary="Readings in, results, alerts and live events out",
    )
    app.include_router(
        query_router(
            serving.open_store, serving.pipeline, read, actions=serving.actions, admin=admin
        )
    )
    if serving.actions is not None:
        app.include_router(
            actions_router(
                serving.actions, serving.open_store, serving.pipeline, read=read, admin=admin
            )
        )
    app.include_router(compute_router(serving.open_store, serving.pipeline, read))
    if serving.hub is not None:
        app.include_router(events_router(serving.hub, read))
    if serving.metrics is not None:
        app.include_router(metrics_router(serving.metrics, read))
    for router in serving.routers:
        app.include_router(router)
    return app


def stored_app(path: Path, pipeline: str, auth: Auth) -> FastAPI:
    """The app of a stopped pipeline's store: its queries, opened read-only per request.

    Opened per request, so that the pipeline can start again meanwhile (DuckDB lets a
    writer in only while no other process has the file open); then requests fail with
    503, saying that the running pipeline serves its store itself.
    """

    @contextmanager
    def open_store() -> Iterator[Store]:
        with Store(path) as opened:
            yield opened

    return create_app(
        Serving(pipeline, open_store, actions=partial(AlertActions.beside, path)),
        read=[Depends(auth.require("read"))],
        admin=auth.require("admin"),
    )
