"""Compressed inputs: gzip and zstd files read as streams of any size, told by their content."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from sensorstream.errors import ConfigError, SourceError
from sensorstream.readings import ReadingFormat
from sensorstream.sources import FileSource, SourceBatch, write_dataset
from sensorstream.sources.file_formats import read_lines
from sensorstream.sources.streams import compression_of, open_input
from tests.unit.sources.helpers import clock, read_all, readings_in

FORMAT = ReadingFormat(measurements={"temperature": "float", "humidity": "float"})


def read(source: FileSource, resume_after: Mapping[int, int] | None = None) -> list[SourceBatch]:
    return read_all(source, FORMAT, resume_after)


def readings_of(batches: list[SourceBatch]) -> pl.DataFrame:
    return readings_in(batches, FORMAT)


def dead_letters_of(batches: list[SourceBatch]) -> pl.DataFrame:
    """The dead letters, their origins without the file name ("line 17")."""
    dead = pl.concat([b.dead_letters for b in batches])
    return dead.with_columns(pl.col("origin").str.replace(" of .*", ""))


def zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as stream:
        stream.write(data)
    return sink.getvalue().to_pybytes()


COMPRESS = {"gzip": gzip.compress, "zstd": zstd}
SUFFIX = {"gzip": ".gz", "zstd": ".zst"}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 3 MB of NDJSON readings, with malformed lines."""
    path = tmp_path_factory.mktemp("plain") / "readings.ndjson"
    write_dataset(path, devices=50, readings=30_000, malformed_fraction=0.01, seed=5)
    return path


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
@pytest.mark.parametrize("named", ["suffix", "content only"])
def test_a_compressed_file_of_megabytes_reads_exactly_as_the_plain_one(
    plain: Path, tmp_path: Path, compression: str, named: str
) -> None:
    name = "readings.ndjson" + (SUFFIX[compression] if named == "suffix" else "")
    packed = tmp_path / name
    packed.write_bytes(COMPRESS[compression](plain.read_bytes()))
    expected = read(FileSource(plain, chunk_bytes=64 * 1024))
    got = read(FileSource(packed, chunk_bytes=64 * 1024))
    assert plain.stat().st_size > 2_000_000
    assert len(got) > 30
    # Positions count decompressed bytes, on the same grid as the plain file's.
    assert [b.position for b in got] == [b.position for b in expected]
    assert_frame_equal(readings_of(got), readings_of(expected))
    assert_frame_equal(dead_letters_of(got), dead_letters_of(expected))


