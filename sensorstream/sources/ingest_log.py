"""A durable, append-only log of ingested JSON lines on local disk: what an HTTP 2xx promises.

Each request's lines become one *record*, written and fsynced before the request is
answered, so an acknowledged reading survives ``kill -9`` and power loss; the pipeline then
reads the log at its own pace (:class:`~sensorstream.sources.http.HttpSource`). The folder
holds ``LOG_ID`` (a random id written once, so a checkpoint knows which log it was taken
of), ``LOCK`` (held by the one process that has the log open) and the segment files
(:mod:`~sensorstream.sources.ingest_records` describes them and reads them back).

**Sequence numbers** count lines, blank ones too, from 0 over the log's life: a record's
lines are ``first .. first + lines - 1``. They are the HTTP source's positions.

**Group commit**: appends write under one lock, then share fsyncs: one waiting thread syncs
everything written so far while the others wait, and the writes arriving meanwhile share the
next sync. **Readers see only synced records**, so a checkpointed position never names a
line a crash could still take back (and whose sequence numbers a later append would reuse).

**Torn tails**: on open, the last segment is scanned, and a record a crash cut short (a
partial write, a bad CRC) is truncated away. Its request never got its 2xx; nothing
acknowledged is lost. (Only the last segment can be torn: a segment is synced before the
next is started.)

**Bounded capacity**: the source reports how far the pipeline has checkpointed
(:meth:`IngestLog.compact`); whole segments before that point are deleted, and
:meth:`IngestLog.append` raises :class:`Backpressure` while the bytes after it would exceed
``max_unconsumed_bytes`` (the HTTP endpoint answers 429).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from sensorstream.sources.ingest_records import (
    HEADER_BYTES,
    SEGMENT_NAME,
    IngestLogError,
    LogReader,
    Point,
    Record,
    Scanned,
    Segment,
    count_lines,
    record_header,
    scan_segment,
    segment_name,
    tagged_body,
)
from sensorstream.sources.ingest_room import DEFAULT_RETRY_AFTER, Backpressure, Room

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, one process by trust
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_MAX_UNCONSUMED_BYTES",
    "DEFAULT_RETRY_AFTER",
    "DEFAULT_SEGMENT_BYTES",
    "HEADER_BYTES",
    "Backpressure",
    "IngestLog",
    "IngestLogError",
    "LogReader",
    "Record",
    "count_lines",
]

logger = logging.getLogger("sensorstream.ingest")

DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_UNCONSUMED_BYTES = 256 * 1024 * 1024
_sync = getattr(os, "fdatasync", os.fsync)


class IngestLog:
    r"""Appends request bodies durably and hands them to a reader in order; see the module.

    Args:
        folder: Where the segments live; created if missing.
        max_unconsumed_bytes: Room for records after the consumed point (:meth:`compact`);
            past it :meth:`append` raises :class:`Backpressure`.
        segment_bytes: A segment is closed and a new one started once it holds this much.
        monotonic: Seconds for the consumption rate behind ``retry_after`` (tests).

    >>> import tempfile
    >>> from datetime import UTC, datetime
    >>> with tempfile.TemporaryDirectory() as folder, IngestLog(folder) as log:
    ...     log.append(b'{"device_id": "a"}\n{"device_id": "b"}\n', datetime.now(UTC))
    range(0, 2)
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        max_unconsumed_bytes: int = DEFAULT_MAX_UNCONSUMED_BYTES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_unconsumed_bytes <= HEADER_BYTES or segment_bytes <= 0:
            msg = (
                f"max_unconsumed_bytes must be above {HEADER_BYTES} and segment_bytes above 0, "
                f"got {max_unconsumed_bytes} and {segment_bytes}"
            )
            raise IngestLogError(msg)
        self.folder = Path(folder)
        self.max_unconsumed_bytes = max_unconsumed_bytes
        self.segment_bytes = segment_bytes
        self.appends = 0  # records appended since open
        self.syncs = 0  # the fsyncs those appends shared
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified when more is synced
        self._syncing = False
        self._closed = False
        self._failure: OSError | None = None  # a failed fsync: the page cache cannot be trusted
        self._lock_fd: int | None = None
        try:
            self._open()
        except OSError as error:
            self._release()
            msg = f"cannot open the ingest log in {self.folder}: {_detail(error)}"
            raise IngestLogError(msg) from error
        except BaseException:
            self._release()
            raise

    # -- opening ----------------------------------------------------------------------------
    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.folder / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                msg = (
                    f"the ingest log in {self.folder} is open in another process: stop it, or "
                    "give this pipeline a source.log_dir of its own"
                )
                raise IngestLogError(msg) from None
        self.log_id = self._log_id()
        found = sorted(
            (int(match.group(1)), path)
            for path in self.folder.iterdir()
            if (match := SEGMENT_NAME.match(path.name))
        )
        if not found:
            found = [(0, self._create_segment(0))]
        self._segments = [Segment(first, path, path.stat().st_size) for first, path in found]
        last = self._segments[-1]
        scanned = self._recover(last)
        last.fd = os.open(last.path, os.O_WRONLY | os.O_APPEND)
        _sync(last.fd)  # what a killed process wrote stays: make it durable before reading it
        marks = [Point(s.first, 0, s.first) for s in self._segments[:-1]] + scanned.marks
        self._room = Room(self.max_unconsumed_bytes, marks, self._monotonic)
        self._written = self._synced = Point(last.first, scanned.size, scanned.end)

    def _log_id(self) -> str:
        path = self.folder / "LOG_ID"
        if path.exists():
            return path.read_text().strip()
        log_id = uuid.uuid4().hex
        staging = self.folder / ".LOG_ID.tmp"
        with staging.open("w") as file:
            file.write(log_id)
            file.flush()
            os.fsync(file.fileno())
        staging.replace(path)
        self._sync_folder()
        return log_id

    def _recover(self, segment: Segment) -> Scanned:
        """Scan the last segment and cut off a torn tail."""
        scanned = scan_segment(segment.path.read_bytes(), segment.first)
        if scanned.size < segment.size:
            logger.warning(
                "ingest log %s: cut %d bytes off the end of %s, a write a crash interrupted "
                "(its request was never acknowledged)",
                self.folder,
                segment.size - scanned.size,
                segment.path.name,
            )
            with segment.path.open("r+b") as file:
                file.truncate(scanned.size)
                os.fsync(file.fileno())
        segment.size = scanned.size
        return scanned

    def _create_segment(self, first: int) -> Path:
        path = self.folder / segment_name(first)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        self._sync_folder()
        return path

    def _sync_folder(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- what it holds ----------------------------------------------------------------------
    @property
    def first_sequence(self) -> int:
        """The sequence number of the first line still held (earlier ones were compacted)."""
        with self._lock:
            return self._segments[0].first

    @property
    def next_sequence(self) -> int:
        """The sequence number after the last synced line: where a reader catches up."""
        with self._lock:
            return self._synced.sequence

    @property
    def unconsumed_bytes(self) -> int:
        """Bytes held after the consumed point (up to 64 KiB too many, never too few)."""
        with self._lock:
            return self._unconsumed()

    def _unconsumed(self) -> int:
        return self._room.held(self._segments)

    # -- appending --------------------------------------------------------------------------
    def check_room(self, size: int) -> None:
        """Raise :class:`Backpressure` if a body of ``size`` bytes would not fit now."""
        with self._lock:
            self._check_usable()
            self._room.check(self._segments, HEADER_BYTES + size)

    def append(self, body: bytes, arrived_at: datetime) -> range:
        """Write ``body`` (JSON lines) as one record; return once it is on disk.

        Returns its lines' sequence numbers. Raises :class:`Backpressure` when the log is
        full of unconsumed records, :class:`IngestLogError` when it cannot be written (the
        record is then not in the log, or the log refuses everything from then on).
        """
        lines = count_lines(body)
        if lines == 0:
            msg = "an empty body holds no lines to append"
            raise IngestLogError(msg)
        return self._append([(body, lines, False)], arrived_at)

    def append_tagged(self, entries: Sequence[tuple[bytes, bytes]], arrived_at: datetime) -> range:
        """Write each ``(tag, body)`` as a tagged record of one line; return once all are on disk.

        One write and one sync for them all (the MQTT source's messages: a topic and a payload
        each, an empty payload a blank line). Returns their sequence numbers; raises as
        :meth:`append` does, for the whole group.
        """
        if not entries:
            return range(self.next_sequence, self.next_sequence)
        return self._append(
            [(tagged_body(tag, body), 1, True) for tag, body in entries], arrived_at
        )

    def _append(self, records: list[tuple[bytes, int, bool]], arrived_at: datetime) -> range:
        """Write records (stored body, lines, tagged) in one write, then wait for their sync."""
        size = sum(HEADER_BYTES + len(body) for body, _, _ in records)
        with self._lock:
            self._check_usable()
            self._room.check(self._segments, size)
            active = self._segments[-1]
            if active.size >= self.segment_bytes:
                active = self._rotate()
            first = end = self._written.sequence
            parts: list[bytes] = []
            for body, lines, tagged in records:
                parts += [record_header(end, lines, arrived_at, body, tagged=tagged), body]
                end += lines
            # One buffer past a few records: writev takes 1024 pieces at most.
            self._write(active, parts if len(parts) <= 2 else [b"".join(parts)])
            end = first
            for body, lines, _ in records:
                active.size += HEADER_BYTES + len(body)
                end += lines
                self._written = Point(active.first, active.size, end)
                self._room.appended(self._written)
            self.appends += len(records)
        self._wait_synced(end)
        return range(first, end)

    def _check_usable(self) -> None:
        if self._closed:
            msg = f"the ingest log in {self.folder} is closed"
            raise IngestLogError(msg)
        if self._failure is not None:
            msg = (
                f"the ingest log in {self.folder} failed to sync ({_detail(self._failure)}) and "
                "refuses appends until the pipeline is restarted"
            )
            raise IngestLogError(msg)

    def _write(self, segment: Segment, parts: Sequence[bytes]) -> None:
        """Write whole records (headers and bodies), or leave the segment as it was and raise."""
        assert segment.fd is not None  # the last segment is always open
        try:
            written = os.writev(segment.fd, parts)
            total = sum(len(part) for part in parts)
            rest = memoryview(b"".join(parts))[written:] if written < total else b""
            while rest:
                rest = rest[os.write(segment.fd, rest) :]
        except OSError as error:
            try:
                os.ftruncate(segment.fd, segment.size)
            except OSError:
                self._failure = error  # a part of a record stays: nothing after it is safe
            msg = f"cannot write the ingest log {segment.path}: {_detail(error)}"
            raise IngestLogError(msg) from error

    def _rotate(self) -> Segment:
        """Sync and close the last segment and start the next (the lock is held)."""
        old = self._segments[-1]
        with old.guard:
            assert old.fd is not None
            _sync(old.fd)
            os.close(old.fd)
            old.fd = None
        self._synced = self._written  # everything written lay in the old segment
        self._changed.notify_all()
        first = self._written.sequence
        new = Segment(first, self._create_segment(first), 0)
        new.fd = os.open(new.path, os.O_WRONLY | os.O_APPEND)
        self._segments.append(new)
        self._room.appended(Point(first, 0, first))
        return new

    def _wait_synced(self, end: int) -> None:
        """Return once the lines before ``end`` are synced, syncing them if no one else is."""
        while True:
            with self._changed:
                while self._synced.sequence < end and self._syncing:
                    self._changed.wait()
                if self._synced.sequence >= end:
                    return
                if self._failure is not None or self._closed:
                    self._check_usable()  # closing synced what it could: this it could not
                self._syncing = True
                segment, target = self._segments[-1], self._written
            try:
                with segment.guard:
                    if segment.fd is not None:  # else a rotation synced it, and closed it
                        _sync(segment.fd)
            except OSError as error:
                with self._changed:
                    self._failure = error
                    self._syncing = False
                    self._changed.notify_all()
                msg = f"cannot sync the ingest log {segment.path}: {_detail(error)}"
                raise IngestLogError(msg) from error
            with self._changed:
                self.syncs += 1
                if target.sequence > self._synced.sequence:
                    self._synced = target
                self._syncing = False
                self._changed.notify_all()

    # -- reading ----------------------------------------------------------------------------
    def reader(self, start: int | None = None) -> LogReader:
        """A reader of the synced records from sequence number ``start`` (None: the first held).

        Raises :class:`IngestLogError` if ``start`` lies before what the log still holds or
        after its end.
        """
        with self._lock:
            first, end = self._segments[0].first, self._synced.sequence
        begin = first if start is None else start
        if begin < first:
            msg = (
                f"the ingest log in {self.folder} starts at line {first}, after {begin}, where "
                "reading should resume: the lines between were deleted (does another pipeline "
                "share its log_dir?); run with --fresh to read what it holds"
            )
            raise IngestLogError(msg)
        if begin > end:
            msg = (
                f"the ingest log in {self.folder} ends at line {end}, before {begin}, where "
                "reading should resume: it lost lines it had synced; run with --fresh"
            )
            raise IngestLogError(msg)
        return LogReader(self, begin)

    def wait_for(self, position: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a synced line at or after ``position``."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._synced.sequence > position or self._closed, timeout
            )

    def readable(self, segment: Segment) -> tuple[int, Segment | None]:
        """Bytes of ``segment`` synced, and the segment to go on to once they are read.

        A segment before the one the last sync reached is complete (it was synced before
        the next was started), so a reader goes on to the next.
        """
        with self._lock:
            if segment.first < self._synced.segment:
                later = next((s for s in self._segments if s.first > segment.first), None)
                return segment.size, later
            if segment.first == self._synced.segment:
                return self._synced.offset, None
            return 0, None

    def segment_of(self, sequence: int) -> Segment:
        """The segment holding the line ``sequence`` (or, at the end, the last one)."""
        with self._lock:
            return next(s for s in reversed(self._segments) if s.first <= sequence)

    # -- consuming --------------------------------------------------------------------------
    def compact(self, upto: int) -> int:
        """The pipeline has checkpointed every line before ``upto``: free their room.

        Deletes the segments that lie wholly before it (never the last one) and returns how
        many. A segment that cannot be deleted is left for the next call.
        """
        with self._lock:
            before = self._unconsumed()
            doomed = [
                segment
                for segment, after in zip(self._segments, self._segments[1:], strict=False)
                if after.first <= upto
            ]
            deleted = 0
            for segment in doomed:
                try:
                    segment.path.unlink(missing_ok=True)
                except OSError as error:
                    logger.warning("ingest log: cannot delete %s: %s", segment.path, error)
                    break
                deleted += 1
            self._segments = self._segments[deleted:]
            self._room.consume(upto, self._segments, self._written, before)
        if deleted:
            with contextlib.suppress(OSError):
                self._sync_folder()
        return deleted

    # -- closing ----------------------------------------------------------------------------
    def close(self) -> None:
        """Sync what was written, then close the files and release the folder."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            active = self._segments[-1]
            with active.guard:
                if active.fd is not None:
                    if self._written.sequence > self._synced.sequence:
                        try:
                            _sync(active.fd)
                            self._synced = self._written
                        except OSError as error:
                            self._failure = error
                    os.close(active.fd)
                    active.fd = None
            self._changed.notify_all()
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing it releases the flock
            self._lock_fd = None

    def __enter__(self) -> IngestLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _detail(error: OSError) -> str:
    return error.strerror or str(error)
