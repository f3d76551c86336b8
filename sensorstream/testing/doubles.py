"""Runtime doubles: a source and a sink in memory, a clock moved by hand, a simulated crash."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from sensorstream.readings import ReadingFormat, decode_json_lines
from sensorstream.sinks.base import FROM_START, PipelineInfo, Sink, SinkBatch
from sensorstream.sources.base import Clock, Source, SourceBatch


class Crash(RuntimeError):
    """Raised by :class:`ListSource` to simulate a process dying mid-stream."""


@dataclass
class ManualClock:
    """A processing-time clock that only moves when told to.

    >>> from datetime import UTC, datetime, timedelta
    >>> clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    >>> clock.advance(timedelta(seconds=5)).second
    5
    """

    now: datetime

    def __call__(self) -> datetime:
        """The current (manual) time."""
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward and return the new time."""
        self.now += delta
        return self.now


class ListSource(Source):
    """Batches of JSON lines given up front; ``None`` items stand for "nothing right now".

    Each batch's position is its index. ``crash_at`` raises :class:`Crash` before yielding
    that batch, once, to test recovery; ``on_idle`` runs at each ``None`` (to move a clock);
    ``endless`` keeps yielding ``None`` after the last batch, like a live source gone quiet.
    """

    def __init__(
        self,
        batches: Sequence[Sequence[str] | None],
        *,
        crash_at: int | None = None,
        on_idle: Callable[[], None] | None = None,
        endless: bool = False,
    ) -> None:
        self.batches = list(batches)
        self.crash_at = crash_at
        self.on_idle = on_idle
        self.endless = endless

    def read(
        self, fmt: ReadingFormat, resume_after: Mapping[int, int], clock: Clock
    ) -> Iterator[SourceBatch | None]:
        """Yield the batches after ``resume_after[0]``."""
        start = resume_after.get(0, -1) + 1
        for index in range(start, len(self.batches)):
            if index == self.crash_at:
                self.crash_at = None
                msg = f"simulated crash before batch {index}"
                raise Crash(msg)
            lines = self.batches[index]
            if lines is None:
                if self.on_idle is not None:
                    self.on_idle()
                yield None
                continue
            # Every line ends with a newline, so a last empty line is a blank line too.
            text = "".join(f"{payload}\n" for payload in lines)
            decoded = decode_json_lines(
                text.encode(), fmt, arrived_at=clock(), origin=f"batch {index}"
            )
            yield SourceBatch(
                0,
                index,
                decoded.readings,
                decoded.dead_letters,
                decoded.payloads,
                blank=decoded.blank,
            )
        while self.endless:
            if self.on_idle is not None:
                self.on_idle()
            yield None


class ListSink(Sink):
    """Keeps everything in memory, with the same idempotence contract as a real sink."""

    def __init__(self) -> None:
        self.info: PipelineInfo | None = None
        self.readings: list[tuple[int, int, pl.DataFrame]] = []
        self.dead_letters: list[tuple[int, int, pl.DataFrame]] = []
        self.late: list[tuple[int, int, pl.DataFrame]] = []
        self.results: dict[str, dict[tuple[object, ...], dict[str, object]]] = {}
        self.alerts: dict[str, dict[str, dict[str, object]]] = {}  # rule -> transition id -> row
        self.flushes = 0
        # Step -> result key -> the partition that wrote it (a restart from start forgets it).
        self.owners: dict[str, dict[tuple[object, ...], int]] = {}

    def open(self, pipeline: PipelineInfo) -> None:
        """Remember the pipeline's steps (for result keys)."""
        self.info = pipeline

    def restore(self, positions: Mapping[int, int]) -> None:
        """Drop these partitions' raw rows written after their checkpointed positions."""
        for store in (self.readings, self.dead_letters, self.late):
            store[:] = [e for e in store if e[0] not in positions or e[1] <= positions[e[0]]]
        from_start = {p for p, position in positions.items() if position == FROM_START}
        for step, owners in self.owners.items():
            for key in [k for k, partition in owners.items() if partition in from_start]:
                self.results[step].pop(key, None)
                del owners[key]

    def write(self, batch: SinkBatch) -> None:
        """Append raw rows; apply result upserts and deletes in order."""
        assert self.info is not None, "open() first"
        for store, frame in (
            (self.readings, batch.readings),
            (self.dead_letters, batch.dead_letters),
            (self.late, batch.late),
        ):
            if frame is not None and frame.height:
                store.append((batch.partition, batch.position, frame))
        for rule, frame in batch.alerts.items():
            transitions = self.alerts.setdefault(rule, {})
            for row in frame.iter_rows(named=True):
                transitions[row["transition_id"]] = row  # a replayed transition replaces itself
        keys = {step.name: step.key for step in self.info.steps}
        for step, frame in batch.results.items():
            table = self.results.setdefault(step, {})
            for row in frame.iter_rows(named=True):
                key = tuple(row[k] for k in (*keys[step], "window_start"))
                if row["_op"] == "delete":
                    table.pop(key, None)
                else:
                    table[key] = {k: v for k, v in row.items() if k not in ("_op", "revision")}
                    self.owners.setdefault(step, {})[key] = batch.partition

    def flush(self) -> None:
        """Count flushes (nothing to make durable in memory)."""
        self.flushes += 1

    def transitions(self, rule: str) -> pl.DataFrame:
        """A rule's transitions, once each, in event-time order."""
        rows = list(self.alerts.get(rule, {}).values())
        if not rows:
            return pl.DataFrame()
        return pl.DataFrame(rows).sort("event_time", "alert_id", "sequence")

    def final(self, step: str) -> pl.DataFrame:
        """The current results of one step, sorted by key and window."""
        rows = list(self.results.get(step, {}).values())
        frame = pl.DataFrame(rows) if rows else pl.DataFrame()
        return frame.sort(frame.columns[:2]) if rows else frame

    def count(self, store: str) -> int:
        """Rows held in ``readings``, ``dead_letters`` or ``late``."""
        entries: list[tuple[int, int, pl.DataFrame]] = getattr(self, store)
        return sum(frame.height for _, _, frame in entries)


@contextmanager
def duckdb_held_elsewhere(path: Path) -> Iterator[None]:
    """Keep a DuckDB file open for writing in another process, as a running pipeline would."""
    script = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
        "sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            msg = f"the process meant to hold {path} did not start"
            raise RuntimeError(msg)
        yield
    finally:
        holder.communicate("")
