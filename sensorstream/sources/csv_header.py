"""The header of a CSV file: the column names every record is checked and parsed against.

The header is the file's first line: a column name cannot hold a newline, so a quote left
open in it cannot swallow the records after it. A header that cannot name the columns stops
the replay with a SourceError naming the file (every row would be a dead letter otherwise):
blank, longer than ``max_payload_bytes``, not UTF-8, broken quoting, an empty or repeated
name, more than ``max_fields`` names. A UTF-8 byte-order mark before it (Excel writes one)
is skipped.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from sensorstream.errors import SourceError
from sensorstream.readings import Limits
from sensorstream.sources.streams import BOM, InputStream


@dataclass(frozen=True)
class Header:
    """A CSV file's column names, and the offset just past its header record."""

    columns: tuple[str, ...]
    end: int


def read_header(stream: InputStream, path: Path, limits: Limits) -> tuple[Header | None, bytes]:
    """The header at the start of a stream (after a byte-order mark) and the bytes read past it.

    None for an empty file. Raises a SourceError naming the file for a header that cannot
    name the columns: blank, too long, not UTF-8, with empty, repeated or too many names.
    """
    data = stream.read(len(BOM) + limits.max_payload_bytes + 1)
    begin = len(BOM) if data.startswith(BOM) else 0
    if len(data) == begin:
        return None, b""
    end = data.find(b"\n", begin)
    if end < 0:
        if len(data) - begin > limits.max_payload_bytes:
            msg = (
                f"the header of {path} is longer than {limits.max_payload_bytes:,} bytes "
                "(readings.limits.max_payload_bytes): is it a CSV file?"
            )
            raise SourceError(msg)
        end = len(data)
    after = min(end + 1, len(data))
    return Header(header_columns(data[begin:end], path, limits), after), data[after:]


def header_columns(record: bytes, path: Path, limits: Limits) -> tuple[str, ...]:
    r"""The column names of a header record; a SourceError naming the file if they are unusable.

    >>> header_columns(b'device_id,ts,"temp, C"\r', Path("x.csv"), Limits())
    ('device_id', 'ts', 'temp, C')
    """
    try:
        text = record.decode("utf-8").removesuffix("\r")
    except UnicodeDecodeError as error:
        msg = (
            f"the header of {path} is not valid UTF-8 text (byte {error.start + 1}): "
            "save the file as UTF-8"
        )
        raise SourceError(msg) from error
    if not text.strip(" \t"):
        msg = (
            f"{path} starts with a blank line: its first line must name the columns "
            "(device_id,ts,...)"
        )
        raise SourceError(msg)
    if text.count('"') % 2:
        msg = (
            f"the header of {path} has a quote left open (an odd number of double quotes): "
            'quote a name with a double quote in it as a whole, its quotes doubled ("size ""in""")'
        )
        raise SourceError(msg)
    try:
        columns = tuple(next(csv.reader(io.StringIO(text, newline=""), strict=True)))
    except csv.Error as error:
        msg = f"cannot read the header of {path}: {error}"
        raise SourceError(msg) from error
    if len(columns) > limits.max_fields:
        msg = (
            f"the header of {path} has {len(columns):,} columns, more than "
            f"{limits.max_fields:,} (readings.limits.max_fields)"
        )
        raise SourceError(msg)
    unnamed = [str(i + 1) for i, name in enumerate(columns) if not name.strip()]
    if unnamed:
        msg = f"column {', '.join(unnamed)} of the header of {path} has no name: name every column"
        raise SourceError(msg)
    for index, name in enumerate(columns):
        if name in columns[:index]:
            msg = (
                f"the header of {path} names {name!r} twice (columns {columns.index(name) + 1} "
                f"and {index + 1}): every column needs its own name"
            )
            raise SourceError(msg)
    return columns
