"""Waiting for a table source's background refreshes, without sleeping longer than needed."""

from __future__ import annotations

import time
from collections.abc import Callable

from sensorstream.sources.tables import TableSource, TableUpdate
from sensorstream.sources.tables.refresh import RefreshingTableSource

TIMEOUT_S = 10.0  # generous: the machine running the tests may be busy


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    """Return once ``condition()`` holds; fail the test if it does not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.005)


def next_update(table: TableSource, timeout_s: float = TIMEOUT_S) -> TableUpdate:
    """The next update ``table.poll()`` gives; fail the test if none comes within ``timeout_s``."""
    found: list[TableUpdate] = []

    def polled() -> bool:
        update = table.poll()
        if update is not None:
            found.append(update)
        return bool(found)

    wait_until(polled, f"an update of table {table.name!r} (last_error: {table.last_error})")
    return found[0]


def wait_for_refreshes(table: RefreshingTableSource, count: int = 3) -> None:
    """Return once ``count`` more refreshes than so far have finished, failed ones too."""
    target = table.refresh_count + count
    wait_until(lambda: table.refresh_count >= target, f"{count} refreshes of {table.name!r}")


def last_error(table: TableSource) -> str | None:
    """``table.last_error`` as it is now (a call, so mypy does not keep an earlier narrowing)."""
    return table.last_error
