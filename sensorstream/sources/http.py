"""Readings posted over HTTP: read back from the durable ingest log, in order, exactly once.

``POST /api/v1/readings`` (:mod:`~sensorstream.api.ingest`) appends each request's lines to
an :class:`~sensorstream.sources.ingest_log.IngestLog` and answers once they are on disk;
this source reads the log from where the last checkpoint left off. Its one partition's
position is a sequence number: the lines before it are consumed, so resuming after it reads
exactly the lines posted since. A batch holds the whole requests synced since the last
read (up to about ``batch_bytes`` of them): while the pipeline handles one batch the next
gathers, so batches grow with the load by themselves and no request waits for company;
each request's lines are decoded with the time it arrived, stored in the log, so a
replay judges every line as its first reading did (and as the HTTP answer said). Dead
letters name their request: ``line 3 of request 1200``, ``1200`` being the sequence number
of its first line, which the answer gave as ``request``.

The log lives in ``log_dir``, by default beside the checkpoints
(``.sensorstream/<pipeline>.ingest-log``; ``--fresh`` deletes the checkpoints, never the
log: what was acknowledged stays). When a checkpoint is saved, segments wholly before its
position are deleted; the log's room (``max_unconsumed_bytes``) counts what comes after it.

The endpoint itself is the pipeline's API's (:mod:`sensorstream.runtime.serving` mounts
:func:`~sensorstream.api.ingest.ingest_router` on this source's log): one server, one port,
one set of tokens (the pipeline's ``api:`` section) for ingest, queries and live events.
``serve: false`` leaves the endpoint out, to read a log that another process writes;
``follow: false`` reads what the log holds and ends, for replays and tests.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ByteSize, ConfigDict, Field, model_validator

from sensorstream.errors import ConfigError
from sensorstream.readings import Decoded, ReadingFormat, decode_json_lines, empty_dead_letters
from sensorstream.sources.base import Clock, SourceBatch
from sensorstream.sources.ingest_cache import DecodedCache
from sensorstream.sources.ingest_log import DEFAULT_MAX_UNCONSUMED_BYTES, HEADER_BYTES, Record
from sensorstream.sources.ingest_source import IngestLogSource

__all__ = ["HttpSource", "HttpSourceSettings"]

DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
# Requests' bytes per batch: big enough to decode efficiently, small enough for latency.
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024


class HttpSource(IngestLogSource):
    """Readings posted to ``POST /api/v1/readings``, read from the ingest log; see the module.

    Args:
        log_dir: The ingest log's folder; by default beside the checkpoints.
        max_request_bytes: The largest body, as sent and decompressed (413 past it).
        max_unconsumed_bytes: The log's room for lines not yet checkpointed (429 past it).
        serve: The pipeline's API takes posts for this stream; False reads a log that
            another process writes.
        follow: Wait for more posts when caught up (yielding None); False ends there.
        batch_bytes: About how many bytes of requests to decode into one batch.
    """

    name = "http"

    def __init__(
        self,
        *,
        log_dir: str | Path | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_unconsumed_bytes: int = DEFAULT_MAX_UNCONSUMED_BYTES,
        serve: bool = True,
        follow: bool = True,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        if max_request_bytes + HEADER_BYTES > max_unconsumed_bytes:
            msg = (
                f"max_request_bytes ({max_request_bytes}) must leave room in "
                f"max_unconsumed_bytes ({max_unconsumed_bytes}): a request as large as allowed "
                "could never be taken"
            )
            raise ConfigError(msg)
        super().__init__(
            log_dir=log_dir,
            max_unconsumed_bytes=max_unconsumed_bytes,
            follow=follow,
            batch_bytes=batch_bytes,
        )
        self.max_request_bytes = max_request_bytes
        self.serve = serve
        # What the pipeline's ingest endpoint decoded, so that a live read need not again.
        self.decoded = DecodedCache()

    def read(
        self, fmt: ReadingFormat, resume_after: Mapping[int, int], clock: Clock
    ) -> Generator[SourceBatch | None, None, None]:
        """Yield the posted requests' lines after sequence number ``resume_after[0]``."""
        return self.read_log(fmt, resume_after, clock)

    def decode(self, records: list[Record], fmt: ReadingFormat, start: int | None) -> SourceBatch:
        """Whole requests, each decoded with its own arrival time (or taken from the cache)."""
        batch = _batch(records, fmt, start, self.decoded)
        self.decoded.discard_before(batch.position)
        return batch


def _batch(
    records: list[Record], fmt: ReadingFormat, start: int | None, cache: DecodedCache
) -> SourceBatch:
    """One batch of whole requests, each decoded with its own arrival time and line numbers.

    A request the ingest endpoint decoded moments ago is taken from ``cache`` instead.
    """
    parts: list[Decoded] = []
    for record in records:
        if (start is None or record.first >= start) and (hit := cache.take(record.first)):
            parts.append(hit)
            continue
        body, first_line = record.body, 1
        if start is not None and record.first < start:  # resumed inside it: skip what was read
            skipped = start - record.first
            cut = -1
            for _ in range(skipped):
                cut = body.index(b"\n", cut + 1)
            body, first_line = body[cut + 1 :], skipped + 1
        parts.append(
            decode_json_lines(
                body,
                fmt,
                arrived_at=record.arrived_at,
                origin=f"request {record.first}",
                first_line=first_line,
            )
        )
    dead = [part.dead_letters for part in parts if part.dead_letters.height]
    return SourceBatch(
        partition=0,
        position=records[-1].end,
        readings=pl.concat([part.readings for part in parts]),
        dead_letters=pl.concat(dead) if dead else empty_dead_letters(),
        payloads=sum(part.payloads for part in parts),
        blank=sum(part.blank for part in parts),
        arrived_us=_micros(records[0].arrived_at),  # the oldest request: the batch's latency
    )


def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


class HttpSourceSettings(BaseModel):
    """An :class:`HttpSource` as written under ``source:`` in a pipeline YAML.

    >>> HttpSourceSettings(max_request_bytes="4MiB").max_request_bytes
    4194304
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["http"] = "http"
    log_dir: Path | None = None
    max_request_bytes: ByteSize = Field(default=ByteSize(DEFAULT_MAX_REQUEST_BYTES), gt=0)
    max_unconsumed_bytes: ByteSize = Field(default=ByteSize(DEFAULT_MAX_UNCONSUMED_BYTES), gt=0)
    serve: bool = True
    follow: bool = True
    batch_bytes: ByteSize = Field(default=ByteSize(DEFAULT_BATCH_BYTES), gt=0)

    @model_validator(mode="after")
    def _room_for_a_request(self) -> HttpSourceSettings:
        if self.max_request_bytes + HEADER_BYTES > self.max_unconsumed_bytes:
            msg = (
                f"max_request_bytes ({self.max_request_bytes}) must be below "
                f"max_unconsumed_bytes ({self.max_unconsumed_bytes}), less {HEADER_BYTES} bytes"
            )
            raise ValueError(msg)
        return self

    def build(self) -> HttpSource:
        """The source these settings describe; nothing is opened until the pipeline runs."""
        return HttpSource(
            log_dir=self.log_dir,
            max_request_bytes=int(self.max_request_bytes),
            max_unconsumed_bytes=int(self.max_unconsumed_bytes),
            serve=self.serve,
            follow=self.follow,
            batch_bytes=int(self.batch_bytes),
        )
