"""The ingest log: durable appends, group commit, torn tails, bounded room, reading back."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sensorstream.sources import ingest_log
from sensorstream.sources.ingest_log import (
    HEADER_BYTES,
    Backpressure,
    IngestLog,
    IngestLogError,
    Record,
)

ARRIVED = datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)


def body(first: int, lines: int = 1) -> bytes:
    return b"".join(b'{"device_id":"d","n":%d}\n' % n for n in range(first, first + lines))


def read_all(log: IngestLog, start: int | None = None) -> list[Record]:
    reader = log.reader(start)
    try:
        return reader.read(1 << 30)
    finally:
        reader.close()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[IngestLog]:
    with IngestLog(tmp_path / "log") as opened:
        yield opened


def test_an_append_comes_back_with_its_sequence_numbers_and_arrival_time(log: IngestLog) -> None:
    assert log.append(body(0, 3), ARRIVED) == range(0, 3)
    assert log.append(body(3, 2), ARRIVED + timedelta(seconds=1)) == range(3, 5)

    records = read_all(log)

    assert [(r.first, r.lines, r.end) for r in records] == [(0, 3, 3), (3, 2, 5)]
    assert [r.body for r in records] == [body(0, 3), body(3, 2)]
    assert [r.arrived_at for r in records] == [ARRIVED, ARRIVED + timedelta(seconds=1)]


def test_sequence_numbers_count_every_line_blank_and_unterminated_ones_too(log: IngestLog) -> None:
    assert log.append(b'{"a":1}\n\n  \n{"a":2}', ARRIVED) == range(0, 4)
    assert log.append(b"\n", ARRIVED) == range(4, 5)
    with pytest.raises(IngestLogError, match="empty body"):
        log.append(b"", ARRIVED)


def test_tagged_messages_are_one_line_each_and_come_back_with_their_tags(
    tmp_path: Path,
) -> None:
    entries = [(b"devices/d%d/telemetry" % n, body(n)) for n in range(3000)]  # many writes' worth
    entries[7] = (b"devices/d7/telemetry", b"")  # an empty payload is a line too
    with IngestLog(tmp_path) as log:
        log.append(body(0, 2), ARRIVED)
        assert log.append_tagged(entries, ARRIVED) == range(2, 3002)
        assert log.append_tagged([], ARRIVED) == range(3002, 3002)
        log.append(body(0), ARRIVED)
    with IngestLog(tmp_path) as reopened:  # the scan on open understands both kinds
        records = read_all(reopened)
        assert reopened.next_sequence == 3003

    assert [(r.first, r.lines, r.tag) for r in records[:3]] == [
        (0, 2, b""),
        (2, 1, b"devices/d0/telemetry"),
        (3, 1, b"devices/d1/telemetry"),
    ]
    assert [(r.tag, r.body) for r in records[1:-1]] == entries
    assert records[-1].tag == b""


def test_reopening_continues_the_sequence_and_keeps_the_log_id(tmp_path: Path) -> None:
    with IngestLog(tmp_path) as log:
        log.append(body(0, 2), ARRIVED)
        log_id = log.log_id
    with IngestLog(tmp_path) as log:
        assert (log.log_id, log.next_sequence) == (log_id, 2)
        assert log.append(body(2), ARRIVED) == range(2, 3)
        assert [r.first for r in read_all(log)] == [0, 2]


def test_a_reader_from_the_middle_of_a_record_gets_that_whole_record(log: IngestLog) -> None:
    log.append(body(0, 3), ARRIVED)
    log.append(body(3, 3), ARRIVED)

    assert [r.first for r in read_all(log, 4)] == [3]
    assert [r.first for r in read_all(log, 3)] == [3]
    assert read_all(log, 6) == []


def test_reading_from_before_the_log_or_after_its_end_is_an_error(tmp_path: Path) -> None:
    with IngestLog(tmp_path, segment_bytes=1) as log:
        for n in range(3):
            log.append(body(n), ARRIVED)
        log.compact(2)
        with pytest.raises(IngestLogError, match=r"starts at line 2, after 1.*--fresh"):
            log.reader(1)
        with pytest.raises(IngestLogError, match=r"ends at line 3, before 4"):
            log.reader(4)


# -- torn tails ----------------------------------------------------------------------------


def tear_half_header(path: Path) -> None:
    with path.open("ab") as file:
        file.write(b"SIL1\x10\x00")


def tear_half_body(path: Path) -> None:
    size = path.stat().st_size
    os.truncate(path, size - 5)


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    path.write_bytes(bytes(data))


def append_zeros(path: Path) -> None:
    with path.open("ab") as file:
        file.write(bytes(4096))  # a file extended by a crash before its data reached the disk


@pytest.mark.parametrize(
    "tear",
    [tear_half_header, tear_half_body, flip_last_byte, append_zeros],
    ids=["half a header", "half a body", "a bad CRC", "zeros"],
)
def test_a_torn_tail_is_cut_off_on_open_and_every_whole_record_stays(
    tmp_path: Path, tear: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    with IngestLog(tmp_path) as log:
        log.append(body(0, 2), ARRIVED)
        log.append(body(2, 2), ARRIVED)
    segment = next(tmp_path.glob("segment-*.log"))
    whole = segment.stat().st_size
    tear(segment)
    kept = 2 if tear in (tear_half_body, flip_last_byte) else 4

    with IngestLog(tmp_path) as log:
        assert [r.end for r in read_all(log)] == [2, 4][: kept // 2]
        assert log.next_sequence == kept
        assert log.append(body(kept), ARRIVED) == range(kept, kept + 1)
        assert [r.first for r in read_all(log)][-1] == kept

    assert "a write a crash interrupted" in caplog.text
    expected = whole if kept == 4 else whole - (HEADER_BYTES + len(body(2, 2)))
    assert segment.stat().st_size == expected + HEADER_BYTES + len(body(kept))


def test_a_record_corrupted_before_the_tail_is_reported_when_read(tmp_path: Path) -> None:
    with IngestLog(tmp_path, segment_bytes=1) as log:
        log.append(body(0), ARRIVED)
        log.append(body(1), ARRIVED)
    first = sorted(tmp_path.glob("segment-*.log"))[0]
    data = bytearray(first.read_bytes())
    data[HEADER_BYTES + 3] ^= 0xFF
    first.write_bytes(bytes(data))

    with IngestLog(tmp_path) as log, pytest.raises(IngestLogError, match="bad body"):
        read_all(log)


# -- group commit --------------------------------------------------------------------------


def test_concurrent_appends_get_disjoint_ranges_and_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads, each = 16, 40
    ranges: list[range] = []
    lock = threading.Lock()
    real_sync = ingest_log._sync

    def disk_like_sync(fd: int) -> None:
        time.sleep(0.001)  # a disk's flush takes a while (tmpfs takes none): others queue up
        real_sync(fd)

    monkeypatch.setattr(ingest_log, "_sync", disk_like_sync)

    with IngestLog(tmp_path, segment_bytes=8 * 1024) as log:

        def client(index: int) -> None:
            for n in range(each):
                lines = 1 + (index + n) % 3
                got = log.append(b'{"client":%d,"n":%d}\n' % (index, n) * lines, ARRIVED)
                with lock:
                    ranges.append(got)

        workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        records = read_all(log)
        appends, syncs = log.appends, log.syncs

    assert appends == threads * each
    assert syncs < appends / 2  # appends shared syncs
    assert sorted(r.start for r in ranges) == [r.first for r in records]
    assert sorted(ranges, key=lambda r: r.start) == [range(r.first, r.end) for r in records]
    assert records[-1].end == sum(len(r) for r in ranges)
    for record in records:
        assert record.body.count(b"\n") == record.lines
    assert len(list(tmp_path.glob("segment-*.log"))) > 1


def test_a_reader_sees_only_what_is_synced(log: IngestLog, monkeypatch: pytest.MonkeyPatch) -> None:
    log.append(body(0), ARRIVED)
    release = threading.Event()
    real_sync = ingest_log._sync

    def slow_sync(fd: int) -> None:
        release.wait(10)
        real_sync(fd)

    monkeypatch.setattr(ingest_log, "_sync", slow_sync)
    appending = threading.Thread(target=log.append, args=(body(1), ARRIVED))
    appending.start()
    reader = log.reader(1)
    try:
        assert not log.wait_for(1, timeout=0.05)
        assert reader.read(1 << 20) == []
        assert log.next_sequence == 1
        release.set()
        appending.join()
        assert log.wait_for(1, timeout=5)
        assert [r.first for r in reader.read(1 << 20)] == [1]
    finally:
        release.set()
        reader.close()


def test_a_failed_write_leaves_the_log_as_it_was(
    log: IngestLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log.append(body(0), ARRIVED)
    real_writev = os.writev

    def disk_full(fd: int, buffers: list[bytes]) -> int:
        real_writev(fd, [buffers[0][:10]])  # part of the header made it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", disk_full)
    with pytest.raises(IngestLogError, match="No space left on device"):
        log.append(body(1), ARRIVED)
    monkeypatch.setattr(os, "writev", real_writev)

    assert log.append(body(1), ARRIVED) == range(1, 2)
    assert [r.body for r in read_all(log)] == [body(0), body(1)]


def test_a_failed_fsync_refuses_every_later_append(
    log: IngestLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(ingest_log, "_sync", failing)
    with pytest.raises(IngestLogError, match="cannot sync"):
        log.append(body(0), ARRIVED)
    monkeypatch.undo()
    with pytest.raises(IngestLogError, match="refuses appends until the pipeline is restarted"):
        log.append(body(1), ARRIVED)


def test_one_process_at_a_time_has_a_log_open(log: IngestLog) -> None:
    with pytest.raises(IngestLogError, match=r"open in another process.*log_dir"):
        IngestLog(log.folder)


# -- bounded room --------------------------------------------------------------------------


def test_compaction_deletes_segments_wholly_before_the_position_never_the_last(
    tmp_path: Path,
) -> None:
    with IngestLog(tmp_path, segment_bytes=1) as log:
        for n in range(4):
            log.append(body(n), ARRIVED)  # one record a segment
        assert len(list(tmp_path.glob("segment-*.log"))) == 4

        assert log.compact(2) == 2
        assert (log.first_sequence, [r.first for r in read_all(log, 2)]) == (2, [2, 3])
        assert log.compact(4) == 1
        assert log.compact(4) == 0
        assert log.first_sequence == 3
    with IngestLog(tmp_path) as log:
        assert (log.first_sequence, log.next_sequence) == (3, 4)


def test_appends_past_the_room_meet_backpressure_until_the_pipeline_consumes(
    tmp_path: Path,
) -> None:
    record = HEADER_BYTES + len(body(0))
    now = [0.0]
    with IngestLog(
        tmp_path, max_unconsumed_bytes=3 * record, segment_bytes=1, monotonic=lambda: now[0]
    ) as log:
        for n in range(3):
            log.append(body(n), ARRIVED)
        assert log.unconsumed_bytes == 3 * record
        with pytest.raises(Backpressure, match="not checkpointed yet") as refused:
            log.append(body(3), ARRIVED)
        assert refused.value.retry_after == timedelta(seconds=5)
        with pytest.raises(Backpressure):
            log.check_room(len(body(3)))

        log.compact(1)
        now[0] = 10.0
        log.compact(2)  # one record consumed in 10 s
        assert log.unconsumed_bytes == record
        log.append(body(3), ARRIVED)
        log.append(body(4), ARRIVED)
        with pytest.raises(Backpressure) as refused:
            log.append(body(5), ARRIVED)
        assert refused.value.retry_after == timedelta(seconds=10)
        assert log.next_sequence == 5


def test_a_body_larger_than_the_whole_room_is_refused_as_such(tmp_path: Path) -> None:
    with (
        IngestLog(tmp_path, max_unconsumed_bytes=HEADER_BYTES + 10) as log,
        pytest.raises(IngestLogError, match="larger than the ingest log's room") as refused,
    ):
        log.append(b"x" * 11, ARRIVED)
    assert not isinstance(refused.value, Backpressure)


def test_the_first_record_into_an_empty_room_always_fits(tmp_path: Path) -> None:
    with IngestLog(tmp_path, max_unconsumed_bytes=HEADER_BYTES + 10, segment_bytes=1) as log:
        log.append(b"x" * 10, ARRIVED)
        with pytest.raises(Backpressure):
            log.append(b"y", ARRIVED)
        log.compact(1)
        assert log.append(b"x" * 10, ARRIVED) == range(1, 2)


def test_closing_wakes_a_waiting_reader_and_refuses_appends(log: IngestLog) -> None:
    woke = threading.Event()

    def wait() -> None:
        log.wait_for(0, timeout=10)
        woke.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    log.close()
    waiter.join(5)
    assert woke.is_set()
    with pytest.raises(IngestLogError, match="closed"):
        log.append(body(0), ARRIVED)
