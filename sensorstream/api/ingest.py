"""``POST /api/v1/readings``: readings in over HTTP, durable in the ingest log before the 2xx.

The body is one JSON object, a JSON array of objects, or NDJSON, optionally gzipped
(:mod:`~sensorstream.api.bodies`). Each line is validated with the pipeline's reading
format, by the decoder the pipeline itself uses, at the time the request arrived:

- **200**: every line is a reading;
- **207**: some are not: ``{"accepted": n, "rejected": m, "errors": [{"line": 3,
  "reason_code": "missing_timestamp", "reason": "..."}]}`` (the first 1,000 errors);
- **400**: none is (or the body is no JSON at all): nothing is stored;
- **413**: the body, sent or decompressed, is larger than ``max_request_bytes``;
- **429** with ``Retry-After``: the ingest log is full of lines the pipeline has not yet
  checkpointed (back-pressure: retry later, nothing is stored);
- **503**: the ingest log cannot be written (a full disk): nothing is stored.

On a 2xx **the whole body** is in the log and synced to disk: its good lines become readings,
its bad lines dead letters, the same ones the answer listed, with the same line numbers, so
every line is accounted for in the pipeline too (``origin``: ``line 3 of request 1200``,
where ``1200`` is the ``request`` of the answer, the sequence number of the body's first
line). The arrival time is stored with it, so the pipeline judges each line exactly as the
answer did, on every replay.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import polars as pl
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from sensorstream.api.auth import Auth
from sensorstream.api.bodies import BodyError, decompressed, json_lines
from sensorstream.readings import ReadingFormat, decode_json_lines
from sensorstream.sources.ingest_cache import ORIGIN, DecodedCache
from sensorstream.sources.ingest_log import Backpressure, IngestLog, IngestLogError, count_lines

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "PATH",
    "IngestResult",
    "LineError",
    "ingest_path",
    "ingest_router",
]

PATH = "/api/v1/readings"  # the readings stream's; another stream's is ingest_path(name)
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
MAX_ERRORS = 1000
_LINE = re.compile(r"^line (\d+) of ")


class LineError(BaseModel):
    """Why one line of the body is not a reading (``line`` counts from 1)."""

    line: int
    reason_code: str
    reason: str


class IngestResult(BaseModel):
    """What happened to a body's lines; ``request`` names it in the pipeline's dead letters."""

    accepted: int
    rejected: int
    request: int | None = None
    errors: list[LineError] = []
    detail: str | None = None


class Problem(BaseModel):
    """Why a request was refused as a whole."""

    detail: str


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Every line is a reading; all of them are stored."},
    207: {"model": IngestResult, "description": "Some lines are not readings: see errors."},
    400: {"model": IngestResult, "description": "No line is a reading; nothing is stored."},
    401: {"model": Problem, "description": "No token, or an unknown one."},
    403: {"model": Problem, "description": "The token lacks the ingest scope."},
    413: {"model": Problem, "description": "The body is larger than the limit."},
    415: {"model": Problem, "description": "An unknown Content-Encoding."},
    429: {"model": Problem, "description": "The pipeline is behind: retry after Retry-After."},
    503: {"model": Problem, "description": "The ingest log cannot be written."},
}
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "object"},
                        {"type": "array", "items": {"type": "object"}},
                    ]
                }
            },
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


def system_clock() -> datetime:
    """The time a request arrived: the machine's UTC clock."""
    return datetime.now(UTC)


def ingest_path(stream: str) -> str:
    """Where a stream's records are posted: ``/api/v1/readings``, or ``/api/v1/streams/NAME``."""
    return PATH if stream == "readings" else f"/api/v1/streams/{stream}"


def ingest_router(
    log: IngestLog,
    fmt: ReadingFormat,
    auth: Auth,
    *,
    path: str = PATH,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    clock: Callable[[], datetime] = system_clock,
    cache: DecodedCache | None = None,
) -> APIRouter:
    """The router of ``POST path`` (one stream's), appending to ``log``; see the module.

    ``cache`` receives what each accepted body decoded to, for the source reading ``log``
    to take rather than decode again (:mod:`~sensorstream.sources.ingest_cache`).
    """
    router = APIRouter(tags=["ingest"])

    @router.post(
        path,
        dependencies=[Depends(auth.require("ingest"))],  # 401/403 before the body is read
        response_model=IngestResult,
        responses=_RESPONSES,
        openapi_extra=_REQUEST_BODY,
        summary="Post readings: a JSON object, a JSON array of them, or NDJSON (gzip allowed)",
    )
    async def post_readings(request: Request) -> Response:
        arrived_at = clock()
        try:
            sent = await _body(request, max_request_bytes)
            raw = decompressed(sent, request.headers.get("content-encoding"), max_request_bytes)
            body = json_lines(raw, request.headers.get("content-type"))
        except BodyError as error:
            return _problem(error.status, error.message)
        if not count_lines(body):
            return _problem(400, "the body holds no readings: send JSON objects, one a line")
        try:
            log.check_room(len(body))  # before the work of decoding what cannot be kept
        except Backpressure as error:
            return _problem(429, str(error), _retry_after(error))
        except IngestLogError as error:
            return _problem(503, f"{error}; the readings were not stored: retry later")
        decoded = await run_in_threadpool(
            decode_json_lines, body, fmt, arrived_at=arrived_at, origin=ORIGIN
        )
        if decoded.payloads == 0:  # blank lines only
            return _problem(400, "the body holds no readings: send JSON objects, one a line")
        errors = _line_errors(decoded.dead_letters)
        accepted, rejected = decoded.readings.height, decoded.dead_letters.height
        if accepted == 0:
            detail = f"none of the {rejected} lines is a reading: nothing was stored"
            result = IngestResult(accepted=0, rejected=rejected, errors=errors, detail=detail)
            return JSONResponse(result.model_dump(exclude_none=True), status_code=400)
        try:
            lines = await run_in_threadpool(log.append, body, arrived_at)
        except Backpressure as error:
            return _problem(429, str(error), _retry_after(error))
        except IngestLogError as error:
            return _problem(503, f"{error}; the readings were not stored: retry later")
        if cache is not None:
            cache.put(lines.start, len(body), decoded)
        result = IngestResult(
            accepted=accepted, rejected=rejected, request=lines.start, errors=errors
        )
        status = 207 if rejected else 200
        return JSONResponse(result.model_dump(exclude_none=True), status_code=status)

    return router


async def _body(request: Request, limit: int) -> bytes:
    """The body as sent, refused (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        parts.append(chunk)
    return b"".join(parts)


def _too_large(size: int, limit: int) -> BodyError:
    return BodyError(
        413, f"the body is {size} bytes or more, over the limit of {limit}: send less at once"
    )


def _line_errors(dead_letters: pl.DataFrame) -> list[LineError]:
    """The first errors, in line order, each with the line number the decoder gave it."""
    rows = dead_letters.select("origin", "reason_code", "reason").rows()
    errors = []
    for origin, code, reason in rows:
        match = _LINE.match(origin)
        errors.append(
            LineError(line=int(match.group(1)) if match else 0, reason_code=code, reason=reason)
        )
    errors.sort(key=lambda error: error.line)
    return errors[:MAX_ERRORS]


def _retry_after(error: Backpressure) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(error.retry_after.total_seconds())))}


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)
