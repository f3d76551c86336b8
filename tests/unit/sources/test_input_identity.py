"""A source says what input a checkpoint belongs to, and whether the input is still that one."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sensorstream.sources import FileSource, SimulatorSource, write_dataset
from sensorstream.sources.base import InputChange


@pytest.fixture
def readings(tmp_path: Path) -> Path:
    path = tmp_path / "readings.ndjson"
    write_dataset(path, devices=5, readings=3_000, seed=1)  # about 280 KB: head and tail apart
    return path


def recorded(source: FileSource | SimulatorSource) -> dict[str, object]:
    """The identity as a checkpoint's manifest keeps it: through JSON."""
    loaded: dict[str, object] = json.loads(json.dumps(source.identity()))
    return loaded


def set_mtime(path: Path, moment: datetime) -> None:
    ns = int(moment.timestamp() * 1e9)
    os.utime(path, ns=(ns, ns))


def test_an_unchanged_file_is_the_same_input(readings: Path) -> None:
    source = FileSource(readings)
    assert source.compare(recorded(source)) is None
    assert recorded(source)["path"] == str(readings.resolve())


def test_a_file_replaced_by_another_is_a_change_described_in_words(readings: Path) -> None:
    source = FileSource(readings)
    then = datetime(2026, 12, 1, 10, 0, 3, tzinfo=UTC)
    set_mtime(readings, then)
    before = recorded(source)
    write_dataset(readings, devices=5, readings=2_000, seed=2)
    set_mtime(readings, then + timedelta(minutes=4, seconds=7))

    change = source.compare(before)

    assert isinstance(change, InputChange)
    assert not change.grown
    assert change.description == (
        f"readings.ndjson changed since the checkpoint: {before['size']:,} bytes then, "
        f"{readings.stat().st_size:,} now; modified 2026-12-01 10:00:03 UTC then, 10:04:10 now"
    )


def test_a_file_rewritten_to_the_same_size_is_a_change(readings: Path) -> None:
    source = FileSource(readings)
    before = recorded(source)
    data = bytearray(readings.read_bytes())
    data[-20] = ord("7") if data[-20] != ord("7") else ord("8")  # a digit in the last line
    readings.write_bytes(bytes(data))

    change = source.compare(before)

    assert change is not None
    assert not change.grown
    assert "the same size" in change.description
    assert "different content" in change.description


def test_a_file_edited_in_the_middle_is_a_change_even_with_its_head_and_tail_kept(
    readings: Path,
) -> None:
    source = FileSource(readings)
    before = recorded(source)
    data = bytearray(readings.read_bytes())
    middle = len(data) // 2
    data[middle] = ord("1") if data[middle] != ord("1") else ord("2")
    readings.write_bytes(bytes(data))
    set_mtime(readings, datetime.fromtimestamp(readings.stat().st_mtime, tz=UTC) + timedelta(1))

    change = source.compare(before)

    assert change is not None
    assert "new modification time" in change.description


def test_a_file_appended_to_has_grown(readings: Path) -> None:
    source = FileSource(readings)
    before = recorded(source)
    with readings.open("a") as handle:
        handle.write('{"device_id":"late","ts":1700000000000,"temperature":1.5}\n')

    change = source.compare(before)

    assert change is not None
    assert change.grown
    assert "readings.ndjson has grown" in change.description


def test_a_small_file_appended_to_has_grown_too(tmp_path: Path) -> None:
    path = tmp_path / "small.ndjson"
    path.write_text('{"a":1}\n')
    source = FileSource(path)
    before = recorded(source)
    path.write_text('{"a":1}\n{"a":2}\n')
    change = source.compare(before)
    assert change is not None
    assert change.grown


def test_a_gzip_file_with_another_member_appended_has_grown(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson.gz"
    path.write_bytes(gzip.compress(b'{"a":1}\n'))
    source = FileSource(path)
    before = recorded(source)
    with path.open("ab") as handle:
        handle.write(gzip.compress(b'{"a":2}\n'))
    change = source.compare(before)
    assert change is not None
    assert change.grown


def test_a_file_cut_short_is_a_change_not_growth(readings: Path) -> None:
    source = FileSource(readings)
    before = recorded(source)
    readings.write_bytes(readings.read_bytes()[:-1000])
    change = source.compare(before)
    assert change is not None
    assert not change.grown


def test_a_checkpoint_without_a_file_identity_does_not_pass_for_this_file(readings: Path) -> None:
    change = FileSource(readings).compare({})
    assert change is not None
    assert "does not record which readings.ndjson it read" in change.description


def test_the_simulator_is_identified_by_its_settings() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    source = SimulatorSource(devices=3, seed=4, start=start, duration=timedelta(minutes=1))
    same = SimulatorSource(devices=3, seed=4, start=start, duration=timedelta(minutes=1))
    other = SimulatorSource(devices=3, seed=5, start=start, duration=timedelta(minutes=1))

    identity = recorded(source)

    assert identity["seed"] == 4
    assert identity["devices"] == 3
    assert identity["start"] == "2024-01-01T00:00:00+00:00"
    assert same.compare(identity) is None
    change = other.compare(identity)
    assert change is not None
    assert not change.grown
