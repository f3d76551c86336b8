"""What the sources that read an ingest log share: where it lives, resuming it, freeing it.

The HTTP source (requests appended by the API) and the MQTT source (messages appended by
its own writer) both turn what arrives into records of a durable
:class:`~sensorstream.sources.ingest_log.IngestLog` first, then read that log at the
pipeline's pace. This base holds everything that does not depend on what the records are:

- the log's folder, by default beside the checkpoints, named after the stream
  (``.sensorstream/<pipeline>.ingest-log``, ``<pipeline>.<stream>.ingest-log``); ``--fresh``
  deletes the checkpoints, never the log: what was acknowledged stays;
- the read loop: from the checkpointed sequence number, about ``batch_bytes`` of records a
  batch, ``None`` when caught up (after waiting :data:`IDLE_WAIT_S` for more), or the end
  when ``follow`` is off;
- the identity a checkpoint records (the log's id and length), and the check that a
  resumed checkpoint was taken of this log;
- freeing the log's room once a checkpoint is saved.

A subclass turns records into a :class:`~sensorstream.sources.base.SourceBatch`
(:meth:`IngestLogSource.decode`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

from sensorstream.errors import ConfigError
from sensorstream.readings import ReadingFormat
from sensorstream.readings.scanner import preload, supports
from sensorstream.sources.base import Clock, Identity, InputChange, Source, SourceBatch
from sensorstream.sources.ingest_log import IngestLog, Record

# How long a caught-up read waits for a record before it yields None, so the runner can tick
# (idle watermarks, checkpoints) and see a stop.
IDLE_WAIT_S = 0.1


def default_log_dir(checkpoints: Path, stream: str) -> Path:
    """Where a stream's ingest log lives when the settings do not say: beside the checkpoints.

    >>> default_log_dir(Path(".sensorstream/weather"), "readings").name
    'weather.ingest-log'
    >>> default_log_dir(Path(".sensorstream/weather"), "devices").name
    'weather.devices.ingest-log'
    """
    suffix = "ingest-log" if stream == "readings" else f"{stream}.ingest-log"
    return checkpoints.parent / f"{checkpoints.name}.{suffix}"


class IngestLogSource(Source):
    """A source reading an ingest log from the checkpointed sequence number; see the module.

    Args:
        log_dir: The ingest log's folder; by default beside the checkpoints.
        max_unconsumed_bytes: The log's room for records not yet checkpointed.
        follow: Wait for more records when caught up (yielding None); False ends there.
        batch_bytes: About how many bytes of records to decode into one batch.
    """

    def __init__(
        self,
        *,
        log_dir: str | Path | None,
        max_unconsumed_bytes: int,
        follow: bool,
        batch_bytes: int,
    ) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.max_unconsumed_bytes = max_unconsumed_bytes
        self.follow = follow
        self.batch_bytes = batch_bytes
        self._log: IngestLog | None = None

    @abstractmethod
    def decode(self, records: list[Record], fmt: ReadingFormat, start: int | None) -> SourceBatch:
        """One batch of ``records``, read after sequence number ``start`` (None: from the first)."""

    def check(self) -> None:
        """Raise if what feeds the log has failed; called between reads. Nothing by default."""

    # -- the source contract ----------------------------------------------------------------
    def use_checkpoint_dir(self, folder: Path, stream: str) -> None:
        """Keep the log beside the checkpoints unless ``log_dir`` says where."""
        if self.log_dir is None:
            self.log_dir = default_log_dir(folder, stream)

    def prepare(self, fmt: ReadingFormat) -> None:
        """Open the log (cutting off a torn tail) and load the NDJSON scanner."""
        if supports(fmt):
            preload()
        self.log()

    def log(self) -> IngestLog:
        """The ingest log, opened on first use."""
        if self._log is None:
            if self.log_dir is None:
                msg = (
                    f"the {self.name} source needs a folder for its ingest log: set "
                    "source.log_dir (a pipeline run puts it beside the checkpoints by default)"
                )
                raise ConfigError(msg)
            self._log = IngestLog(self.log_dir, max_unconsumed_bytes=self.max_unconsumed_bytes)
        return self._log

    def identity(self) -> Identity:
        """The log's id, and how many lines it had received: a checkpoint's log must match."""
        log = self.log()
        return {"log_id": log.log_id, "next_sequence": log.next_sequence}

    def compare(self, recorded: Mapping[str, Any]) -> InputChange | None:
        """Another log (or one that lost lines) is a change; one that grew is expected."""
        log = self.log()
        if recorded.get("log_id") != log.log_id:
            return InputChange(
                f"the ingest log in {log.folder} is not the one the checkpoint was taken of "
                "(it was created anew, or log_dir points elsewhere)"
            )
        before, now = int(recorded.get("next_sequence", 0)), log.next_sequence
        if now < before:
            return InputChange(
                f"the ingest log in {log.folder} holds {now} lines, fewer than the {before} "
                "it held at the checkpoint"
            )
        if now > before:
            return InputChange(f"the ingest log in {log.folder} grew", grown=True)
        return None

    def checkpointed(self, positions: Mapping[int, int]) -> None:
        """Free the log's room up to the checkpointed position."""
        if 0 in positions:
            self.log().compact(positions[0])

    def read_log(
        self, fmt: ReadingFormat, resume_after: Mapping[int, int], clock: Clock
    ) -> Generator[SourceBatch | None, None, None]:
        """Yield the log's records after sequence number ``resume_after[0]``, batch by batch."""
        del clock  # a record's arrival time is kept in the log
        log = self.log()
        start = resume_after.get(0)
        reader = log.reader(start)
        try:
            while True:
                self.check()
                records = reader.read(self.batch_bytes)
                if records:
                    yield self.decode(records, fmt, start)
                    continue
                if not self.follow:
                    return
                if not log.wait_for(reader.position, IDLE_WAIT_S):
                    yield None
        finally:
            reader.close()

    def close(self) -> None:
        """Close the log."""
        if self._log is not None:
            self._log.close()
            self._log = None
