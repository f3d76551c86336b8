"""Refreshing a reference table in a background thread, so a slow refresh never stalls a pipeline.

The thread wakes every ``interval`` (or when told to, by a PostgreSQL notification), asks
the source what changed, and queues what it found; :meth:`RefreshingTableSource.poll` only
takes from that queue. A refresh that raises keeps the last good content: the error is
logged once (again only when it changes), kept in ``last_error`` until a refresh succeeds,
and the next wake-up tries again.
"""

from __future__ import annotations

import logging
import queue
import threading
from abc import abstractmethod
from collections import deque
from datetime import timedelta

from sensorstream.errors import ConfigError, SensorstreamError
from sensorstream.sources.tables.base import TableSource, TableUpdate

logger = logging.getLogger("sensorstream.tables")

# How long closing a source waits for its thread to finish the refresh it is in, at most.
_JOIN_TIMEOUT_S = 10.0


class RefreshingTableSource(TableSource):
    """A table source whose refreshes run in a daemon thread and wait in a queue for :meth:`poll`.

    Subclasses implement :meth:`read_table` (the whole table now) and :meth:`read_changes`
    (what changed since the last read, or None). Both run under one lock, in the caller's
    thread for :meth:`load` and in the refresh thread otherwise, so a subclass may keep
    what it compares against (a hash, a watermark) in plain attributes.

    Args:
        name: The table's name, for messages.
        refreshes: Whether to start the refresh thread after the first load.
        interval: How long the thread sleeps between refreshes; None: it refreshes only when
            :meth:`wake` is called.
    """

    def __init__(self, name: str, *, refreshes: bool, interval: timedelta | None) -> None:
        if interval is not None and interval <= timedelta(0):
            msg = f"table {name!r}: the refresh interval must be above 0, got {interval}"
            raise ConfigError(msg)
        self.name = name
        self.interval = interval
        self.refreshes = refreshes
        self.last_error = None
        self.refresh_count = 0  # refreshes tried, failed ones too: for tests and metrics
        self._lock = threading.Lock()
        self._queued: queue.SimpleQueue[TableUpdate] = queue.SimpleQueue()
        self._pending: deque[TableUpdate] = deque()  # taken from the queue, not yet polled
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def read_table(self) -> TableUpdate:
        """The whole table now, remembered as what later changes are compared against."""

    @abstractmethod
    def read_changes(self) -> TableUpdate | None:
        """What changed since the last read (then remembered), or None if nothing did."""

    def finish_refreshing(self) -> None:
        """Release what the refresh thread holds (a connection); runs in that thread, last."""

    def load(self) -> TableUpdate:
        """The whole table now; the first load starts the refresh thread, if it refreshes.

        Changes queued before this load are dropped: the load is newer than all of them.
        """
        with self._lock:
            update = self.read_table()
            self._drop_queued()
        if self.refreshes and self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(
                target=self._run, name=f"refresh table {self.name}", daemon=True
            )
            self._thread.start()
        return update

    def poll(self) -> TableUpdate | None:
        """The next change the refresh thread found, oldest first, or None; never blocks.

        A full update makes every update queued before it moot, so those are skipped.
        """
        while True:
            try:
                self._pending.append(self._queued.get_nowait())
            except queue.Empty:
                break
        fulls = [index for index, update in enumerate(self._pending) if update.full]
        for _ in range(fulls[-1] if fulls else 0):
            self._pending.popleft()
        return self._pending.popleft() if self._pending else None

    def wake(self) -> None:
        """Refresh now rather than at the next interval (a notification said it changed)."""
        self._wake.set()

    def close(self) -> None:
        """Stop the refresh thread, waiting for the refresh it is in, if any (10 s at most)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=_JOIN_TIMEOUT_S)

    def report_error(self, message: str) -> None:
        """Keep ``message`` as ``last_error``, and log it unless it is the one already kept."""
        if message != self.last_error:
            logger.warning(
                "table %r: refresh failed, keeping the last content: %s", self.name, message
            )
        self.last_error = message

    def _drop_queued(self) -> None:
        while True:
            try:
                self._queued.get_nowait()
            except queue.Empty:
                break
        self._pending.clear()

    def _run(self) -> None:
        timeout = None if self.interval is None else self.interval.total_seconds()
        try:
            while not self._stop.is_set():
                self._wake.wait(timeout)
                # Cleared before reading: a wake-up that comes during the read is for a
                # change the read may have missed, so it must cause another read.
                self._wake.clear()
                if self._stop.is_set():
                    return
                self._refresh()
        finally:
            self.finish_refreshing()

    def _refresh(self) -> None:
        try:
            with self._lock:
                update = self.read_changes()
                if update is not None:
                    self._queued.put(update)
        # The refresh thread must outlive any error: the pipeline keeps the last good
        # content and the next interval tries again.
        except Exception as error:
            self.report_error(str(error) if isinstance(error, SensorstreamError) else repr(error))
        else:
            if self.last_error is not None:
                logger.info("table %r: refreshing works again", self.name)
            self.last_error = None
        finally:
            self.refresh_count += 1
