"""The ingest log's files: the record format, segments, a torn tail's scan, and reading back.

A segment ``segment-<sequence number of its first line, 20 digits>.log`` holds records back
to back. A record is a 36-byte little-endian header, then the body (the request's JSON
lines)::

    "SIL1" | body length u32 | first sequence number u64 | lines u32 | arrived at (us) i64
           | CRC32 of the body u32 | CRC32 of the 32 header bytes before it u32

A *tagged* record (magic ``"SIL2"``, same header) says where its body came from: its
stored body is the tag's length (u16), the tag, then the body; the body's CRC covers all
three. The MQTT source tags each message with its topic, one record per message, so that a
dead letter can name its topic and a device id can be read from it on every replay.

The header's own CRC tells a real header from the zeros or garbage a crash can leave at a
file's end; the body's CRC, a body cut short. :mod:`~sensorstream.sources.ingest_log`
writes them; :class:`LogReader` reads them back.
"""

from __future__ import annotations

import os
import re
import struct
import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from sensorstream.errors import SourceError

_HEADER = struct.Struct("<4sIQIqII")
_MAGIC = b"SIL1"
_TAGGED = b"SIL2"
_TAG_LENGTH = struct.Struct("<H")
MAX_TAG_BYTES = 0xFFFF
HEADER_BYTES = _HEADER.size
SEGMENT_NAME = re.compile(r"^segment-(\d{20})\.log$")
# How finely the log remembers where sequence numbers lie in its segments, to count the
# unconsumed bytes: the count errs by at most this much, on the safe side.
MARK_EVERY = 64 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class IngestLogError(SourceError):
    """The ingest log cannot be opened, read or written; the message says where and why."""


@dataclass(frozen=True)
class Record:
    """One appended body: its lines' sequence numbers, when it arrived, the lines, its tag."""

    first: int
    lines: int
    arrived_at: datetime
    body: bytes
    tag: bytes = b""  # where the body came from (an MQTT topic); empty when untagged

    @property
    def end(self) -> int:
        """The sequence number after its last line: the position to resume after it."""
        return self.first + self.lines


def count_lines(body: bytes) -> int:
    r"""Lines in a body as the decoder counts them: an unterminated last line counts too.

    >>> count_lines(b"a\n\nb"), count_lines(b"a\n"), count_lines(b"")
    (3, 1, 0)
    """
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def segment_name(first: int) -> str:
    """The file name of the segment whose first line has sequence number ``first``.

    >>> segment_name(1200)
    'segment-00000000000000001200.log'
    """
    return f"segment-{first:020d}.log"


def record_header(
    first: int, lines: int, arrived_at: datetime, body: bytes, *, tagged: bool = False
) -> bytes:
    """The header of a record holding ``body`` (as stored), its lines numbered from ``first``."""
    arrived_us = (arrived_at - _EPOCH) // timedelta(microseconds=1)
    magic = _TAGGED if tagged else _MAGIC
    head = _HEADER.pack(magic, len(body), first, lines, arrived_us, zlib.crc32(body), 0)
    return head[:-4] + struct.pack("<I", zlib.crc32(head[:-4]))


def tagged_body(tag: bytes, body: bytes) -> bytes:
    r"""A tagged record's body as stored: the tag's length, the tag, the body.

    >>> tagged_body(b"devices/d1", b"{}")
    b'\n\x00devices/d1{}'
    """
    if len(tag) > MAX_TAG_BYTES:
        msg = f"a record's tag is {len(tag)} bytes, over {MAX_TAG_BYTES}"
        raise IngestLogError(msg)
    return _TAG_LENGTH.pack(len(tag)) + tag + body


def parse_header(
    data: bytes | memoryview, offset: int
) -> tuple[int, int, int, int, int, bool] | None:
    """(body length, first sequence number, lines, arrived at in us, body CRC, tagged), or None."""
    if len(data) - offset < HEADER_BYTES:
        return None
    magic, length, first, lines, arrived_us, crc, header_crc = _HEADER.unpack_from(data, offset)
    if magic not in (_MAGIC, _TAGGED):
        return None
    if zlib.crc32(data[offset : offset + HEADER_BYTES - 4]) != header_crc:
        return None
    return length, first, lines, arrived_us, crc, magic == _TAGGED


@dataclass(frozen=True)
class Point:
    """A place in the log: a segment, a byte offset in it, and the line that starts there.

    The segment is named by its first line's sequence number.
    """

    segment: int
    offset: int
    sequence: int


