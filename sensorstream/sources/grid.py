"""Cutting a byte stream into chunks of whole records on a fixed grid, in bounded memory.

A chunk starting at offset ``p`` ends at the first record end at or after byte
``g - 1``, where ``g`` is the next multiple of ``chunk_bytes`` above ``p``. The cut depends
only on ``p`` and the data, so a read resumed at any chunk end cuts exactly the chunks an
uninterrupted read cuts after it, and float sums are added in the same order: results after
a crash are identical to the bit.

A record ends at a newline; with ``quoted`` (CSV, RFC 4180), only at a newline outside
double quotes, told by the parity of the quotes before it (an escaped quote ``""`` counts
twice, so it never changes the parity). A quote inside an unquoted field (``ab"c``) is not
RFC 4180: it opens a quoted stretch up to the next quote, as in any RFC 4180 reader, and the
record it starts becomes a dead letter (wrong field count, or too long).

When the record that straddles ``g - 1`` runs on past ``g + max_record_bytes``, it is never
held whole: the reader streams through the rest of it, hashing it, and hands it on as a
:class:`~sensorstream.readings.Truncated` (its first bytes, its length, its SHA-256) after
the chunk's other records. So memory stays about ``chunk_bytes + max_record_bytes``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensorstream.readings import Truncated
from sensorstream.sources.streams import InputStream, TruncatedInput

NEWLINE, QUOTE = 10, 34
# Bytes read at a time while streaming past a long record or counting records before a
# resume offset: large reads, no work per record in Python.
BLOCK = 1024 * 1024


@dataclass
class Piece:
    """Whole records from offset ``start`` to ``end``, the last maybe too long to hold.

    ``data`` holds the records; ``oversized``, if any, is the record after them (ending at
    ``end``), streamed past. ``stored_consumed`` is how much of the stored file was
    consumed (compressed bytes, when they differ from ``end``), for progress.
    """

    data: bytes
    start: int
    end: int
    oversized: Truncated | None = None
    stored_consumed: int | None = None


def grid_point(offset: int, chunk_bytes: int) -> int:
    """The grid point a chunk starting at ``offset`` reaches: the next multiple above it.

    >>> grid_point(0, 100), grid_point(99, 100), grid_point(100, 100)
    (100, 100, 200)
    """
    return (offset // chunk_bytes + 1) * chunk_bytes


def find_record_end(
    data: bytes, begin: int, stop: int, parity: int, *, quoted: bool
) -> tuple[int, int]:
    r"""The index of the first record-ending newline in ``data[begin:stop]``, or -1.

    ``parity`` is the parity of the quotes before ``begin`` (counted from a record start).
    Returns the index and the quote parity just before it (0), or -1 and the parity at
    ``stop``, so that a search can go on in the next block.

    >>> find_record_end(b'a,"x\ny"\nb', 0, 10, 0, quoted=True)
    (7, 0)
    """
    if not quoted:
        return data.find(b"\n", begin, stop), 0
    cursor = begin
    while True:  # one round per newline inside quotes: rare, and bounded by ``stop``
        newline = data.find(b"\n", cursor, stop)
        if newline < 0:
            return -1, parity ^ (data.count(b'"', cursor, stop) & 1)
        parity ^= data.count(b'"', cursor, newline) & 1
        if not parity:
            return newline, 0
        cursor = newline + 1


def record_ends(data: bytes, *, quoted: bool) -> npt.NDArray[np.intp]:
    r"""The indexes of the record-ending newlines of ``data`` (which starts a record).

    >>> record_ends(b'a\n"b\nc"\nd', quoted=True).tolist()
    [1, 7]
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == NEWLINE)
    if not quoted or data.find(b'"') < 0:
        return newlines
    quotes = np.flatnonzero(buf == QUOTE)
    outside: npt.NDArray[np.intp] = newlines[(np.searchsorted(quotes, newlines) & 1) == 0]
    return outside


