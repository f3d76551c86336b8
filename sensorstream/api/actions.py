"""Acting on alerts over HTTP: acknowledge one, silence notifications, end a silence.

The same :class:`~sensorstream.actions.alert_actions.AlertActions` as ``sensorstream
alerts ack/silence/unsilence/silences``: the SQLite file beside the store, writable while
the pipeline runs, whose sinks heed a new silence at once. Writing needs the ``admin``
scope (``admin``, the dependency giving the caller's
:class:`~sensorstream.api.auth.Grant`); listing silences the ``read`` scope. ``by``
defaults to the name of the caller's token, or ``api`` for a loopback client without one.

Answers: the acknowledgement or silence made or ended, as a JSON object (times ISO 8601
with a zone, written as the read endpoints write theirs); **404** for an unknown alert or
silence, **409** for a silence already ended, **422** for a body that does not validate
(the message says which field and why), **503** when another process kept the file locked
(try again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Self, TypeVar

import polars as pl
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from sensorstream.actions.alert_actions import MAX_NAME, MAX_NOTE, Acknowledgement
from sensorstream.actions.silences import KeyValue
from sensorstream.api.auth import LOOPBACK, Grant, Requirement
from sensorstream.api.queries import ActionsOpener, StoreOpener, one_row, rows, unknown_alert
from sensorstream.durations import DURATION_PATTERN, parse_positive_duration
from sensorstream.errors import ConfigError, StoreError
from sensorstream.store.alert_history import silences_frame

Admin = Requirement
Who = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME),
    Field(description="who acts (default: the token's name, or api)"),
]
Note = Annotated[str, Field(max_length=MAX_NOTE, description="why, or what was done")]
SilenceId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the silence's id")]
_MOMENT = pl.Datetime("us", "UTC")
T = TypeVar("T")


class AcknowledgementBody(BaseModel):
    """``POST /api/v1/alerts/{alert_id}/ack``: who saw the alert, and what they noted."""

    model_config = ConfigDict(extra="forbid")

    note: Note = ""
    by: Who | None = None


class SilenceBody(BaseModel):
    """``POST /api/v1/silences``: what to mute (a rule, key values or both), until when."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    rule: str | None = Field(None, description="mute this rule's alerts")
    key: dict[str, KeyValue] | None = Field(
        None,
        description="mute alerts whose key has all of these values",
        examples=[{"device_id": "s1"}],
    )
    pipeline: str | None = Field(
        None, description="only this pipeline's alerts (default: any pipeline of the store)"
    )
    for_: str | None = Field(
        None,
        alias="for",
        description="for how long, e.g. 30m, 2h",
        examples=["2h"],
        json_schema_extra={"pattern": DURATION_PATTERN},  # checked by the validator below
    )
    until: AwareDatetime | None = Field(
        None, description="until when (ISO 8601 with a zone)", examples=["2030-01-31T18:00:00Z"]
    )
    note: Note = ""
    by: Who | None = None

    @field_validator("for_")
    @classmethod
    def _a_positive_duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_positive_duration("for", value)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        return value

    @model_validator(mode="after")
    def _what_and_until_when(self) -> Self:
        if (self.for_ is None) == (self.until is None):
            msg = 'give either for (e.g. "2h") or until (e.g. "2030-01-31T18:00:00Z")'
            raise ValueError(msg)
        if self.rule is None and not self.key:
            msg = "name what to mute: rule, key or both (muting every alert is not offered)"
            raise ValueError(msg)
        return self

    def ends(self, now: datetime) -> datetime:
        """When the silence ends: ``until``, or ``for`` from ``now``."""
        if self.until is not None:
            return self.until
        try:
            return now + parse_positive_duration("for", self.for_ or "")
        except OverflowError:
            msg = f"for {self.for_}: that ends after the year 9999"
            raise ConfigError(msg) from None


class SilenceAnswer(BaseModel):
    """A silence, as ``GET /api/v1/silences`` lists it."""

    id: int
    pipeline: str | None
    rule: str | None
    key: str | None = Field(description="the key values, as JSON text")
    until: datetime = Field(description="when it ends (or ended)")
    active: bool
    by: str
    note: str
    created_at: datetime
    ended_by: str | None


