"""CSV files: no row stops a replay; each bad one is a dead letter with its row number."""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sensorstream.errors import SourceError
from sensorstream.readings import Limits, ReadingFormat
from sensorstream.sources import FileSource, SourceBatch
from tests.unit.sources.helpers import read_all, readings_in

FORMAT = ReadingFormat(measurements={"temperature": "float"}, tags=("site",))
T0 = 1_700_000_000_000


def read(
    source: FileSource,
    resume_after: Mapping[int, int] | None = None,
    fmt: ReadingFormat = FORMAT,
) -> list[SourceBatch]:
    return read_all(source, fmt, resume_after)


def readings_of(batches: list[SourceBatch]) -> pl.DataFrame:
    return readings_in(batches, FORMAT)


def dead_of(batches: list[SourceBatch]) -> list[dict[str, object]]:
    return [row for b in batches for row in b.dead_letters.iter_rows(named=True)]


def csv_file(tmp_path: Path, text: str | bytes, name: str = "x.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_a_row_with_an_extra_field_is_a_dead_letter_and_the_good_row_is_read(
    tmp_path: Path,
) -> None:
    path = csv_file(
        tmp_path,
        "device_id,ts,temperature\ndev-1,1700000000000,20.5\ndev-3,1700000003000,22.5,99\n",
    )
    batches = read(FileSource(path))
    assert readings_of(batches)["device_id"].to_list() == ["dev-1"]
    [dead] = dead_of(batches)
    assert dead["reason_code"] == "wrong_field_count"
    assert dead["reason"] == "row 2 has 4 fields, the header has 3"
    assert dead["origin"] == "row 2 of x.csv"
    assert dead["raw"] == b"dev-3,1700000003000,22.5,99"


def test_a_row_with_a_missing_field_is_a_dead_letter_not_padded_with_nulls(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path, f"device_id,ts,temperature,site\na,{T0},1.5,north\nb,{T0},2.5\nc,{T0},3.5,south\n"
    )
    batches = read(FileSource(path))
    assert readings_of(batches)["device_id"].to_list() == ["a", "c"]
    [dead] = dead_of(batches)
    assert (dead["origin"], dead["reason"]) == (
        "row 2 of x.csv",
        "row 2 has 3 fields, the header has 4",
    )


def test_quoted_fields_keep_their_commas_quotes_and_newlines(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "device_id,ts,temperature,site\n"
        f'"dev, 1",{T0},1.5,"the ""north"" roof"\n'
        f'dev-2,{T0 + 1},2.5,"two\nlines"\n'
        f"dev-3,{T0 + 2},3.5,plain\n",
    )
    readings = readings_of(read(FileSource(path)))
    assert readings["device_id"].to_list() == ["dev, 1", "dev-2", "dev-3"]
    assert readings["site"].to_list() == ['the "north" roof', "two\nlines", "plain"]


def test_blank_lines_are_counted_not_payloads_and_rows_keep_their_numbers(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        f"device_id,ts,temperature\r\na,{T0},1.5\r\n\r\n   \r\nb,{T0},oops\r\n\nc,{T0},3.5\r\n",
    )
    batches = read(FileSource(path))
    assert readings_of(batches)["device_id"].to_list() == ["a", "c"]
    assert sum(b.blank for b in batches) == 3
    assert sum(b.payloads for b in batches) == 3
    [dead] = dead_of(batches)
    assert dead["origin"] == "row 4 of x.csv"  # blank rows count: row 4 is the fourth record
    assert dead["raw"] == f"b,{T0},oops\r".encode()


def test_a_byte_order_mark_before_the_header_is_skipped(tmp_path: Path) -> None:
    path = csv_file(tmp_path, b"\xef\xbb\xbfdevice_id,ts,temperature\na,1700000000000,1.5\n")
    batches = read(FileSource(path))
    assert readings_of(batches)["temperature"].to_list() == [1.5]
    assert dead_of(batches) == []


def test_invalid_utf8_and_broken_quoting_are_dead_letters_not_crashes(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        b"device_id,ts,temperature\n"
        b"a,1700000000000,1.5\n"
        b"\xff\xfe,1700000000000,2.5\n"
        b'c,"17"00000000000,3.5\n'
        b"d,1700000000000,4.5\n",
    )
    batches = read(FileSource(path))
    assert readings_of(batches)["device_id"].to_list() == ["a", "d"]
    dead = dead_of(batches)
    assert [(d["origin"], d["reason_code"]) for d in dead] == [
        ("row 2 of x.csv", "invalid_utf8"),
        ("row 3 of x.csv", "invalid_csv"),
    ]
    assert dead[0]["raw"] == b"\xff\xfe,1700000000000,2.5"


