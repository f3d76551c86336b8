"""What the ingest endpoint decoded, taken by the http source instead of decoding it again."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from polars.testing import assert_frame_equal

from sensorstream.readings import ReadingFormat, decode_json_lines
from sensorstream.sources import HttpSource, SourceBatch
from sensorstream.sources.ingest_cache import ORIGIN, DecodedCache
from sensorstream.sources.ingest_log import IngestLog

FORMAT = ReadingFormat(measurements={"temperature": "float"})
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
BODIES = [
    b'{"device_id":"a","ts":1717243200000,"temperature":1}\n{oops\n',
    b'{"device_id":"b","ts":1717243200001,"temperature":2}\n\n{"ts": 5}\n',
]


def read(folder: Path, cache: DecodedCache | None) -> list[SourceBatch]:
    http = HttpSource(log_dir=folder, follow=False)
    if cache is not None:
        http.decoded = cache
    with closing(http):
        http.prepare(FORMAT)
        return [b for b in http.read(FORMAT, {}, lambda: NOW) if b is not None]


def test_a_taken_body_is_exactly_what_decoding_it_again_gives(tmp_path: Path) -> None:
    cache = DecodedCache()
    with IngestLog(tmp_path) as log:
        for body in BODIES:
            decoded = decode_json_lines(body, FORMAT, arrived_at=NOW, origin=ORIGIN)
            cache.put(log.append(body, NOW).start, len(body), decoded)
    assert len(cache) == 2

    [cached] = read(tmp_path, cache)
    [again] = read(tmp_path, None)

    assert len(cache) == 0
    assert_frame_equal(cached.readings, again.readings)
    assert_frame_equal(cached.dead_letters, again.dead_letters)
    origins = cached.dead_letters["origin"].to_list()
    assert origins == ["line 2 of request 0", "line 3 of request 2"]


def test_the_budget_drops_the_oldest_and_what_was_read_is_never_kept() -> None:
    decoded = decode_json_lines(BODIES[0], FORMAT, arrived_at=NOW, origin=ORIGIN)
    cache = DecodedCache(budget_bytes=2 * len(BODIES[0]))
    for first in (0, 2, 4):
        cache.put(first, len(BODIES[0]), decoded)
    assert (cache.take(0), len(cache)) == (None, 2)  # pushed out by the third
    cache.discard_before(4)
    assert (cache.take(2), len(cache)) == (None, 1)
    cache.put(3, len(BODIES[0]), decoded)  # the source read past it already
    assert cache.take(3) is None
    assert cache.take(4) is not None
