"""Read endpoints over a pipeline's store: devices, series, results, alerts, dead letters.

Each answers a JSON array of rows (a frame written by Polars, never built row by row in
Python), or, asked with ``Accept: application/vnd.apache.arrow.stream``, the frame as an
Arrow IPC stream with its exact types (``sensorstream query`` asks so); or
``{"detail": ...}`` with 400 for a bad parameter, 404 for an unknown pipeline, step or
alert, and 503 while the store cannot be read (``Retry-After``). Times are ISO 8601 with a
zone. The store is opened per request through ``open_store`` (a stopped store's file, or a
running pipeline's reader); alerts come with their acknowledgements and silences from
``actions`` (:mod:`~sensorstream.actions`, the file beside the store), as ``sensorstream
alerts`` shows them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import polars as pl
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from sensorstream.actions.alert_actions import AlertActions
from sensorstream.actions.silences import KeyValue, parse_key
from sensorstream.api.auth import Requirement
from sensorstream.durations import parse_duration
from sensorstream.engine.rules.lifecycle import AlertState
from sensorstream.errors import ConfigError, StoreBusy, StoreError
from sensorstream.store import Store
from sensorstream.store.alert_history import HISTORY_SECTIONS, alert_history
from sensorstream.store.alerts import with_actions
from sensorstream.store.metrics import BodyError, MetricsAnswer, compute_metrics, parse_body

StoreOpener = Callable[[], AbstractContextManager[Store]]
ActionsOpener = Callable[[], AlertActions]
KeyFilter = Annotated[
    str | None,
    Query(description='key values as JSON, e.g. {"device_id": "s1"}: all must match'),
]
Since = Annotated[datetime | None, Query(description="ISO 8601 with a zone, inclusive")]
Until = Annotated[datetime | None, Query(description="ISO 8601 with a zone, exclusive")]
Limit = Annotated[int, Query(ge=0, le=1_000_000)]
ARROW = "application/vnd.apache.arrow.stream"
Accept = Annotated[str | None, Header(description=f"{ARROW} for an Arrow IPC stream")]


# The sections of ``alerts show`` (:data:`HISTORY_SECTIONS`) as the keys of an alert's document.
_SECTION_KEYS = dict(
    zip(
        HISTORY_SECTIONS,
        ("transitions", "acknowledgements", "silences", "deliveries"),
        strict=True,
    )
)


class SqlRequest(BaseModel):
    """One read-only SQL statement over the store, and how many rows to answer at most."""

    sql: str = Field(min_length=1, description="one SELECT (or EXPLAIN)")
    limit: int = Field(default=10_000, ge=0, le=1_000_000)


def json_text(frame: pl.DataFrame) -> str:
    """A frame as a JSON array of objects; binary columns (raw payloads) in base64."""
    binary = [name for name, dtype in frame.schema.items() if dtype == pl.Binary()]
    if binary:
        frame = frame.with_columns(pl.col(binary).bin.encode("base64"))
    return frame.write_json()


def rows(frame: pl.DataFrame, accept: str | None = None) -> Response:
    """A frame as a JSON array of objects (see :func:`json_text`), or as Arrow if asked."""
    if accept is not None and ARROW in accept:
        buffer = io.BytesIO()
        frame.write_ipc_stream(buffer)
        return Response(content=buffer.getvalue(), media_type=ARROW)
    return Response(content=json_text(frame), media_type="application/json")


def one_row(frame: pl.DataFrame, status: int = 200) -> Response:
    """A frame's only row as a JSON object, written as :func:`rows` writes each."""
    return Response(
        content=json_text(frame)[1:-1], status_code=status, media_type="application/json"
    )


