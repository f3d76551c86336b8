"""The HTTP source: posted lines read back from the ingest log, in order, resumed exactly.

Served by a running pipeline's API: tests/unit/runtime/test_serving.py.
"""

from __future__ import annotations

import threading
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sensorstream.errors import ConfigError
from sensorstream.readings import ReadingFormat
from sensorstream.sources import SOURCES, HttpSource, HttpSourceSettings, SourceBatch
from sensorstream.sources.ingest_log import IngestLog

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
FORMAT = ReadingFormat(measurements={"temperature": "float"})


def clock() -> datetime:
    return NOW


def reading(n: int) -> bytes:
    return b'{"device_id":"d%d","ts":%d,"temperature":%d.5}\n' % (n % 2, 1_717_243_200_000 + n, n)


def post(log_dir: Path, *bodies: bytes) -> None:
    with IngestLog(log_dir) as log:
        for number, body in enumerate(bodies):
            log.append(body, NOW + timedelta(seconds=number))


def source(log_dir: Path, **options: object) -> HttpSource:
    settings = HttpSourceSettings.model_validate({"log_dir": log_dir, "serve": False, **options})
    return settings.build()


def read_all(http: HttpSource, resume_after: dict[int, int] | None = None) -> list[SourceBatch]:
    with closing(http.read(FORMAT, resume_after or {}, clock)) as items:
        return [item for item in items if item is not None]


def test_it_is_registered_with_settings_beside_it() -> None:
    assert SOURCES["http"] is HttpSource
    assert isinstance(HttpSourceSettings().build(), HttpSource)


def test_posted_requests_come_back_in_order_each_line_accounted_for(tmp_path: Path) -> None:
    post(tmp_path, reading(0) + b"{oops\n" + reading(1), b"\n" + reading(2) + b'{"ts": 1}')

    with closing(source(tmp_path, follow=False)) as http:
        batches = read_all(http)

    assert [b.position for b in batches] == [6]  # both requests fit one batch
    [batch] = batches
    assert (batch.lines, batch.payloads, batch.blank) == (6, 5, 1)
    assert batch.readings["temperature"].to_list() == [0.5, 1.5, 2.5]
    dead = batch.dead_letters.select("origin", "reason_code", "arrived_at").rows()
    assert dead == [
        ("line 2 of request 0", "invalid_json", NOW),
        ("line 3 of request 3", "missing_device_id", NOW + timedelta(seconds=1)),
    ]


def test_a_batch_holds_whole_requests_up_to_about_batch_bytes(tmp_path: Path) -> None:
    post(tmp_path, *(reading(n) * 10 for n in range(6)))

    with closing(source(tmp_path, follow=False, batch_bytes=len(reading(0)) * 25)) as http:
        positions = [b.position for b in read_all(http)]

    assert positions == [30, 60]


def test_resuming_inside_a_request_skips_its_lines_already_read(tmp_path: Path) -> None:
    post(tmp_path, reading(0) + reading(1) + b"{oops\n" + reading(3))

    with closing(source(tmp_path, follow=False)) as http:
        [batch] = read_all(http, {0: 2})

    assert batch.lines == 2
    assert batch.readings["temperature"].to_list() == [3.5]
    assert batch.dead_letters["origin"].to_list() == ["line 3 of request 0"]


def test_caught_up_it_yields_none_until_the_next_post(tmp_path: Path) -> None:
    with IngestLog(tmp_path) as log:
        log.append(reading(0), NOW)
        http = HttpSource(serve=False)
        http._log = log  # the log a server in this process would append to
        items = http.read(FORMAT, {}, clock)
        try:
            first = next(items)
            assert first is not None
            assert first.position == 1
            started = time.monotonic()
            assert next(items) is None
            assert time.monotonic() - started < 1
            threading.Timer(0.02, log.append, (reading(1) + reading(2), NOW)).start()
            later = next(item for item in items if item is not None)
            assert later.position == 3
        finally:
            items.close()


def test_the_log_lives_beside_the_checkpoints_unless_log_dir_says(tmp_path: Path) -> None:
    default, named, given = HttpSource(), HttpSource(), HttpSource(log_dir=tmp_path / "mine")
    default.use_checkpoint_dir(tmp_path / ".sensorstream" / "weather", "readings")
    named.use_checkpoint_dir(tmp_path / ".sensorstream" / "weather", "doors")
    given.use_checkpoint_dir(tmp_path / ".sensorstream" / "weather", "readings")

    assert default.log_dir == tmp_path / ".sensorstream" / "weather.ingest-log"
    assert named.log_dir == tmp_path / ".sensorstream" / "weather.doors.ingest-log"
    assert given.log_dir == tmp_path / "mine"
    with pytest.raises(ConfigError, match="needs a folder for its ingest log"):
        HttpSource().log()


def test_a_checkpoint_recognises_its_log_grown_or_not(tmp_path: Path) -> None:
    post(tmp_path / "a", reading(0))
    post(tmp_path / "b", reading(0))
    with closing(source(tmp_path / "a")) as http:
        recorded = http.identity()
        assert http.compare(recorded) is None
    post(tmp_path / "a", reading(1))
    with closing(source(tmp_path / "a")) as http:
        change = http.compare(recorded)
        assert change is not None
        assert change.grown
        shrunk = http.compare({**recorded, "next_sequence": 5})
        assert shrunk is not None
        assert not shrunk.grown
        assert "fewer than the 5" in shrunk.description
    with closing(source(tmp_path / "b")) as http:
        other = http.compare(recorded)
        assert other is not None
        assert not other.grown
        assert "not the one the checkpoint was taken of" in other.description


def test_a_saved_checkpoint_frees_the_log_before_its_position(tmp_path: Path) -> None:
    with IngestLog(tmp_path, segment_bytes=1) as log:
        for n in range(4):
            log.append(reading(n), NOW)
    with closing(source(tmp_path)) as http:
        http.checkpointed({0: 3})
        assert http.log().first_sequence == 3  # the segments of lines 0 to 2 are gone


def test_settings_keep_room_in_the_log_for_the_largest_request() -> None:
    with pytest.raises(ValueError, match=r"max_request_bytes .* must be below"):
        HttpSourceSettings(max_request_bytes="16MiB", max_unconsumed_bytes="16MiB")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must leave room"):
        HttpSource(max_request_bytes=100, max_unconsumed_bytes=100)
