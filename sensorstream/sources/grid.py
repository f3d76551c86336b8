"""Cutting a byte stream into chunks of whole records on a fixed grid, in bounded memory.

A chunk starting at offset ``p`` ends at the first record end at or after byte ``g - 1``,
where ``g`` is the next multiple of ``chunk_bytes`` above ``p``. The cut depends only on ``p``
and the data, so a read resumed at any chunk end cuts exactly the chunks an uninterrupted
read cuts after it, and float sums are added in the same order: results after a crash are
identical to the bit.

A record ends at a newline; which newlines end records is a :class:`RecordSplitter`'s rule:
every one for NDJSON (:data:`LINES`), CSV's in :mod:`~sensorstream.sources.csv_split`. A rule
tells each record's end from the bytes up to ``max_record_bytes + 1`` past its start, so a
chunk's records are the same whichever record start a read began at.

When the record that straddles ``g - 1`` runs on past ``g + max_record_bytes``, it is never
held whole: it is one line (no rule joins lines into a record that long), and the reader
streams through the rest of it to its newline, hashing it, and hands it on as a
:class:`~sensorstream.readings.Truncated` (its first bytes, its length, its SHA-256) after
the chunk's other records. So memory stays about ``chunk_bytes + max_record_bytes``.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensorstream.readings import Truncated
from sensorstream.sources.streams import InputStream, TruncatedInput

Indexes = npt.NDArray[np.intp]

NEWLINE = 10
# Bytes read at a time while streaming past a long record or counting lines before a
# resume offset: large reads, no work per record in Python.
BLOCK = 1024 * 1024
# How far past a grid point a chunk's records are split first: the record there mostly ends
# well before, and the ``max_record_bytes`` after the grid point are split only if not.
_NEAR = 64 * 1024


@dataclass
class Piece:
    """Whole records from offset ``start`` to ``end``, the last maybe too long to hold.

    ``data`` holds the records, ``ends`` the indexes of their record-ending newlines;
    ``oversized``, if any, is the record after them (ending at ``end``), streamed past.
    ``stored_consumed`` is how much of the stored file was consumed (compressed bytes, when
    they differ from ``end``), for progress.
    """

    data: bytes
    start: int
    end: int
    ends: Indexes
    oversized: Truncated | None = None
    stored_consumed: int | None = None


def grid_point(offset: int, chunk_bytes: int) -> int:
    """The grid point a chunk starting at ``offset`` reaches: the next multiple above it.

    >>> grid_point(0, 100), grid_point(99, 100), grid_point(100, 100)
    (100, 100, 200)
    """
    return (offset // chunk_bytes + 1) * chunk_bytes


class RecordSplitter(ABC):
    """Where the records of a byte stream end: at newlines, but which ones is the format's rule.

    A rule must be told from a record start by the bytes up to ``max_record_bytes + 1`` past
    each record's start, so that records cut from any record start are the records an
    uninterrupted read cuts; and it must never join lines into a record longer than
    ``max_record_bytes``, so that a record too long to hold is one line, streamed past to
    its newline.
    """

    @abstractmethod
    def ends(self, data: bytes, stop: int, *, final: bool) -> Indexes:
        """The indexes of the record-ending newlines in ``data[:stop]``, which starts a record.

        Only records that those bytes tell completely: the ones from a record whose end
        depends on bytes past ``stop`` on are left out, unless ``final`` says the input ends
        at ``stop``. So the ends up to any ``stop`` are the first of the ends up to a later one.
        """


class LineSplitter(RecordSplitter):
    r"""Records that are lines: every newline ends one (NDJSON).

    >>> LINES.ends(b'{"a":1}\n{"a":2}\n', 16, final=True).tolist()
    [7, 15]
    """

    def ends(self, data: bytes, stop: int, *, final: bool) -> Indexes:
        """Every newline."""
        buf = np.frombuffer(data, dtype=np.uint8, count=stop)
        newlines: Indexes = np.flatnonzero(buf == NEWLINE)
        return newlines


LINES = LineSplitter()


def stream_past(
    first: bytes, read_more: Callable[[], bytes], *, max_raw_bytes: int
) -> tuple[Truncated, bytes, bool]:
    """Stream through a line too long to hold, from its first bytes ``first`` on.

    Returns the line as a :class:`Truncated` (its first ``max_raw_bytes``, its length and
    SHA-256, the newline excluded), the bytes read past its end, and whether a newline ended
    it (else the input did). ``read_more`` gives the next block, ``b""`` at the end.
    """
    digest = hashlib.sha256()
    head = bytearray()
    length = 0
    block = first
    while True:
        end = block.find(b"\n")
        body = block if end < 0 else block[:end]
        digest.update(body)
        length += len(body)
        if len(head) < max_raw_bytes:
            head += body[: max_raw_bytes - len(head)]
        if end >= 0:
            return Truncated(bytes(head), length, digest.hexdigest()), block[end + 1 :], True
        block = read_more()
        if not block:
            return Truncated(bytes(head), length, digest.hexdigest()), b"", False


class _Filler:
    """Reads a stream into a buffer as far as asked, noting its end and any early cut."""

    def __init__(self, stream: InputStream, buffered: bytes) -> None:
        self.stream, self.buffer = stream, buffered
        self.ended = False
        self.cut_off: TruncatedInput | None = None

    def fill(self, size: int) -> None:
        """Make the buffer ``size`` bytes long, or as long as the input allows."""
        parts, have = [self.buffer], len(self.buffer)
        while have < size and not self.ended:
            more = self.read(size - have)
            if not more:
                self.ended = True
                break
            parts.append(more)
            have += len(more)
        if len(parts) > 1:
            self.buffer = b"".join(parts)

    def read(self, size: int) -> bytes:
        """Up to ``size`` more bytes; at an early cut, none, with the cut noted."""
        if self.cut_off is not None:
            return b""
        try:
            return self.stream.read(size)
        except TruncatedInput as error:
            self.cut_off, self.ended = error, True
            return b""


def cut_stream(
    stream: InputStream,
    *,
    start: int,
    buffered: bytes,
    chunk_bytes: int,
    max_record_bytes: int,
    max_raw_bytes: int,
    records: RecordSplitter,
) -> Generator[Piece, None, None]:
    """Pieces of whole records from offset ``start`` of a sequential stream, on the grid.

    ``start`` is a record start; ``buffered`` holds bytes from it on already read from
    ``stream``. The tail after each cut is carried into the next piece. A stream cut off
    early (a truncated gzip file) yields every record before the cut whose end it tells, then
    raises :class:`TruncatedInput`.
    """
    filler = _Filler(stream, buffered)
    offset = start
    while True:
        grid = grid_point(offset, chunk_bytes)
        begin = grid - 1 - offset  # the buffer index of byte ``grid - 1``
        window = begin + 1 + max_record_bytes  # the record end must lie before this index
        filler.fill(window + 1)  # one byte more tells whether the input goes on past it
        buffer = filler.buffer
        if not buffer:
            break
        ends = _ends_past(
            records, buffer, begin, window, final=filler.ended and filler.cut_off is None
        )
        after = int(np.searchsorted(ends, begin))  # the first record end at or after ``begin``
        found = after < len(ends) and int(ends[after]) < window
        if not found and len(buffer) > window:  # the straddling record is too long to hold
            record_start = int(ends[after - 1]) + 1 if after else 0
            data, first = buffer[:record_start], buffer[record_start:]
            filler.buffer = buffer = b""
            record, rest, newline = stream_past(
                first, lambda: filler.read(BLOCK), max_raw_bytes=max_raw_bytes
            )
            data_ends = ends[:after]
            if filler.cut_off is not None:  # cut off inside the record: it is incomplete
                if data:
                    yield Piece(
                        data, offset, offset + len(data), data_ends, None, stream.stored_consumed
                    )
                raise filler.cut_off
            end_offset = offset + record_start + record.length + newline
            filler.buffer = rest
            yield Piece(data, offset, end_offset, data_ends, record, stream.stored_consumed)
            offset = end_offset
            continue
        if found:
            cut, ends = int(ends[after]) + 1, ends[: after + 1]
        elif filler.cut_off is None:
            cut = len(buffer)  # the input's end ends the last record
        else:  # drop the record the cut leaves incomplete
            cut = int(ends[-1]) + 1 if len(ends) else 0
            if not cut:
                break
        filler.buffer = buffer[cut:]
        yield Piece(buffer[:cut], offset, offset + cut, ends, None, stream.stored_consumed)
        offset += cut
    if filler.cut_off is not None:
        raise filler.cut_off


def _ends_past(
    records: RecordSplitter, buffer: bytes, begin: int, window: int, *, final: bool
) -> Indexes:
    """The record ends of ``buffer``, up to the first at or after ``begin`` before ``window``.

    The record holding byte ``begin`` mostly ends within a few lines: then only the bytes up
    to a line end a little past ``begin`` are split, not all ``max_record_bytes`` after it.
    """
    near = buffer.find(b"\n", min(begin + _NEAR, window), window)
    if 0 <= near < len(buffer) - 1:
        ends = records.ends(buffer, near + 1, final=False)
        if len(ends) and int(ends[-1]) >= begin:
            return ends
    return records.ends(buffer, len(buffer), final=final)


def skip_to(
    stream: InputStream, buffered: bytes, at: int, start: int, count: Callable[[bytes], int]
) -> tuple[bytes, int]:
    """Read a stream on to offset ``start``, applying ``count`` to every byte before it.

    ``buffered`` holds the bytes from offset ``at`` already read. Returns the bytes read
    past ``start`` and the sum of ``count`` over ``[at, start)`` (the lines before a resume
    offset: a compressed stream has to be decompressed up to it anyway).
    """
    if start <= at + len(buffered):
        cut = max(0, start - at)
        return buffered[cut:], count(buffered[:cut])
    counted = count(buffered)
    while stream.offset < start:
        block = stream.read(min(BLOCK, start - stream.offset))
        if not block:
            break
        counted += count(block)
    return b"", counted
