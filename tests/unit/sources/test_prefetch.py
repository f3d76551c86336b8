from __future__ import annotations

import threading
from collections.abc import Generator
from contextlib import closing

import pytest

from sensorstream.sources.prefetch import prefetch


def numbers(count: int, log: list[str], fail_at: int | None = None) -> Generator[int, None, None]:
    try:
        for n in range(count):
            if n == fail_at:
                message = f"cannot read item {n}"
                raise OSError(message)
            log.append(f"made {n} in {threading.current_thread().name}")
            yield n
    finally:
        log.append("closed")


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_items_come_out_in_order(depth: int) -> None:
    log: list[str] = []
    assert list(prefetch(numbers(50, log), depth)) == list(range(50))
    assert log[-1] == "closed"


def test_items_are_made_in_a_background_thread() -> None:
    log: list[str] = []
    list(prefetch(numbers(2, log), depth=1, name="reader"))
    assert log[0] == "made 0 in reader"


def test_an_error_reaches_the_consumer_after_the_items_before_it() -> None:
    log: list[str] = []
    received: list[int] = []
    with pytest.raises(OSError, match="cannot read item 3"):
        received.extend(prefetch(numbers(10, log, fail_at=3), depth=2))
    assert received == [0, 1, 2]


def test_closing_the_consumer_early_stops_and_closes_the_producer() -> None:
    log: list[str] = []
    with closing(prefetch(numbers(1000, log), depth=2)) as items:
        assert next(items) == 0
    assert log[-1] == "closed"
    assert len(log) < 10