def actions_router(
    actions: ActionsOpener,
    open_store: StoreOpener,
    pipeline: str,
    *,
    read: Sequence[Any] = (),
    admin: Admin | None = None,
) -> APIRouter:
    """Acknowledgements and silences of ``pipeline``'s alerts.

    ``read`` guards the listing of silences; ``admin`` (e.g. ``auth.require("admin")``)
    guards the writes and says who calls. Without ``admin`` only the listing is served.
    """
    router = APIRouter(prefix="/api/v1", tags=["actions"])

    @router.get(
        "/silences",
        summary="The silences in effect (or all of them, ended too)",
        dependencies=list(read),
        responses={200: {"model": list[SilenceAnswer]}},
    )
    def silences(
        all: Annotated[bool, Query(description="ended silences too")] = False,
    ) -> Response:
        listed = _acting(lambda: actions().silences(include_ended=all))
        return rows(silences_frame(listed, _now()))

    if admin is None:
        return router
    # The caller as a default value: an annotation naming a local alias would not resolve.
    caller_of = Depends(admin)

    @router.post(
        "/alerts/{alert_id}/ack",
        summary="Acknowledge an alert: who saw it (its state stays as it is)",
        status_code=201,
        response_model=Acknowledgement,  # the recorded one, as the actions file keeps it
        responses={404: {"description": "no alert of this id in this pipeline's store"}},
    )
    def acknowledge(
        alert_id: str, body: AcknowledgementBody, caller: Grant = caller_of
    ) -> Response:
        try:
            with open_store() as opened:
                known = pipeline in opened.pipelines_of_alert(alert_id)
        except StoreError as error:
            raise HTTPException(400, str(error)) from None
        if not known:
            raise HTTPException(404, unknown_alert(alert_id, pipeline))
        by = body.by or _name_of(caller)
        done = _acting(
            lambda: actions().acknowledge(alert_id, by=by, note=body.note, pipeline=pipeline)
        )
        return one_row(_acknowledgement_frame(done), 201)

    @router.post(
        "/silences",
        summary="Mute notifications of a rule's or a key's alerts for a while",
        status_code=201,
        response_model=SilenceAnswer,
    )
    def silence(body: SilenceBody, caller: Grant = caller_of) -> Response:
        now = _now()
        try:
            until = body.ends(now)
        except ConfigError as error:
            raise HTTPException(422, str(error)) from None
        made = _acting(
            lambda: actions().silence(
                until=until,
                by=body.by or _name_of(caller),
                rule=body.rule,
                key=body.key,
                pipeline=body.pipeline,
                note=body.note,
            )
        )
        return one_row(silences_frame([made], made.created_at), 201)  # active since made

    @router.delete(
        "/silences/{silence_id}",
        summary="End a silence now; notifications of its alerts go out again",
        response_model=SilenceAnswer,
        responses={
            404: {"description": "no silence of this id"},
            409: {"description": "the silence has already ended"},
        },
    )
    def unsilence(
        silence_id: SilenceId,
        caller: Grant = caller_of,
        by: Annotated[
            str | None,
            Query(min_length=1, max_length=MAX_NAME, description="who ends it (default: caller)"),
        ] = None,
    ) -> Response:
        who = (by or "").strip() or _name_of(caller)
        ended = _acting(lambda: actions().unsilence(silence_id, by=who))
        return one_row(silences_frame([ended], _now()))

    return router


def _acting(act: Callable[[], T]) -> T:
    """Do one thing with the actions file; its refusals as HTTP answers."""
    try:
        return act()
    except StoreError as error:
        message = str(error)
        if message.startswith("no silence "):
            status = 404
        elif "already ended" in message:
            status = 409
        elif "kept the file locked" in message:
            status = 503
        else:
            status = 400
        raise HTTPException(status, message) from None


def _name_of(caller: Grant) -> str:
    """Who acts when the body does not say: the token's name, or ``api``."""
    return "api" if caller.who == LOOPBACK else caller.who


def _acknowledgement_frame(done: Acknowledgement) -> pl.DataFrame:
    schema = {
        "id": pl.Int64(),
        "alert_id": pl.String(),
        "pipeline": pl.String(),
        "by": pl.String(),
        "note": pl.String(),
        "at": _MOMENT,
    }
    row = (done.id, done.alert_id, done.pipeline, done.by, done.note, done.at)
    return pl.DataFrame([row], schema=schema, orient="row")


def _now() -> datetime:
    return datetime.now(UTC)
