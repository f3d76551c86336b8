"""The refresh thread every refreshing table source shares: queueing, polling, errors, closing."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from sensorstream.errors import ConfigError, SourceError
from sensorstream.sources.tables import TableUpdate
from sensorstream.sources.tables.refresh import RefreshingTableSource
from tests.unit.sources.tables.helpers import last_error, wait_for_refreshes, wait_until

LOADED_AT = datetime(2024, 6, 1, tzinfo=UTC)


def update(version: str, *, full: bool) -> TableUpdate:
    return TableUpdate(
        pl.DataFrame({"v": [version]}), full=full, loaded_at=LOADED_AT, version=version
    )


class Scripted(RefreshingTableSource):
    """Refreshes only when woken; each refresh hands over the next scripted result."""

    def __init__(
        self, *results: TableUpdate | Exception | None, interval: timedelta | None = None
    ) -> None:
        super().__init__("scripted", refreshes=True, interval=interval)
        self.results = deque(results)

    def read_table(self) -> TableUpdate:
        return update("loaded", full=True)

    def read_changes(self) -> TableUpdate | None:
        result = self.results.popleft()
        if isinstance(result, Exception):
            raise result
        return result

    def refresh(self, times: int = 1) -> None:
        """Wake the refresh thread ``times`` times, each time waiting for its refresh."""
        for _ in range(times):
            self.refresh_once()

    def refresh_once(self) -> None:
        target = self.refresh_count + 1
        self.wake()
        wait_until(lambda: self.refresh_count >= target, "a refresh")


def versions(table: Scripted) -> list[str]:
    found = []
    while (polled := table.poll()) is not None:
        found.append(polled.version)
    return found


def test_poll_gives_the_refreshes_updates_in_order_then_none() -> None:
    table = Scripted(update("a", full=False), None, update("b", full=False))
    table.load()
    table.refresh(3)
    assert versions(table) == ["a", "b"]
    assert table.poll() is None
    table.close()


def test_a_full_update_makes_those_queued_before_it_moot() -> None:
    table = Scripted(
        update("full 1", full=True),
        update("rows 1", full=False),
        update("full 2", full=True),
        update("rows 2", full=False),
    )
    table.load()
    table.refresh(4)
    assert versions(table) == ["full 2", "rows 2"]
    table.close()


def test_a_failed_refresh_is_recorded_and_the_next_one_still_runs() -> None:
    table = Scripted(SourceError("table 'scripted': the disk is gone"), update("back", full=True))
    table.load()
    table.refresh()
    assert table.last_error == "table 'scripted': the disk is gone"
    assert table.poll() is None
    table.refresh()
    assert last_error(table) is None
    assert versions(table) == ["back"]
    table.close()


def test_an_unexpected_error_does_not_stop_the_refresh_thread() -> None:
    table = Scripted(ZeroDivisionError("bug"), update("fine", full=True))
    table.load()
    table.refresh()
    assert table.last_error == "ZeroDivisionError('bug')"
    table.refresh()
    assert versions(table) == ["fine"]
    table.close()


def test_a_load_drops_the_updates_queued_before_it() -> None:
    table = Scripted(update("stale", full=False))
    table.load()
    table.refresh()
    assert table.load().version == "loaded"
    assert table.poll() is None
    table.close()


def test_nothing_refreshes_before_the_first_load() -> None:
    table = Scripted(update("early", full=True))
    table.wake()
    assert table.poll() is None
    assert table.refresh_count == 0
    assert len(table.results) == 1


def test_close_stops_the_refresh_thread() -> None:
    table = Scripted()
    table.load()
    thread = table._thread
    assert thread is not None
    assert thread.is_alive()
    table.close()
    assert not thread.is_alive()


def test_an_interval_refreshes_without_being_woken() -> None:
    table = Scripted(*([None] * 1000), interval=timedelta(milliseconds=10))
    table.load()
    wait_for_refreshes(table, 3)
    table.close()


def test_an_interval_must_be_above_zero() -> None:
    with pytest.raises(ConfigError, match="table 'scripted': the refresh interval must be above 0"):
        Scripted(interval=timedelta(0))
