"""Read ahead in a background thread, so the next chunk is decoded while this one is processed.

Reading and decoding a chunk is blocking work that mostly runs inside Polars and the file
system, both of which release the GIL; running it one or two chunks ahead of the caller
overlaps it with the caller's own work (windows, sinks) instead of adding to it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# How often a blocked producer checks whether the consumer has gone away.
_POLL_S = 0.05
# How long closing the consumer waits for the producer to notice, at most.
_JOIN_TIMEOUT_S = 10.0


@dataclass
class _Item(Generic[T]):
    value: T


@dataclass
class _Failed:
    error: BaseException


class _Done:
    pass


def prefetch(
    items: Generator[T, None, None], depth: int, name: str = "prefetch"
) -> Generator[T, None, None]:
    """Yield what ``items`` yields, produced in a background thread up to ``depth`` items ahead.

    With ``depth`` 0 nothing runs in the background. An exception in the producer is raised
    to the consumer at the point it happened; closing the consumer stops the producer and
    closes ``items`` (in the producer's thread, so files are closed where they were read).

    >>> list(prefetch((n * n for n in range(4)), depth=2))
    [0, 1, 4, 9]
    """
    if depth <= 0:
        yield from items
        return
    channel: queue.Queue[_Item[T] | _Failed | _Done] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(message: _Item[T] | _Failed | _Done) -> bool:
        while not stop.is_set():
            try:
                channel.put(message, timeout=_POLL_S)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        try:
            for value in items:
                if not offer(_Item(value)):
                    return
            offer(_Done())
        except BaseException as error:  # handed to the consumer, raised there
            offer(_Failed(error))
        finally:
            items.close()

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            message = channel.get()
            if isinstance(message, _Done):
                return
            if isinstance(message, _Failed):
                raise message.error
            yield message.value
    finally:
        stop.set()
        worker.join(timeout=_JOIN_TIMEOUT_S)
