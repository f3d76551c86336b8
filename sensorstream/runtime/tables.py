"""The pipeline's reference tables at run time: loaded at start, refreshed while running.

Each table's source (a file, a PostgreSQL query) is loaded once before the first batch and
then polled between batches; a change reaches every partition's task, since a reference
table is replicated. Polling never blocks: the sources watch and query in their own
threads. The first content a run loads holds from the beginning of time (a replay of old
readings still finds it); each later change holds from when it was loaded, in processing
time, unless the table dates its rows itself (``valid_from``). A refresh that fails, or
whose rows do not fit the declared columns, keeps the last good content and is reported
(:attr:`ReferenceTables.errors`), never stopping the pipeline.

A partition assigned while running (a consumer group handing over a Kafka partition) gets
the tables as the ones from the start have them: the updates applied so far are kept
(from the last full content on) and replayed into its task (:meth:`ReferenceTables.seed`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import polars as pl

from sensorstream.engine.task import PartitionTask
from sensorstream.engine.time import micros
from sensorstream.engine.watermarks import MIN_WATERMARK
from sensorstream.errors import SourceError
from sensorstream.pipeline.tables import TableSpec
from sensorstream.sources.tables import TableSource, TableUpdate
from sensorstream.sources.tables.columns import apply_schema

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ReferenceTables:
    """Every reference table of a pipeline: its source, and how it reaches the tasks."""

    def __init__(
        self, specs: Mapping[str, TableSpec], sources: Mapping[str, TableSource] | None = None
    ) -> None:
        given = dict(sources or {})
        self.specs = dict(specs)
        self.sources = {
            name: given[name] if name in given else spec.source.build(name)
            for name, spec in self.specs.items()
        }
        self.errors: dict[str, str] = {}  # the latest failed refresh of each table
        self.loads: dict[str, int] = dict.fromkeys(self.specs, 0)  # updates applied
        # Per table, the updates since its last full content, in order: (rows, full, the time
        # they hold from, when they were loaded).
        self.history: dict[str, list[tuple[pl.DataFrame, bool, int, int]]] = {
            name: [] for name in specs
        }

    def load(self) -> None:
        """Load every table (before the first batch); SourceError if one cannot be read.

        Each task gets the content through :meth:`seed` as it is taken on.
        """
        for name, source in self.sources.items():
            update = source.load()
            self._apply(name, self._conform(name, update), update, [], MIN_WATERMARK)

    def seed(self, task: PartitionTask, *, restored: bool) -> None:
        """Give a task what the tables hold: at the start, or when a group assigns it later.

        A task restored from its checkpoint holds versions already: what it gets is a change
        as of when it was loaded, like every table at a restart; a task without state gets
        the first content from the beginning of time.
        """
        for name, updates in self.history.items():
            for index, (rows, full, at_us, loaded_us) in enumerate(updates):
                if index == 0:
                    at_us = loaded_us if restored else MIN_WATERMARK
                task.apply_table(name, rows, full=full, at_us=at_us)

    def poll(self, tasks: Iterable[PartitionTask]) -> None:
        """Apply whatever changed since the last poll (never waits)."""
        tasks = list(tasks)
        for name, source in self.sources.items():
            while (update := source.poll()) is not None:
                try:
                    rows = self._conform(name, update)
                except SourceError as error:
                    self.errors[name] = str(error)
                    continue
                self._apply(name, rows, update, tasks, _micros(update.loaded_at))
            if source.last_error is not None:
                self.errors[name] = source.last_error

    def _conform(self, name: str, update: TableUpdate) -> pl.DataFrame:
        spec = self.specs[name]
        return apply_schema(update.rows, spec.column_types(), origin=f"table {name!r}")

    def _apply(
        self,
        name: str,
        rows: pl.DataFrame,
        update: TableUpdate,
        tasks: list[PartitionTask],
        at_us: int,
    ) -> None:
        for task in tasks:
            task.apply_table(name, rows, full=update.full, at_us=at_us)
        if update.full:
            self.history[name].clear()
        self.history[name].append((rows, update.full, at_us, _micros(update.loaded_at)))
        self.loads[name] += 1
        self.errors.pop(name, None)

    def close(self) -> None:
        """Stop every source's watching."""
        for source in self.sources.values():
            source.close()


def _micros(moment: datetime) -> int:
    return micros(moment - _EPOCH)