def query_router(
    open_store: StoreOpener,
    pipeline: str,
    dependencies: Sequence[Any] = (),
    *,
    actions: ActionsOpener | None = None,
    admin: Requirement | None = None,
) -> APIRouter:
    """The read endpoints of ``pipeline``; ``dependencies`` guard them (a read scope).

    ``actions`` gives the acknowledgements and silences shown beside the alerts (without
    it, those columns are null). ``admin`` guards ``POST /api/v1/sql`` besides (served only
    with it): SQL reaches whatever the store's connection can, which inside a running
    pipeline includes the files beside it.
    """
    router = APIRouter(prefix="/api/v1", tags=["query"], dependencies=list(dependencies))

    @contextmanager
    def store() -> Iterator[Store]:
        try:
            with open_store() as opened:
                yield opened
        except StoreBusy as error:
            raise HTTPException(503, str(error), {"Retry-After": "1"}) from None
        except StoreError as error:
            status = 404 if "no pipeline" in str(error) or "no step" in str(error) else 400
            raise HTTPException(status, str(error)) from None

    def _with_actions(frame: pl.DataFrame) -> pl.DataFrame:
        opened = actions() if actions is not None else None
        return with_actions(frame, opened, pipeline=pipeline, now=_now())

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

    @router.get("/pipelines", summary="The pipelines stored, with their steps")
    def pipelines(accept: Accept = None) -> Response:
        with store() as opened:
            return rows(opened.pipelines(), accept)

    @router.get("/results", summary="Every step's latest window results, with a step column")
    def all_results(
        since: Since = None, until: Until = None, limit: Limit = 1000, accept: Accept = None
    ) -> Response:
        with store() as opened:
            frame = opened.results(pipeline, since=since, until=until, limit=limit)
        return rows(frame, accept)

    @router.get("/results/{step}", summary="A step's window results, corrections included")
    def results(
        step: str,
        key: KeyFilter = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = 1000,
        accept: Accept = None,
    ) -> Response:
        wanted = _key(key) if key is not None else None
        with store() as opened:
            frame = opened.results(
                pipeline, step, key=wanted, since=since, until=until, limit=limit
            )
        return rows(frame, accept)

    if admin is not None:

        @router.post(
            "/sql",
            summary="One read-only SQL statement over the store",
            dependencies=[Depends(admin)],
            responses={400: {"description": "not one SELECT, or it failed"}},
        )
        def sql(request: SqlRequest, accept: Accept = None) -> Response:
            with store() as opened:
                frame = opened.sql(request.sql, limit=request.limit)
            return rows(frame, accept)

    @router.get(
        "/alerts",
        summary="Each alert's current state, latest acknowledgement and silence in effect",
        description=(
            "One row per alert: its latest transition, with acknowledged_by, "
            "acknowledged_at, silenced_until and silence_id. since and until filter by "
            "the time of that latest transition (when the alert came to its current "
            "state): polling with since= the time of the last look gives what changed."
        ),
    )
    def alerts(
        state: Annotated[AlertState | None, Query(description="the current state")] = None,
        rule: str | None = None,
        severity: Annotated[str | None, Query(description="the current severity")] = None,
        key: KeyFilter = None,
        since: Annotated[
            datetime | None,
            Query(description="latest transition at or after (ISO 8601 with a zone)"),
        ] = None,
        until: Annotated[
            datetime | None,
            Query(description="latest transition before (ISO 8601 with a zone)"),
        ] = None,
    ) -> Response:
        wanted = _key(key) if key is not None else None
        with store() as opened:
            frame = opened.alerts(
                pipeline,
                state=state,
                rule=rule,
                severity=severity,
                key=wanted,
                since=_aware("since", since),
                until=_aware("until", until),
            )
        return rows(_with_actions(frame))

    @router.get(
        "/alerts/{alert_id}",
        summary="One alert's history: transitions, acknowledgements, silences, deliveries",
        description=(
            "What `sensorstream alerts show` shows: the alert as /api/v1/alerts lists it "
            "(null for an id only corrections carry), its transitions and corrections "
            "oldest first, its acknowledgements, the silences matching it (ended ones "
            "too) and its webhook deliveries."
        ),
        responses={404: {"description": "no alert of this id in this pipeline's store"}},
    )
    def alert(alert_id: str) -> Response:
        with store() as opened:
            if pipeline not in opened.pipelines_of_alert(alert_id):
                raise HTTPException(404, unknown_alert(alert_id, pipeline))
            history = opened.alert_transitions(pipeline, alert_id=alert_id, limit=None)
        opened_actions = actions() if actions is not None else None
        sections = alert_history(
            history, opened_actions, pipeline=pipeline, alert_id=alert_id, now=_now()
        )
        current = history.filter(pl.col("kind") == "transition").tail(1)
        shown = json_text(_with_actions(current))[1:-1] if current.height else "null"
        parts = {
            "pipeline": json.dumps(pipeline),
            "alert_id": json.dumps(alert_id),
            "alert": shown,
            **{_SECTION_KEYS[title]: json_text(frame) for title, frame in sections.items()},
        }
        document = ", ".join(f"{json.dumps(name)}: {text}" for name, text in parts.items())
        return Response(content="{" + document + "}", media_type="application/json")

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
            body = parse_body(await request.body())
        except BodyError as error:
            return JSONResponse({"result": {}, "errors": [str(error)]}, 400)
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


def unknown_alert(alert_id: str, pipeline: str) -> str:
    """Why an alert id is not found: it may be too new to be stored yet."""
    return (
        f"no alert {alert_id!r} of pipeline {pipeline!r} is stored: GET /api/v1/alerts lists "
        "them (a running pipeline stores a new alert at its next checkpoint; try again then)"
    )


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ConfigError as error:
        raise HTTPException(400, str(error)) from None


def _key(text: str) -> dict[str, KeyValue]:
    try:
        return parse_key("key", text)
    except ConfigError as error:
        raise HTTPException(400, str(error)) from None


def _aware(name: str, moment: datetime | None) -> datetime | None:
    if moment is not None and moment.utcoffset() is None:
        msg = f"{name}={moment.isoformat()} has no time zone: write e.g. 2024-05-01T12:00:00Z"
        raise HTTPException(400, msg)
    return moment


def _now() -> datetime:
    return datetime.now(UTC)