def test_a_row_longer_than_the_limit_is_a_dead_letter(tmp_path: Path) -> None:
    fmt = ReadingFormat(
        measurements={"temperature": "float"},
        tags=("site",),
        limits=Limits(max_payload_bytes=100, max_raw_bytes=10),
    )
    rows = [f"d{i},{T0 + i},1.5,{'x' * (40 if i % 7 else 400)}" for i in range(30)]
    path = csv_file(tmp_path, "device_id,ts,temperature,site\n" + "\n".join(rows) + "\n")
    for chunk_bytes in (64, 10_000):  # straddling a grid point, and inside a chunk
        batches = read(FileSource(path, chunk_bytes=chunk_bytes), fmt=fmt)
        dead = dead_of(batches)
        assert [d["origin"] for d in dead] == [f"row {i + 1} of x.csv" for i in range(0, 30, 7)]
        assert {d["reason_code"] for d in dead} == {"payload_too_large"}
        for letter, row in zip(dead, rows[::7], strict=True):
            assert (letter["raw"], letter["raw_length"]) == (row[:10].encode(), len(row))
        assert readings_of(batches).height == 30 - len(dead)


def stray_quote_file(tmp_path: Path, good_rows: int) -> Path:
    """A file whose only quote is a stray one in row 2, with ``good_rows`` good rows after it."""
    rows = [
        "dev-1,1700000000000,20.5",
        '12" sensor,1700000001000,21',
        *(f"dev-{i % 7},{T0 + 2000 + i},{i % 30}.5" for i in range(good_rows)),
    ]
    return csv_file(tmp_path, "device_id,ts,temperature\n" + "\n".join(rows) + "\n")


@pytest.mark.parametrize("chunk_bytes", [4096, 16 * 1024 * 1024])
def test_a_stray_quote_costs_only_its_own_row_and_the_100000_rows_after_it_are_read(
    tmp_path: Path, chunk_bytes: int
) -> None:
    path = stray_quote_file(tmp_path, 100_000)
    batches = read(FileSource(path, chunk_bytes=chunk_bytes))
    [dead] = dead_of(batches)
    assert (dead["reason_code"], dead["origin"]) == ("invalid_csv", "row 2 of x.csv")
    assert dead["raw"] == b'12" sensor,1700000001000,21'
    assert str(dead["reason"]).startswith("row 2: a quote is left open (1 double quote, an odd")
    readings = readings_of(batches)
    assert readings.height == 100_001
    assert readings["device_id"][-1] == f"dev-{99_999 % 7}"
    assert sum(b.lines for b in batches) == 100_002


@pytest.mark.parametrize("chunk_bytes", [1, 40, 97, 1 << 20])
@pytest.mark.parametrize("max_payload_bytes", [100, Limits.max_payload_bytes])
def test_resuming_after_every_position_past_a_stray_quote_reads_exactly_the_rest(
    tmp_path: Path, chunk_bytes: int, max_payload_bytes: int
) -> None:
    fmt = ReadingFormat(
        measurements={"temperature": "float"},
        tags=("site",),
        limits=Limits(max_payload_bytes=max_payload_bytes, max_raw_bytes=64),
    )
    source = FileSource(stray_quote_file(tmp_path, 30), chunk_bytes=chunk_bytes)
    everything = read(source, fmt=fmt)
    assert [d["origin"] for d in dead_of(everything)] == ["row 2 of x.csv"]
    assert readings_of(everything).height == 31
    for index, batch in enumerate(everything):
        rest = read(source, {0: batch.position}, fmt)
        expected = everything[index + 1 :]
        assert [b.position for b in rest] == [b.position for b in expected]
        assert_frame_equal(readings_of(rest), readings_of(expected))
        assert dead_of(rest) == dead_of(expected)


@pytest.mark.parametrize("chunk_bytes", [1, 50, 1 << 20])
def test_a_quoted_field_left_open_costs_only_its_own_row_among_rows_that_quote_right(
    tmp_path: Path, chunk_bytes: int
) -> None:
    path = csv_file(
        tmp_path,
        "device_id,ts,temperature,site\n"
        f'"dev, 1",{T0},1.5,"the ""north"" roof"\n'
        f'dev-2,{T0 + 1},2.5,"two\nlines, with a comma"\n'
        f'dev-3,"oops,3.5,south\n'
        f'"dev ""4""",{T0 + 3},4.5,"three\nmore\nlines"\n'
        f'dev-5,{T0 + 4},5.5,"say ""hi"""\n'
        f'dev-6,{T0 + 5},6.5,"last\n""one"""\n',
    )
    batches = read(FileSource(path, chunk_bytes=chunk_bytes))
    readings = readings_of(batches)
    assert readings["device_id"].to_list() == ["dev, 1", "dev-2", 'dev "4"', "dev-5", "dev-6"]
    assert readings["site"].to_list() == [
        'the "north" roof',
        "two\nlines, with a comma",
        "three\nmore\nlines",
        'say "hi"',
        'last\n"one"',
    ]
    [dead] = dead_of(batches)
    assert (dead["reason_code"], dead["origin"]) == ("invalid_csv", "row 3 of x.csv")
    assert dead["raw"] == b'dev-3,"oops,3.5,south'
    assert sum(b.lines for b in batches) == 6