def count_record_ends(data: bytes, parity: int, *, quoted: bool) -> tuple[int, int]:
    r"""Record-ending newlines in a block that starts at quote ``parity``; and the parity after.

    >>> count_record_ends(b'x"\n"\n', 0, quoted=True)
    (1, 0)
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == NEWLINE)
    if not quoted:
        return len(newlines), 0
    quotes = np.flatnonzero(buf == QUOTE)
    before = np.searchsorted(quotes, newlines) + parity
    return int(np.count_nonzero((before & 1) == 0)), (parity + len(quotes)) & 1


def stream_past(
    first: bytes, read_more: Callable[[], bytes], *, quoted: bool, max_raw_bytes: int
) -> tuple[Truncated, bytes, bool]:
    """Stream through a record too long to hold, from its first bytes ``first`` on.

    Returns the record as a :class:`Truncated` (its first ``max_raw_bytes``, its length and
    SHA-256, the newline excluded), the bytes read past its end, and whether a newline ended
    it (else the input did). ``read_more`` gives the next block, ``b""`` at the end.
    """
    digest = hashlib.sha256()
    head = bytearray()
    length, parity = 0, 0
    block = first
    while True:
        end, parity = find_record_end(block, 0, len(block), parity, quoted=quoted)
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


def last_record_end(data: bytes, stop: int, *, quoted: bool) -> int:
    """The index just past the last record end in ``data[:stop]``, or 0 if it has none."""
    if not quoted:
        return data.rfind(b"\n", 0, stop) + 1
    ends = record_ends(data[:stop], quoted=True)
    return int(ends[-1]) + 1 if len(ends) else 0


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
    quoted: bool,
) -> Generator[Piece, None, None]:
    """Pieces of whole records from offset ``start`` of a sequential stream, on the grid.

    ``buffered`` holds bytes from ``start`` on already read from ``stream``. The tail after
    each cut is carried into the next piece. A stream cut off early (a truncated gzip file)
    yields every complete record before the cut, then raises :class:`TruncatedInput`.
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
        end = -1
        if begin < len(buffer):
            parity = buffer.count(b'"', 0, begin) & 1 if quoted else 0
            end, _ = find_record_end(buffer, begin, window, parity, quoted=quoted)
        if end < 0 and len(buffer) > window:  # the straddling record is too long to hold
            record_start = last_record_end(buffer, begin, quoted=quoted)
            data, first = buffer[:record_start], buffer[record_start:]
            filler.buffer = buffer = b""
            record, rest, newline = stream_past(
                first, lambda: filler.read(BLOCK), quoted=quoted, max_raw_bytes=max_raw_bytes
            )
            if filler.cut_off is not None:  # cut off inside the record: it is incomplete
                if data:
                    yield Piece(data, offset, offset + len(data), None, stream.stored_consumed)
                raise filler.cut_off
            end_offset = offset + record_start + record.length + newline
            filler.buffer = rest
            yield Piece(data, offset, end_offset, record, stream.stored_consumed)
            offset = end_offset
            continue
        cut = end + 1 if end >= 0 else len(buffer)
        if end < 0 and filler.cut_off is not None:
            cut = last_record_end(buffer, len(buffer), quoted=quoted)  # drop the cut record
            if not cut:
                break
        filler.buffer = buffer[cut:]
        yield Piece(buffer[:cut], offset, offset + cut, None, stream.stored_consumed)
        offset += cut
    if filler.cut_off is not None:
        raise filler.cut_off


def skip_to(
    stream: InputStream, buffered: bytes, at: int, start: int, count: Callable[[bytes], int]
) -> tuple[bytes, int]:
    """Read a stream on to offset ``start``, applying ``count`` to every byte before it.

    ``buffered`` holds the bytes from offset ``at`` already read. Returns the bytes read
    past ``start`` and the sum of ``count`` over ``[at, start)`` (the lines or records
    before a resume offset: a compressed stream has to be decompressed up to it anyway).
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
