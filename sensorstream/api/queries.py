"""Read endpoints over a pipeline's store: devices, series, results, alerts, dead letters.

Each answers a JSON array of rows (a frame written by Polars, never built row by row in
Python), or ``{"detail": ...}`` with 400 for a bad parameter and 404 for an unknown
pipeline or step. Times are ISO 8601 with a zone. The store is opened per request
through ``open_store`` (a stopped store's file, or a running pipeline's reader).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

import polars as pl
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from sensorstream.durations import parse_duration
from sensorstream.errors import ConfigError, StoreError
from sensorstream.store import Store
from sensorstream.store.metrics import MetricsAnswer, compute_metrics

StoreOpener = Callable[[], AbstractContextManager[Store]]
Since = Annotated[datetime | None, Query(description="ISO 8601 with a zone, inclusive")]
Until = Annotated[datetime | None, Query(description="ISO 8601 with a zone, exclusive")]
Limit = Annotated[int, Query(ge=0, le=1_000_000)]


def rows(frame: pl.DataFrame) -> Response:
    """A frame as a JSON array of objects; binary columns (raw payloads) in base64."""
    binary = [name for name, dtype in frame.schema.items() if dtype == pl.Binary()]
    if binary:
        frame = frame.with_columns(pl.col(binary).bin.encode("base64"))
    return Response(content=frame.write_json(), media_type="application/json")


def query_router(
    open_store: StoreOpener, pipeline: str, dependencies: Sequence[Any] = ()
) -> APIRouter:
    """The read endpoints of ``pipeline``; ``dependencies`` guard them (a read scope)."""
    router = APIRouter(prefix="/api/v1", tags=["query"], dependencies=list(dependencies))

    @contextmanager
    def store() -> Iterator[Store]:
        try:
            with open_store() as opened:
                yield opened
        except StoreError as error:
            status = 404 if "no pipeline" in str(error) or "no step" in str(error) else 400
            raise HTTPException(status, str(error)) from None

    @router.get("/devices", summary="Each device's last reading and latest values")
    def devices(limit: Limit = 10_000) -> Response:
        with store() as opened:
            return rows(opened.devices(pipeline, limit=limit))

    @router.get("/series", summary="One measurement over time, raw or aggregated")
    def series(
        measurement: str,
        device: str | None = None,
        since: Since = None,
        until: Until = None,
        every: Annotated[str | None, Query(description="a bucket size, e.g. 1m")] = None,
        agg: Annotated[str, Query(description="mean, min, max, sum or count")] = "mean",
        limit: Limit = 100_000,
    ) -> Response:
        bucket = _duration(every) if every is not None else None
        with store() as opened:
            return rows(
                opened.series(
                    pipeline,
                    measurement,
                    device=device,
                    since=since,
                    until=until,
                    every=bucket,
                    agg=agg,
                    limit=limit,
                )
            )

    @router.get("/results/{step}", summary="A step's window results, corrections included")
    def results(
        step: str, since: Since = None, until: Until = None, limit: Limit = 1000
    ) -> Response:
        with store() as opened:
            return rows(opened.results(pipeline, step, since=since, until=until, limit=limit))

    @router.get("/alerts", summary="Each alert's current state")
    def alerts(
        state: str | None = None, rule: str | None = None, severity: str | None = None
    ) -> Response:
        with store() as opened:
            return rows(opened.alerts(pipeline, state=state, rule=rule, severity=severity))

    @router.get("/dead_letters", summary="The latest dead letters, with their reasons")
    def dead_letters(limit: Limit = 100) -> Response:
        with store() as opened:
            return rows(opened.dead_letters(pipeline, limit=limit))

    @router.get("/dead_letters/by_reason", summary="Dead letters counted per reason code")
    def dead_letters_by_reason() -> Response:
        with store() as opened:
            counters = opened.counters(pipeline)
        prefix = "dead_letters:"
        counts = {k[len(prefix) :]: v for k, v in counters.items() if k.startswith(prefix)}
        frame = pl.DataFrame(
            {"reason_code": list(counts), "count": list(counts.values())},
            schema={"reason_code": pl.String(), "count": pl.Int64()},
        ).sort("count", "reason_code", descending=[True, False])
        return rows(frame)

    @router.get("/late", summary="The latest late readings, with the steps they missed")
    def late(step: str | None = None, limit: Limit = 100) -> Response:
        with store() as opened:
            return rows(opened.late_readings(pipeline, step, limit=limit))

    return router


def compute_router(
    open_store: StoreOpener, pipeline: str, dependencies: Sequence[Any] = ()
) -> APIRouter:
    """``POST /compute/metrics``: the iot-kafka-spark design's contract, over this pipeline."""
    router = APIRouter(tags=["query"], dependencies=list(dependencies))

    @router.post(
        "/compute/metrics",
        summary="Metrics of measurements over a time range",
        description=(
            "Keys are measurement names with lists of metrics (count, average, mean, min, "
            "max), and from/to as YYYY-MM-DD HH:MM:SS, both included. Unknown keys and "
            "metrics are listed in errors while the valid ones are computed."
        ),
        responses={400: {"description": "nothing valid to compute, or a malformed request"}},
    )
    async def metrics(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"result": {}, "errors": ["the body is not JSON"]}, 400)
        try:
            # In a worker thread, as FastAPI runs the other (plain) endpoints: the query
            # would hold up every other request and the live stream on the event loop.
            answer = await run_in_threadpool(compute, body)
        except StoreError as error:
            return JSONResponse({"result": {}, "errors": [str(error)]}, 400)
        return JSONResponse(answer.body(), answer.status)

    def compute(body: object) -> MetricsAnswer:
        with open_store() as opened:
            return compute_metrics(opened, pipeline, body)

    return router


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ConfigError as error:
        raise HTTPException(400, str(error)) from None