@pytest.mark.parametrize("chunk_bytes", [1, 30, 97, 1 << 20])
def test_resuming_after_every_position_reads_exactly_the_rest(
    tmp_path: Path, chunk_bytes: int
) -> None:
    path = csv_file(
        tmp_path,
        "device_id,ts,temperature,site\n"
        + "".join(
            [
                f'a,{T0},1.5,"multi\nline, quoted"\n',
                "\n",
                f"b,{T0 + 1},2.5\n",
                f'c,{T0 + 2},3.5,"say ""hi"""\n',
                "  \n",
                f"d,{T0 + 3},warm,x\n",
                f"e,{T0 + 4},5.5,y,extra\n",
                f'f,{T0 + 5},6.5,"last\nrecord"',
            ]
        ),
    )
    source = FileSource(path, chunk_bytes=chunk_bytes)
    everything = read(source)
    assert sum(b.lines for b in everything) == 8
    assert sum(b.blank for b in everything) == 2
    for index, batch in enumerate(everything):
        rest = read(source, {0: batch.position})
        expected = everything[index + 1 :]
        assert [b.position for b in rest] == [b.position for b in expected]
        assert_frame_equal(readings_of(rest), readings_of(expected))
        assert dead_of(rest) == dead_of(expected)
        assert sum(b.blank for b in rest) == sum(b.blank for b in expected)
    assert sorted((d["origin"], d["reason_code"]) for d in dead_of(everything)) == [
        ("row 3 of x.csv", "wrong_field_count"),
        ("row 6 of x.csv", "wrong_type"),
        ("row 7 of x.csv", "wrong_field_count"),
    ]


def test_a_paced_replay_splits_records_not_quoted_lines(tmp_path: Path) -> None:
    rows = [f'd{i % 3},{T0 + 10 * i},{i}.5,"one\ntwo"\n' for i in range(200)]
    path = csv_file(tmp_path, "device_id,ts,temperature,site\n" + "".join(rows))
    paced = read(FileSource(path, speed=1e6, chunk_bytes=2_000))
    assert len(paced) > 3
    assert_frame_equal(readings_of(paced), readings_of(read(FileSource(path))))
    assert {b.dead_letters.height for b in paced} == {0}


def test_a_gzipped_csv_reads_as_the_plain_one(tmp_path: Path) -> None:
    rows = "".join(f"d{i % 4},{T0 + i},{i}.5,s\n" for i in range(3000))
    text = ("device_id,ts,temperature,site\n" + rows + "d9,bad,1,s\n").encode()
    plain = csv_file(tmp_path, text)
    packed = csv_file(tmp_path, gzip.compress(text), "x.csv.gz")
    expected, got = (
        read(FileSource(plain, chunk_bytes=4096)),
        read(FileSource(packed, chunk_bytes=4096)),
    )
    assert [b.position for b in got] == [b.position for b in expected]
    assert_frame_equal(readings_of(got), readings_of(expected))
    assert [d["origin"] for d in dead_of(got)] == ["row 3001 of x.csv.gz"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("device_id,ts,ts\n", r"names 'ts' twice \(columns 2 and 3\)"),
        ("device_id,,temperature\n", "column 2 of the header of .*x.csv has no name"),
        ('device_id,"ts,temperature\n', "the header of .*x.csv has a quote left open"),
        ("\ndevice_id,ts\n", "starts with a blank line"),
        (",".join(f"c{i}" for i in range(1001)) + "\n", r"1,001 columns, more than 1,000"),
    ],
)
def test_a_header_that_cannot_name_the_columns_is_a_clear_error(
    tmp_path: Path, header: str, message: str
) -> None:
    path = csv_file(tmp_path, header + f"a,{T0},1.5\n")
    with pytest.raises(SourceError, match=message):
        read(FileSource(path))


def test_an_empty_file_or_a_header_alone_reads_nothing(tmp_path: Path) -> None:
    assert read(FileSource(csv_file(tmp_path, "", "empty.csv"))) == []
    assert read(FileSource(csv_file(tmp_path, "device_id,ts,temperature", "header.csv"))) == []


def test_many_rows_with_one_bad_row_deep_inside(tmp_path: Path) -> None:
    rows = [f"d{i % 10},{T0 + i},{i % 50}.5\n" for i in range(20_000)]
    rows[14_999] = f"d1,{T0},1.5,99\n"
    path = csv_file(tmp_path, "device_id,ts,temperature\n" + "".join(rows))
    batches = read(FileSource(path, chunk_bytes=64 * 1024))
    assert len(batches) > 3
    assert readings_of(batches).height == 19_999
    assert [d["origin"] for d in dead_of(batches)] == ["row 15000 of x.csv"]
