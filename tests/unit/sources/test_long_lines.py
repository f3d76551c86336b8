"""A line far past ``max_payload_bytes`` is streamed past, never held: bounded memory."""

from __future__ import annotations

import gzip
import hashlib
import tracemalloc
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest

from sensorstream.readings import Limits, ReadingFormat
from sensorstream.sources import FileSource, SourceBatch

FORMAT = ReadingFormat(measurements={"temperature": "float"})
NOW = datetime(2024, 6, 1, tzinfo=UTC)
GIANT = 50_000_000
SMALL_LINES = 1000
CHUNK = 64 * 1024


def clock() -> datetime:
    return NOW


def small(index: int) -> bytes:
    return b'{"device_id":"d%d","ts":%d,"temperature":20.5}\n' % (
        index % 5,
        1_700_000_000_000 + index,
    )


def write_giant(write: Callable[[bytes], object], digest: hashlib._Hash) -> int:
    """A 50 MB JSON line (no newline), written and hashed a megabyte at a time."""
    parts = [b'{"device_id":"big","pad":"', *([b"x" * 1_000_000] * 50), b'"}']
    for part in parts:
        write(part)
        digest.update(part)
    return sum(len(part) for part in parts)


Where = Literal["middle", "first", "last"]


def giant_file(tmp_path: Path, where: Where, *, compressed: bool = False) -> tuple[Path, int, str]:
    """Small lines with one 50 MB line among them; returns the path, its length and hash."""
    path = tmp_path / ("giant.ndjson.gz" if compressed else "giant.ndjson")
    digest = hashlib.sha256()
    with gzip.open(path, "wb", compresslevel=1) if compressed else path.open("wb") as handle:
        before = 0 if where == "first" else SMALL_LINES
        handle.write(b"".join(small(i) for i in range(before)))
        length = write_giant(handle.write, digest)
        if where != "last":
            handle.write(b"\n" + b"".join(small(i) for i in range(SMALL_LINES)))
    return path, length, digest.hexdigest()


def read_measuring_memory(source: FileSource) -> tuple[list[SourceBatch], int]:
    tracemalloc.start()
    try:
        with closing(source.read(FORMAT, {}, clock)) as items:
            batches = [item for item in items if item is not None]
        return batches, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("where", "compressed"),
    [("middle", False), ("first", False), ("last", False), ("middle", True)],
)
def test_a_50_mb_line_becomes_one_dead_letter_without_being_held(
    tmp_path: Path, where: Where, compressed: bool
) -> None:
    path, length, sha256 = giant_file(tmp_path, where, compressed=compressed)
    batches, peak = read_measuring_memory(FileSource(path, chunk_bytes=CHUNK))

    dead = [row for b in batches for row in b.dead_letters.iter_rows(named=True)]
    assert len(dead) == 1
    [letter] = dead
    assert letter["reason_code"] == "payload_too_large"
    assert letter["raw_length"] == length
    assert letter["raw_sha256"] == sha256
    assert letter["raw"] == b'{"device_id":"big","pad":"' + b"x" * (Limits.max_raw_bytes - 26)
    giant_line = 1 if where == "first" else SMALL_LINES + 1
    assert letter["origin"] == f"line {giant_line} of {path.name}"
    small_lines = SMALL_LINES * (1 if where == "first" else 2 if where == "middle" else 1)
    assert sum(b.readings.height for b in batches) == small_lines
    assert sum(b.lines for b in batches) == small_lines + 1
    # Memory stays near chunk_bytes + max_payload_bytes, far below the line's 50 MB.
    assert peak < 8_000_000, f"peak traced memory {peak:,} bytes"


def test_resuming_after_the_chunk_of_a_long_line_reads_the_rest(tmp_path: Path) -> None:
    path, _, _ = giant_file(tmp_path, "middle")
    source = FileSource(path, chunk_bytes=CHUNK)
    with closing(source.read(FORMAT, {}, clock)) as items:
        everything = [item for item in items if item is not None]
    [index] = [i for i, b in enumerate(everything) if b.dead_letters.height]
    with closing(source.read(FORMAT, {0: everything[index].position}, clock)) as items:
        rest = [item for item in items if item is not None]
    assert [b.position for b in rest] == [b.position for b in everything[index + 1 :]]
    assert sum(b.readings.height for b in rest) == sum(
        b.readings.height for b in everything[index + 1 :]
    )
    first_after = rest[0].readings["device_id"][0]
    assert first_after == everything[index + 1].readings["device_id"][0]


@pytest.mark.parametrize("compressed", [False, True])
def test_a_line_just_past_the_limit_is_cut_the_same_plain_and_compressed(
    tmp_path: Path, compressed: bool
) -> None:
    limits = Limits(max_payload_bytes=300, max_raw_bytes=40)
    fmt = ReadingFormat(measurements={"temperature": "float"}, limits=limits)
    lines = [small(i) for i in range(40)]
    prefix = b'{"device_id":"long","ts":1700000000000,"temperature":1.0,"pad":"'
    for at, length in ((5, 299), (11, 300), (17, 301), (23, 900), (31, 5000)):
        lines[at] = prefix + b"y" * (length - len(prefix) - 2) + b'"}\n'
    data = b"".join(lines)
    plain = tmp_path / "plain.ndjson"
    plain.write_bytes(data)
    packed = tmp_path / "packed.ndjson.gz"
    packed.write_bytes(gzip.compress(data))

    def read_all(path: Path) -> list[SourceBatch]:
        with closing(FileSource(path, chunk_bytes=256).read(fmt, {}, clock)) as items:
            return [item for item in items if item is not None]

    expected, got = read_all(plain), read_all(packed if compressed else plain)
    assert [b.position for b in got] == [b.position for b in expected]
    dead = [row for b in got for row in b.dead_letters.iter_rows(named=True)]
    # Lines past 300 bytes become dead letters (each whole or streamed past); the rest readings.
    assert sorted(int(row["origin"].split()[1]) for row in dead) == [18, 24, 32]
    assert {row["reason_code"] for row in dead} == {"payload_too_large"}
    for row in dead:
        line = lines[int(row["origin"].split()[1]) - 1].rstrip(b"\n")
        assert (row["raw"], row["raw_length"]) == (line[:40], len(line))
        assert row["raw_sha256"] == hashlib.sha256(line).hexdigest()
    assert sum(b.lines for b in got) == 40
    assert sum(b.readings.height for b in got) == 37
