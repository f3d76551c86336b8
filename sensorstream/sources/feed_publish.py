"""A scenario's feeds published to a broker, and its pipeline's sources that read them back.

:class:`FeedPublishing` sends the reports of every stream's feed (the same reports a
:class:`~sensorstream.sources.feed.FeedSource` makes, as the same JSON lines) through one
:class:`~sensorstream.sources.simulator_publish.Publisher` per stream, in background
thread of its own. A feed is a pure function of time, so it is paced like the feed source:
batch ``i`` holds the reports of event time ``[i * interval, (i + 1) * interval)``, sent
once the clock reaches its end when live, at once otherwise; the streams' reports of one
batch go out together, so a join's two sides stay as close as they are in a feed run.

:class:`UntilPublished` wraps the source a pipeline reads a stream through (MQTT, Kafka):
it ends once publishing has finished and the source has read as many lines as were
published on its stream, so a bounded run through a broker closes its windows at the end
like the bounded feed run does, and stores the same results.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sensorstream.errors import SourceError
from sensorstream.readings import ReadingFormat
from sensorstream.sources.base import (
    Clock,
    Identity,
    InputChange,
    PartitionListener,
    Source,
    SourceBatch,
)
from sensorstream.sources.feed import FeedSource, FeedSourceSettings, payload_lines
from sensorstream.sources.feeds.base import KEY, Feed, epoch_us
from sensorstream.sources.simulator_publish import Publisher

__all__ = ["FeedPublishing", "UntilPublished"]

# How long publishing waits for the pipeline's sources to be ready (an MQTT subscription).
READY_TIMEOUT_S = 30.0


def _now() -> datetime:
    return datetime.now().astimezone()


class FeedPublishing:
    """Publishes every stream's feed through its publisher, in a thread; see the module.

    Args:
        feeds: Each stream's feed source settings, as the scenario's embedded run has them
            (``live``, ``duration``, ``start``, ``seed`` and ``malformed_fraction`` apply).
        publishers: Each stream's publisher.
        device_topic: Turns a report's device id (its feed's ``_key``) into what its
            publisher is given as the device (an MQTT topic level, escaped).
        ready: Waited for before the first report is sent (the pipeline subscribed).
        clock: The time now (live pacing and, without ``start``, the first report's time).
    """

    def __init__(
        self,
        feeds: Mapping[str, FeedSourceSettings],
        publishers: Mapping[str, Publisher],
        *,
        device_topic: Callable[[str], str] = str,
        ready: Callable[[], None] | None = None,
        clock: Clock = _now,
    ) -> None:
        self.sources = {stream: settings.build() for stream, settings in feeds.items()}
        self.publishers = dict(publishers)
        self.device_topic = device_topic
        self.ready = ready
        self.clock = clock
        self.sent = dict.fromkeys(self.sources, 0)  # lines published, per stream
        self.failure: str | None = None
        self.finished = threading.Event()  # every report sent and acknowledged (or failed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        first = next(iter(self.sources.values()))
        self.origin_us = first.origin_us(clock)  # the streams share their first moment
        self.interval_us = min(source.interval_us for source in self.sources.values())
        ends = [
            None if source.duration is None else self.origin_us + _micros(source.duration)
            for source in self.sources.values()
        ]
        self.end_us = None if None in ends else max(e for e in ends if e is not None)

    @property
    def live(self) -> bool:
        """Paced by the clock (any stream's feed is live)."""
        return any(source.live for source in self.sources.values())

    def start(self) -> FeedPublishing:
        """Start publishing in the background."""
        self._thread = threading.Thread(target=self._run, name="feed-publishing", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop publishing, wait for what was sent to be acknowledged, and disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        elif not self.finished.is_set():  # never started: only the connections to close
            self._close()
            self.finished.set()

    def check(self) -> None:
        """Raise :class:`~sensorstream.errors.SourceError` if publishing failed."""
        if self.failure is not None:
            raise SourceError(self.failure)

    def published(self, stream: str) -> int | None:
        """Lines published on ``stream`` once publishing has finished; None until then."""
        return self.sent[stream] if self.finished.is_set() and self.failure is None else None

    def _run(self) -> None:
        try:
            if self.ready is not None:
                self.ready()
            self._publish()
        except Exception as error:  # told to the pipeline through check()
            self.failure = str(error) if isinstance(error, SourceError) else repr(error)
        finally:
            self._close()
            self.finished.set()

    def _publish(self) -> None:
        batch = self.origin_us // self.interval_us
        # Timed from the run's start, as the feed source times them (a start burst, a
        # disruption some minutes in).
        feeds = {s: source.feed.starting_at(self.origin_us) for s, source in self.sources.items()}
        while not self._stop.is_set():
            low = max(batch * self.interval_us, self.origin_us)
            high = (batch + 1) * self.interval_us
            if self.end_us is not None:
                if low >= self.end_us:
                    return
                high = min(high, self.end_us)
            if self.live and not self._wait_until(high):
                return
            for stream, source in self.sources.items():
                self._send(stream, source, feeds[stream], low, high)
            batch += 1

    def _send(self, stream: str, source: FeedSource, feed: Feed, low: int, high: int) -> None:
        if source.duration is not None and low >= self.origin_us + _micros(source.duration):
            return
        reports = feed.reports(low, high, source.seed)
        if reports.is_empty():
            return
        lines = payload_lines(reports, source.malformed_fraction, source.seed).splitlines()
        devices = [self.device_topic(str(key)) for key in reports[KEY].to_list()]
        self.publishers[stream].send(lines, devices)
        self.sent[stream] += len(lines)

    def _wait_until(self, due_us: int) -> bool:
        """Sleep until the clock reaches ``due_us``; False if stopped meanwhile."""
        while (left_us := due_us - epoch_us(self.clock())) > 0:
            if self._stop.wait(min(left_us, self.interval_us) / 1e6):
                return False
        return True

    def _close(self) -> None:
        for publisher in self.publishers.values():
            try:
                publisher.close()
            except SourceError as error:
                self.failure = self.failure or str(error)


class UntilPublished(Source):
    """A stream's source that ends once it read all that was published on it; see the module.

    Everything else is the wrapped source's: its partitions, positions, identity and
    checkpoints. A publishing failure stops the pipeline with its message.
    """

    def __init__(self, inner: Source, publishing: FeedPublishing, stream: str) -> None:
        self.inner, self.publishing, self.stream = inner, publishing, stream
        self.name = inner.name
        self.dynamic = inner.dynamic

    def read(
        self, fmt: ReadingFormat, resume_after: Mapping[int, int], clock: Clock
    ) -> Iterator[SourceBatch | None]:
        """The wrapped source's batches, until the published lines were all read."""
        lines = 0
        items = iter(self.inner.read(fmt, resume_after, clock))
        try:
            for item in items:
                self.publishing.check()
                if item is not None:
                    lines += item.lines
                yield item
                published = self.publishing.published(self.stream)
                if published is not None and lines >= published:
                    return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def partitions(self) -> list[int]:
        """The wrapped source's."""
        return self.inner.partitions()

    def listen(self, listener: PartitionListener) -> None:
        """The wrapped source's."""
        self.inner.listen(listener)

    def identity(self) -> Identity:
        """The wrapped source's."""
        return self.inner.identity()

    def compare(self, recorded: Mapping[str, Any]) -> InputChange | None:
        """The wrapped source's."""
        return self.inner.compare(recorded)

    def use_checkpoint_dir(self, folder: Path, stream: str) -> None:
        """The wrapped source's."""
        self.inner.use_checkpoint_dir(folder, stream)

    def checkpointed(self, positions: Mapping[int, int]) -> None:
        """The wrapped source's."""
        self.inner.checkpointed(positions)

    def prepare(self, fmt: ReadingFormat) -> None:
        """The wrapped source's."""
        self.inner.prepare(fmt)

    def close(self) -> None:
        """The wrapped source's."""
        self.inner.close()


def _micros(value: timedelta) -> int:
    return value // timedelta(microseconds=1)