def test_progress_of_a_compressed_file_counts_compressed_bytes(plain: Path, tmp_path: Path) -> None:
    packed = tmp_path / "readings.ndjson.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    batches = read(FileSource(packed, chunk_bytes=256 * 1024))
    size = packed.stat().st_size
    assert {b.total for b in batches} == {size}
    done = [b.done or 0 for b in batches]
    assert all(0 < d <= size for d in done)
    assert done == sorted(done)
    assert done[-1] == size


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_resuming_in_the_middle_of_a_compressed_stream_reads_exactly_the_rest(
    plain: Path, tmp_path: Path, compression: str
) -> None:
    packed = tmp_path / f"readings.ndjson{SUFFIX[compression]}"
    packed.write_bytes(COMPRESS[compression](plain.read_bytes()))
    source = FileSource(packed, chunk_bytes=256 * 1024)
    everything = read(source)
    for index in (0, len(everything) // 2, len(everything) - 2):
        rest = read(source, {0: everything[index].position})
        assert [b.position for b in rest] == [b.position for b in everything[index + 1 :]]
        assert_frame_equal(readings_of(rest), readings_of(everything[index + 1 :]))
        assert_frame_equal(dead_letters_of(rest), dead_letters_of(everything[index + 1 :]))


def test_concatenated_gzip_members_read_as_one_stream(tmp_path: Path) -> None:
    first = b'{"device_id":"a","ts":1700000000000,"temperature":1.0}\n'
    second = b'{"device_id":"b","ts":1700000001000,"temperature":2.0}\n'
    path = tmp_path / "joined.ndjson.gz"
    path.write_bytes(gzip.compress(first) + gzip.compress(second))  # cat a.gz b.gz
    assert readings_of(read(FileSource(path)))["device_id"].to_list() == ["a", "b"]


def decompressible_prefix(path: Path, compression: Literal["gzip", "zstd"]) -> bytes:
    """What a cut-off stream still holds: read a byte at a time until the cut."""
    prefix = bytearray()
    with pa.CompressedInputStream(pa.OSFile(str(path), "r"), compression) as stream:
        try:
            while byte := stream.read(1):
                prefix += byte
        except OSError:
            pass
    return bytes(prefix)


def read_until_it_fails(source: FileSource, batches: list[SourceBatch]) -> None:
    with closing(source.read(FORMAT, {}, clock)) as items:
        batches.extend(item for item in items if item is not None)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
@pytest.mark.parametrize("chunk_bytes", [4096, 1 << 20])
def test_a_truncated_file_reads_every_complete_line_then_says_it_ends_early(
    tmp_path: Path, compression: Literal["gzip", "zstd"], chunk_bytes: int
) -> None:
    plain = tmp_path / "whole.ndjson"
    write_dataset(plain, devices=20, readings=10_000, seed=6)  # several zstd blocks
    packed = COMPRESS[compression](plain.read_bytes())
    path = tmp_path / f"cut.ndjson{SUFFIX[compression]}"
    path.write_bytes(packed[: len(packed) // 2])
    prefix = decompressible_prefix(path, compression)
    if compression == "gzip":
        assert prefix == zlib.decompressobj(wbits=31).decompress(packed[: len(packed) // 2])
    complete = prefix[: prefix.rfind(b"\n") + 1]
    batches: list[SourceBatch] = []

    with pytest.raises(SourceError, match=rf"cut\.ndjson\..*: the {compression} stream ends early"):
        read_until_it_fails(FileSource(path, chunk_bytes=chunk_bytes), batches)

    assert complete.count(b"\n") > 1000
    assert batches[-1].position == len(complete)
    assert sum(b.lines for b in batches) == complete.count(b"\n")
    expected = readings_of(read(FileSource(plain)))
    assert_frame_equal(readings_of(batches), expected.head(readings_of(batches).height))


def test_a_stream_cut_inside_a_long_line_reads_the_lines_before_it(tmp_path: Path) -> None:
    line = b'{"device_id":"a","ts":1700000000000,"temperature":1.0}\n'
    data = line * 100 + b'{"device_id":"b","pad":"' + b"x" * 3_000_000 + b'"}\n' + line
    packed = gzip.compress(data)
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(packed[: len(packed) // 2])
    batches: list[SourceBatch] = []
    with pytest.raises(SourceError, match="ends early"):
        read_until_it_fails(FileSource(path, chunk_bytes=1024), batches)
    assert sum(b.readings.height for b in batches) == 100
    assert batches[-1].position == 100 * len(line)


def test_a_truncated_csv_reads_every_complete_record(tmp_path: Path) -> None:
    rows = "".join(f"d{i % 4},{1_700_000_000_000 + i},{i}.5\n" for i in range(5000))
    text = ("device_id,ts,temperature\n" + rows).encode()
    packed = gzip.compress(text)
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(packed[: len(packed) // 2])
    prefix = decompressible_prefix(path, "gzip")
    batches: list[SourceBatch] = []
    with pytest.raises(SourceError, match="ends early"):
        read_until_it_fails(FileSource(path, chunk_bytes=8192), batches)
    assert sum(b.lines for b in batches) == prefix.count(b"\n") - 1  # the header is no row


@pytest.mark.parametrize(
    ("suffix", "claimed"), [(".gz", "gzip"), (".zst", "zstd"), (".zstd", "zstd")]
)
def test_a_name_that_claims_compression_on_a_plain_file_is_a_clear_error(
    tmp_path: Path, suffix: str, claimed: str
) -> None:
    path = tmp_path / f"readings.ndjson{suffix}"
    path.write_text('{"device_id":"a","ts":1700000000000,"temperature":1.0}\n')
    with pytest.raises(SourceError, match=rf"ends \{suffix} but it is not {claimed}"):
        FileSource(path)


def test_a_compressed_parquet_file_is_refused_clearly(tmp_path: Path) -> None:
    parquet = tmp_path / "readings.parquet"
    write_dataset(parquet, devices=2, readings=10)
    packed = tmp_path / "readings.parquet.gz"
    packed.write_bytes(gzip.compress(parquet.read_bytes()))
    with pytest.raises(SourceError, match="Parquet cannot be read through gzip"):
        FileSource(packed)


def test_the_format_is_told_from_the_name_without_its_compression_suffix(tmp_path: Path) -> None:
    csv = b"device_id,ts,temperature\na,1700000000000,1.5\n"
    path = tmp_path / "readings.csv.zst"
    path.write_bytes(zstd(csv))
    source = FileSource(path)
    assert source.format == "csv"
    assert readings_of(read(source))["temperature"].to_list() == [1.5]
    unknown = tmp_path / "readings.gz"
    unknown.write_bytes(gzip.compress(csv))
    with pytest.raises(ConfigError, match="cannot tell the format"):
        FileSource(unknown)


def test_compression_is_told_by_magic_bytes(tmp_path: Path) -> None:
    for name, data, expected in (
        ("a.bin", gzip.compress(b"x"), "gzip"),
        ("b.bin", zstd(b"x"), "zstd"),
        ("c.bin", b"plain", None),
    ):
        (tmp_path / name).write_bytes(data)
        assert compression_of(tmp_path / name) == expected
        with open_input(tmp_path / name) as stream:
            assert stream.read(100) == (b"plain" if expected is None else b"x")


def test_compressed_chunks_lie_on_the_plain_grid_from_any_resume_point(tmp_path: Path) -> None:
    data = b"".join(b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i % 37)) for i in range(2000))
    plain, packed = tmp_path / "lines.ndjson", tmp_path / "lines.ndjson.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    full = [(c.start, c.end, c.first) for c in read_lines(plain, 0, 1000)]
    assert [(c.start, c.end, c.first) for c in read_lines(packed, 0, 1000)] == full
    for resume_at in (full[3][1], full[17][1], full[-2][1]):
        resumed = [(c.start, c.end, c.first) for c in read_lines(packed, resume_at, 1000)]
        assert resumed == [span for span in full if span[0] >= resume_at]


def test_a_paced_compressed_replay_reports_progress_in_every_piece(
    plain: Path, tmp_path: Path
) -> None:
    packed = tmp_path / "readings.ndjson.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()[:200_000]))
    batches = read(FileSource(packed, speed=1e9, chunk_bytes=64 * 1024))
    assert len(batches) > 4
    assert all(b.done is not None for b in batches)