@dataclass
class Segment:
    """One segment file, its size, and (the last segment only) the descriptor appends use."""

    first: int  # the sequence number of its first line
    path: Path
    size: int
    fd: int | None = None
    guard: threading.Lock = field(default_factory=threading.Lock)  # held while syncing fd


@dataclass(frozen=True)
class Scanned:
    """What a segment's scan found: the bytes of whole records, the next line, and marks."""

    size: int
    end: int
    marks: list[Point]


def scan_segment(data: bytes | memoryview, first: int) -> Scanned:
    """Walk a segment's records up to the first that is cut short or fails its CRC."""
    view = memoryview(data)
    offset, sequence = 0, first
    marks = [Point(first, 0, first)]
    while (header := parse_header(view, offset)) is not None:
        length, begins, lines, _, crc, _ = header
        end = offset + HEADER_BYTES + length
        if end > len(view) or begins != sequence:
            break
        if zlib.crc32(view[offset + HEADER_BYTES : end]) != crc:
            break
        offset, sequence = end, sequence + lines
        if offset - marks[-1].offset >= MARK_EVERY:
            marks.append(Point(first, offset, sequence))
    return Scanned(offset, sequence, marks)


class Readable(Protocol):
    """What a reader asks of its log: how far a segment's synced records reach."""

    def readable(self, segment: Segment) -> tuple[int, Segment | None]:
        """Bytes of ``segment`` synced, and the segment to go on to once they are read."""
        ...

    def segment_of(self, sequence: int) -> Segment:
        """The segment holding the line ``sequence`` (or, at the end, the last one)."""
        ...


class LogReader:
    """Reads a log's synced records in order, from a sequence number on.

    Records are whole: the first may begin before the start; its lines before it are the
    caller's to skip. Reads go straight to the file (``pread``), never through a buffer that
    could hold bytes of a record still being written.
    """

    def __init__(self, log: Readable, start: int) -> None:
        self.log = log
        self.position = start  # the next line to read
        self._segment = log.segment_of(start)
        self._fd = os.open(self._segment.path, os.O_RDONLY)
        self._offset = 0
        self._skip_to(start)

    def _skip_to(self, start: int) -> None:
        """Move past the records that end at or before ``start``."""
        limit, _ = self.log.readable(self._segment)
        sequence = self._segment.first
        while self._offset + HEADER_BYTES <= limit:
            length, _, lines, _, _, _ = self._header()
            if sequence + lines > start:
                return
            sequence += lines
            self._offset += HEADER_BYTES + length

    def read(self, max_bytes: int) -> list[Record]:
        """The next synced records, about ``max_bytes`` of bodies (at least one if any)."""
        records: list[Record] = []
        size = 0
        while size < max_bytes:
            limit, later = self.log.readable(self._segment)
            if self._offset + HEADER_BYTES > limit:
                if later is None:
                    break
                os.close(self._fd)
                self._segment, self._offset = later, 0
                self._fd = os.open(later.path, os.O_RDONLY)
                continue
            record = self._next()
            records.append(record)
            size += len(record.body)
            self.position = record.end
        return records

    def _header(self) -> tuple[int, int, int, int, int, bool]:
        header = parse_header(os.pread(self._fd, HEADER_BYTES, self._offset), 0)
        if header is None:
            raise self._corrupt(part="header")
        return header

    def _next(self) -> Record:
        length, first, lines, arrived_us, crc, tagged = self._header()
        body = os.pread(self._fd, length, self._offset + HEADER_BYTES)
        if len(body) != length or zlib.crc32(body) != crc:
            raise self._corrupt(part="body")
        self._offset += HEADER_BYTES + length
        arrived_at = _EPOCH + timedelta(microseconds=arrived_us)
        if not tagged:
            return Record(first, lines, arrived_at, body)
        (size,) = _TAG_LENGTH.unpack_from(body)
        end = _TAG_LENGTH.size + size
        return Record(first, lines, arrived_at, body[end:], body[_TAG_LENGTH.size : end])

    def _corrupt(self, *, part: str) -> IngestLogError:
        msg = (
            f"the ingest log record at byte {self._offset} of {self._segment.path} has a bad "
            f"{part} (its CRC does not match): the disk corrupted it; move the segment away to "
            "read past it"
        )
        return IngestLogError(msg)

    def close(self) -> None:
        """Close the segment file being read."""
        os.close(self._fd)
