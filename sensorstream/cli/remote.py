"""``sensorstream query`` through a running pipeline's API, when the pipeline holds the store.

DuckDB lets no other process open a store while a pipeline writes it; the pipeline's
server says where it listens in a file beside the store (:mod:`sensorstream.store.served`),
and the same question goes to it: SQL to ``POST /api/v1/sql`` (the ``admin`` scope, since
SQL reaches whatever the pipeline's connection can), results and the pipeline list to
their endpoints (``read``). Answers come as Arrow IPC streams, so the frame printed has
the types a local query would have. A token, when the API requires one, is taken from
``SENSORSTREAM_TOKEN``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

import httpx
import polars as pl

from sensorstream.errors import StoreError
from sensorstream.store.served import Served, served_at

TOKEN_ENV = "SENSORSTREAM_TOKEN"
ARROW = "application/vnd.apache.arrow.stream"
TIMEOUT_S = 60.0


def served_query(
    db: Path,
    *,
    sql: str | None,
    pipeline: str | None,
    step: str | None,
    limit: int,
    environ: Mapping[str, str] | None = None,
) -> pl.DataFrame | None:
    """The answer from the API serving ``db``, or None if no running pipeline serves it."""
    served = served_at(db)
    if served is None:
        return None
    environ = os.environ if environ is None else environ
    headers = {"Accept": ARROW}
    if token := environ.get(TOKEN_ENV):
        headers["Authorization"] = f"Bearer {token}"
    if sql is not None:
        return _ask(served, "POST", "/api/v1/sql", headers, json={"sql": sql, "limit": limit})
    if pipeline is None:
        return _ask(served, "GET", "/api/v1/pipelines", headers).head(limit)
    if pipeline != served.pipeline:
        msg = (
            f"{db} is held by pipeline {served.pipeline!r}, whose API answers for it alone: "
            f"ask for {pipeline!r}'s results in SQL, or once that pipeline has stopped"
        )
        raise StoreError(msg)
    path = "/api/v1/results" + (f"/{quote(step, safe='')}" if step is not None else "")
    return _ask(served, "GET", path, headers, params={"limit": limit})


def _ask(
    served: Served,
    method: str,
    path: str,
    headers: dict[str, str],
    *,
    json: dict[str, object] | None = None,
    params: dict[str, int] | None = None,
) -> pl.DataFrame:
    try:
        answer = httpx.request(
            method, served.url + path, headers=headers, timeout=TIMEOUT_S, json=json, params=params
        )
    except httpx.HTTPError as error:
        msg = (
            f"the store is held by pipeline {served.pipeline!r} (process {served.pid}), whose "
            f"API at {served.url} does not answer: {error}"
        )
        raise StoreError(msg) from error
    if answer.status_code != 200:
        msg = f"pipeline {served.pipeline!r}'s API: {_detail(answer)}"
        raise StoreError(msg)
    return pl.read_ipc_stream(io.BytesIO(answer.content))


def _detail(answer: httpx.Response) -> str:
    try:
        detail = answer.json().get("detail")
    except ValueError:
        detail = None
    if answer.status_code in (401, 403):
        hint = f"; set {TOKEN_ENV} to a token with the scope it needs"
        return f"{detail or answer.reason_phrase} ({answer.status_code}){hint}"
    return f"{detail or answer.text[:200]} ({answer.status_code})"
