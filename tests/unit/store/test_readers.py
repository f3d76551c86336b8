"""Stores kept between requests: refreshed when taken, one caller at a time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from sensorstream.errors import StoreError
from sensorstream.readings import ReadingFormat
from sensorstream.sinks import DuckDBSink
from sensorstream.sinks.base import PipelineInfo, SinkBatch
from sensorstream.store import Store
from sensorstream.store.readers import StoreReaders

T0 = datetime(2024, 1, 1, tzinfo=UTC)
FORMAT = ReadingFormat(measurements={"temperature": "float"})


def _readings(count: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": ["a"] * count,
            "ts": [T0 + timedelta(seconds=i) for i in range(count)],
            "temperature": [float(i) for i in range(count)],
        },
        schema=FORMAT.canonical_schema(),
    )


@pytest.fixture
def sink(tmp_store: Path) -> Iterator[DuckDBSink]:
    running = DuckDBSink(tmp_store, compaction=None)
    running.open(PipelineInfo("fleet", (), FORMAT.canonical_schema()))
    running.write(SinkBatch(0, 1, readings=_readings(2)))
    running.flush()
    yield running
    running.close()


def _count(store: Store) -> int:
    return int(store.sql("SELECT count(*) AS n FROM readings")["n"].item())


def test_a_store_sees_segments_flushed_after_it_opened_once_refreshed(sink: DuckDBSink) -> None:
    with Store(sink.path, sink.reader()) as store:
        sink.write(SinkBatch(0, 2, readings=_readings(3)))
        sink.flush()
        assert _count(store) == 2  # the view is what it was when made
        store.refresh()
        assert _count(store) == 5
        assert store.reading_schema()["temperature"] == pl.Float64()


def test_readers_reuse_a_store_and_make_its_view_again_only_when_segments_change(
    sink: DuckDBSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[int] = []
    register = Store._register

    def counted(store: Store, files: tuple[Path, ...] | None) -> None:
        made.append(1)
        register(store, files)

    monkeypatch.setattr(Store, "_register", counted)
    readers = StoreReaders(sink.path, sink.reader)
    with readers.open() as first:
        assert _count(first) == 2
    with readers.open() as again:
        assert again is first
        assert _count(again) == 2
    assert len(made) == 1
    sink.write(SinkBatch(0, 2, readings=_readings(3)))
    sink.flush()
    with readers.open() as refreshed:
        assert refreshed is first
        assert _count(refreshed) == 5
    assert len(made) == 2
    readers.close()


def test_a_store_in_use_is_nobody_elses(sink: DuckDBSink) -> None:
    readers = StoreReaders(sink.path, sink.reader)
    with readers.open() as first, readers.open() as second:
        assert first is not second
        assert _count(first) == _count(second) == 2
    readers.close()


def test_a_refused_query_keeps_the_store_and_anything_else_closes_it(sink: DuckDBSink) -> None:
    readers = StoreReaders(sink.path, sink.reader)
    with pytest.raises(StoreError), readers.open() as store:
        store.sql("SELECT nothing FROM readings")
    with readers.open() as again:
        assert again is store
    with pytest.raises(KeyError), readers.open() as store:
        raise KeyError("a bug in the caller")
    with readers.open() as fresh:
        assert fresh is not store
        assert _count(fresh) == 2
    readers.close()
