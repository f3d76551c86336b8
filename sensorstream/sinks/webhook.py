"""The webhook sink: each alert transition POSTed as JSON, at least once, never in the way.

::

    sinks:
      - type: webhook
        url: https://alerts.example.com/hooks/sensorstream
        timeout: 5s                # per request
        retries: null              # transient failures: sent again until delivered, or a number
        backoff: 500ms             # the first wait before sending again; doubling, jittered
        max_backoff: 5m
        headers: {X-Team: cold-chain}
        token_env: ALERT_HOOK_TOKEN  # sent as "Authorization: Bearer <its value>"
        states: [firing, resolved, flapping, correction]  # the default: all but pending
        outbox: .sensorstream/weather.webhook.sqlite      # default: beside the checkpoints
        store: weather.duckdb      # whose silences apply; default: the pipeline's duckdb sink
        drain: 5s                  # how long closing keeps sending

Each transition is one POST of one JSON object, with header ``Idempotency-Key`` set to its
``transition_id`` (deterministic: a transition sent again, after a retry or a crash, has the
same key, so the receiver can drop repeats), for example:

    {"pipeline": "weather", "transition_id": "0a92485606a17c9d8239893e-1",
     "alert_id": "0a92485606a17c9d8239893e", "rule": "hot", "key": {"device_id": "a"},
     "state": "firing", "previous_state": "pending", "severity": "critical",
     "event_time": "2024-01-01T00:01:00+00:00", "started_at": "2024-01-01T00:00:00+00:00",
     "value": 31.5, "reason": "temperature 31.5 above 30", "sequence": 1,
     "kind": "transition"}

How it keeps out of the pipeline's way and loses nothing: :meth:`WebhookSink.write` only
queues the batch's transitions in the outbox (:mod:`~sensorstream.sinks.webhook_outbox`, a
local SQLite file) and wakes the delivery thread (:mod:`~sensorstream.sinks.webhook_delivery`),
which sends, retries and records; a dead or slow endpoint slows that thread alone.
:meth:`~WebhookSink.flush` (before each checkpoint) syncs the outbox, so a checkpointed
transition is never lost; after a crash the outbox resumes, and a replayed transition,
having the same id, is not queued again. :meth:`~WebhookSink.close` keeps sending for
``drain`` at most and leaves the rest queued for the next run.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sensorstream.actions.actions_file import actions_path
from sensorstream.actions.alert_actions import AlertActions
from sensorstream.durations import Duration
from sensorstream.engine.outputs import TRANSITION_SCHEMA
from sensorstream.errors import ConfigError, SinkError, StoreError
from sensorstream.sinks.base import PipelineInfo, Sink, SinkBatch
from sensorstream.sinks.webhook_delivery import DeliveryThread, Poster, RetryPolicy, origin
from sensorstream.sinks.webhook_outbox import Outbox, Queued, default_outbox

State = Literal["pending", "firing", "resolved", "flapping", "correction"]
DEFAULT_STATES: tuple[State, ...] = ("firing", "resolved", "flapping", "correction")
# Headers the sink sets itself; a user's value would break delivery or its guarantees.
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "idempotency-key"})
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def transition_body(pipeline: str, transition: Mapping[str, Any]) -> bytes:
    """The JSON a webhook receives for one transition: its fields, times in ISO 8601.

    >>> from datetime import UTC, datetime
    >>> transition_body(
    ...     "weather",
    ...     {
    ...         "transition_id": "a1-0",
    ...         "key": '{"room": "r1"}',
    ...         "event_time": datetime(2024, 1, 1, tzinfo=UTC),
    ...     },
    ... )[:80]
    b'{"pipeline":"weather","transition_id":"a1-0","alert_id":null,"rule":null,"key":{'
    """
    body: dict[str, Any] = {"pipeline": pipeline}
    for name in TRANSITION_SCHEMA:
        value = transition.get(name)
        if name == "key" and isinstance(value, str):
            value = orjson.loads(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        body[name] = value
    return orjson.dumps(body)


class WebhookSink(Sink):
    """POSTs alert transitions to ``url`` from a background thread, through a durable outbox.

    Results, readings and dead letters are not its business: it sends transitions only,
    those whose state is in ``states``. ``token`` is sent as a bearer token.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: timedelta = timedelta(seconds=5),
        retries: int | None = None,
        backoff: timedelta = timedelta(milliseconds=500),
        max_backoff: timedelta = timedelta(minutes=5),
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        states: Sequence[State] = DEFAULT_STATES,
        outbox: Path | None = None,
        store: Path | None = None,
        drain: timedelta = timedelta(seconds=5),
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.policy = RetryPolicy(retries, backoff, max_backoff)
        self.headers = dict(headers or {})
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self.states = tuple(states)
        self.drain = drain
        self.outbox_path = outbox  # settled by open(): given, or beside the checkpoints
        self.silences: Path | None = None  # the actions file whose silences apply
        self._store = store
        self._pipeline = ""
        self._outbox: Outbox | None = None
        self._thread: DeliveryThread | None = None

    # -- the sink contract -----------------------------------------------------------------
    def open(self, pipeline: PipelineInfo) -> None:
        """Open the outbox (resuming what it holds) and find the silences that apply."""
        self._pipeline = pipeline.name
        checkpoints = pipeline.checkpoint_dir or Path(".sensorstream") / pipeline.name
        if self.outbox_path is None:
            self.outbox_path = default_outbox(checkpoints, self.url)
        store = self._store or (pipeline.stores[0] if pipeline.stores else None)
        self._outbox = Outbox(self.outbox_path, pipeline.name)
        if store is None:
            return
        self.silences = actions_path(store)
        try:
            # So that `sensorstream alerts show` finds this sink's deliveries.
            AlertActions(self.silences).register_outbox(
                pipeline.name, self.outbox_path, origin(self.url)
            )
        except StoreError as error:
            self._outbox.close()
            self._outbox = None
            msg = f"webhook sink of pipeline {pipeline.name!r}: {error}"
            raise SinkError(msg) from error

    def restore(self, positions: Mapping[int, int]) -> None:
        """Drop transitions still queued for later positions (the replay queues them again)."""
        self._require_open().restore(positions)
        self._start()

    def write(self, batch: SinkBatch) -> None:
        """Queue the batch's transitions (of the chosen states) and wake the delivery thread."""
        outbox = self._require_open()
        rows: list[Queued] = []
        for transitions in batch.alerts.values():
            if transitions.height == 0:
                continue
            chosen = transitions.filter(pl.col("state").is_in(self.states))
            for row in chosen.sort("event_time", "sequence").iter_rows(named=True):
                rows.append(
                    Queued(
                        transition_id=row["transition_id"],
                        alert_id=row["alert_id"],
                        rule=row["rule"],
                        key=row["key"],
                        state=row["state"],
                        partition=batch.partition,
                        position=batch.position,
                        payload=transition_body(self._pipeline, row),
                    )
                )
        if rows and outbox.enqueue(rows, round(time.time() * 1_000_000)):
            self._start().wake()

    def flush(self) -> None:
        """Sync the outbox to disk; fails if the delivery thread stopped on an error."""
        if self._outbox is None:
            return
        self._outbox.flush()
        if self._thread is not None and self._thread.failure is not None:
            msg = (
                f"the webhook delivery thread of pipeline {self._pipeline!r} stopped: "
                f"{self._thread.failure}; the transitions stay queued in {self.outbox_path}"
            )
            raise SinkError(msg)

    def close(self) -> None:
        """Sync the outbox, keep sending for ``drain`` at most, then leave the rest queued."""
        if self._outbox is None:
            return
        try:
            self._outbox.flush()
        finally:
            if self._thread is not None:
                self._thread.stop(self.drain.total_seconds())
                self._thread = None
            self._outbox.close()
            self._outbox = None

    # -- what it holds -----------------------------------------------------------------------
    def waiting(self) -> int:
        """How many transitions are queued, not yet delivered (nor failed, nor silenced)."""
        return self._require_open().waiting()

    # -- plumbing --------------------------------------------------------------------------
    def _start(self) -> DeliveryThread:
        if self._thread is None:
            outbox = self._require_open()
            poster = Poster(self.url, timeout_s=self.timeout.total_seconds(), headers=self.headers)
            self._thread = DeliveryThread(
                outbox.path, self._pipeline, poster, self.policy, silences=self.silences
            )
            self._thread.start()
        return self._thread

    def _require_open(self) -> Outbox:
        if self._outbox is None:
            msg = f"the webhook sink for {origin(self.url)} is not open; call open() first"
            raise SinkError(msg)
        return self._outbox


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebhookSinkSettings(BaseModel):
    """``sink: {type: webhook, url: ..., ...}`` in a pipeline's YAML (see the module)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["webhook"] = "webhook"
    url: str
    timeout: Duration = Field(default="5s", validate_default=True)
    retries: int | None = Field(default=None, ge=0)
    backoff: Duration = Field(default="500ms", validate_default=True)
    max_backoff: Duration = Field(default="5m", validate_default=True)
    headers: dict[str, str] = {}
    token_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    states: list[State] = Field(default=list(DEFAULT_STATES), min_length=1)
    outbox: Path | None = None
    store: Path | None = None
    drain: Duration = Field(default="5s", validate_default=True)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = f"{url!r} is not an http:// or https:// URL with a host"
            raise ValueError(msg)
        if parts.username is not None or parts.password is not None:
            msg = "put credentials in token_env or headers, not in the URL"
            raise ValueError(msg)
        try:
            _ = parts.port
        except ValueError:
            msg = f"{url!r} has an invalid port"
            raise ValueError(msg) from None
        return url

    @field_validator("headers")
    @classmethod
    def _plain_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                msg = f"header name {name!r} is not a valid HTTP header name"
                raise ValueError(msg)
            if name.lower() in RESERVED_HEADERS:
                msg = f"header {name} is set by the sink itself; leave it out"
                raise ValueError(msg)
            if any(char in value for char in "\r\n\0"):
                msg = f"header {name}'s value holds a line break or NUL"
                raise ValueError(msg)
        return headers

    @model_validator(mode="after")
    def _consistent(self) -> WebhookSinkSettings:
        if self.timeout <= timedelta(0) or self.backoff <= timedelta(0):
            msg = "timeout and backoff must be positive"
            raise ValueError(msg)
        if self.max_backoff < self.backoff:
            msg = "max_backoff must be at least backoff"
            raise ValueError(msg)
        if self.drain < timedelta(0):
            msg = "drain must not be negative"
            raise ValueError(msg)
        if len(set(self.states)) != len(self.states):
            msg = "states lists a state twice"
            raise ValueError(msg)
        parts = urlsplit(self.url)
        if self.token_env is not None:
            if any(name.lower() == "authorization" for name in self.headers):
                msg = "give the token as token_env or as an Authorization header, not both"
                raise ValueError(msg)
            if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
                msg = (
                    "token_env over plain http to a host other than this one would send the "
                    "token in clear; use an https:// URL"
                )
                raise ValueError(msg)
        return self

    def build(self) -> WebhookSink:
        """The sink these settings describe; the token is read from the environment now."""
        token = None
        if self.token_env is not None:
            token = os.environ.get(self.token_env)
            if not token:
                msg = (
                    f"webhook sink: environment variable {self.token_env} (token_env) is not "
                    "set; export it, or remove token_env"
                )
                raise ConfigError(msg)
        return WebhookSink(
            self.url,
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
            max_backoff=self.max_backoff,
            headers=self.headers,
            token=token,
            states=self.states,
            outbox=self.outbox,
            store=self.store,
            drain=self.drain,
        )
