"""Reference tables from a file (CSV, Parquet, a JSON array, NDJSON), reloaded when it changes.

The file is read whole with Polars, then parsed from the bytes read, so the SHA-256 that
identifies the content is always of the content loaded. Without a declared ``schema``,
Polars infers the column types (for CSV from the first 10,000 rows, or from every row if a
later value does not fit what those suggested); declare ``string`` for identifiers such as
``007`` that would otherwise be read as numbers.

Refreshing takes one of two forms:

- ``watch: true`` looks at the file's size and modification time every ``interval`` (2 s
  unless told) and reads it once they have changed *and then held still* for one interval,
  so a file being written in place is read after its writer is done. A writer that may pause
  for longer than that should write a temporary file beside it and rename it over the old
  one: a rename is atomic, so a reader sees the old file or the new, never half of one.
- ``interval`` alone reads the whole file every interval and compares its SHA-256: for file
  systems whose modification times cannot be trusted (some network mounts).

Either way a change is an update only when the content differs (a file touched but not
changed gives none), and a file that cannot be read during a refresh (missing for a moment,
half written) keeps the last good content and records ``last_error``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sensorstream.durations import Duration
from sensorstream.errors import ConfigError, SourceError
from sensorstream.sources.base import Clock
from sensorstream.sources.tables.base import TableUpdate, utc_now
from sensorstream.sources.tables.columns import ColumnType, apply_schema
from sensorstream.sources.tables.refresh import RefreshingTableSource

TableFileFormat = Literal["csv", "parquet", "json", "ndjson"]

SUFFIXES: dict[str, TableFileFormat] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}
DEFAULT_WATCH_INTERVAL = timedelta(seconds=2)
# Rows Polars looks at to infer a CSV column's type: enough for most tables, and a tenth of
# the time of looking at all of a million rows; a later value that does not fit is retried.
_CSV_INFER_ROWS = 10_000


@dataclass(frozen=True)
class _Stat:
    size: int
    mtime_ns: int


class FileTableSource(RefreshingTableSource):
    """A reference table read whole from one file, optionally reloaded when the file changes.

    Args:
        name: The table's name, for messages.
        path: The file.
        format: ``csv``, ``parquet``, ``json`` (an array of objects) or ``ndjson``; by default
            from the suffix (``.csv``, ``.parquet``, ``.json``, ``.ndjson``, ``.jsonl``).
        schema: Column types to cast to strictly (``string``, ``float``, ``int``, ``bool``,
            ``datetime``); other columns keep the types Polars infers.
        watch: Reload when the size or modification time changed and then held still.
        interval: How often to look (watching: 2 s by default); without ``watch``, how often
            to read the file and compare its SHA-256. Neither: the table is never reloaded.
        clock: Gives the processing time of each load.
    """

    def __init__(
        self,
        name: str,
        path: str | Path,
        format: TableFileFormat | None = None,
        *,
        schema: Mapping[str, ColumnType] | None = None,
        watch: bool = False,
        interval: timedelta | None = None,
        clock: Clock = utc_now,
    ) -> None:
        if watch and interval is None:
            interval = DEFAULT_WATCH_INTERVAL
        super().__init__(name, refreshes=interval is not None, interval=interval)
        self.path = Path(path)
        self.format: TableFileFormat = format or _format_of(name, self.path)
        self.schema = dict(schema or {})
        self.watch = watch
        self.clock = clock
        self._seen: _Stat | None = None  # the size and mtime of the content last loaded
        self._sha256: str | None = None  # and its hash
        self._changed_to: _Stat | None = None  # a new size and mtime, waiting to hold still

    def read_table(self) -> TableUpdate:
        """The whole file now, whatever it was before."""
        data, stat = self._read()
        return self._update(data, stat, hashlib.sha256(data).hexdigest())

    def read_changes(self) -> TableUpdate | None:
        """The whole file if its content changed (and, watching, then held still), else None."""
        if not self.watch:
            data, stat = self._read()
            return self._update_if_new(data, stat)
        stat = self._stat()
        if stat == self._seen:
            self._changed_to = None
            return None
        if stat != self._changed_to:
            self._changed_to = stat  # changed: read it once it holds still for an interval
            return None
        data, after = self._read()
        if after != stat:
            self._changed_to = after  # written to while being read: wait again
            return None
        return self._update_if_new(data, stat)

    def _update_if_new(self, data: bytes, stat: _Stat) -> TableUpdate | None:
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._sha256:
            self._seen = stat  # touched or rewritten with the same content
            return None
        return self._update(data, stat, digest)

    def _update(self, data: bytes, stat: _Stat, digest: str) -> TableUpdate:
        rows = self._parse(data)
        loaded_at = self.clock()
        self._seen, self._sha256, self._changed_to = stat, digest, None
        mtime = datetime.fromtimestamp(stat.mtime_ns / 1e9, tz=UTC)
        version = f"size={stat.size} mtime={mtime:%Y-%m-%dT%H:%M:%S.%fZ} sha256={digest[:16]}"
        return TableUpdate(rows=rows, full=True, loaded_at=loaded_at, version=version)

    def _stat(self) -> _Stat:
        try:
            stat = self.path.stat()
        except OSError as error:
            raise self._error(error) from error
        return _Stat(stat.st_size, stat.st_mtime_ns)

    def _read(self) -> tuple[bytes, _Stat]:
        """The file's bytes and its size and mtime as they were once it was read."""
        if self.path.is_dir():
            msg = f"table {self.name!r}: cannot read {self.path}: it is a folder"
            raise SourceError(msg)
        try:
            data = self.path.read_bytes()
        except OSError as error:
            raise self._error(error) from error
        return data, self._stat()

    def _parse(self, data: bytes) -> pl.DataFrame:
        try:
            frame = self._parse_format(data)
            if self.schema:
                frame = apply_schema(frame, self.schema, self.path.name)
        except SourceError as error:
            msg = f"table {self.name!r}: {error}"
            raise SourceError(msg) from error
        except pl.exceptions.PolarsError as error:
            raise self._error(error) from error
        return frame

    def _parse_format(self, data: bytes) -> pl.DataFrame:
        if self.format == "csv":
            # Declared columns are read as text and cast by apply_schema, whose errors name
            # the value and its row; the CSV reader's would not.
            overrides = {column: pl.String() for column in self.schema} or None
            try:
                return pl.read_csv(
                    data, infer_schema_length=_CSV_INFER_ROWS, schema_overrides=overrides
                )
            except pl.exceptions.ComputeError:
                # A value past the rows looked at does not fit their type: look at them all.
                return pl.read_csv(data, infer_schema_length=None, schema_overrides=overrides)
        if self.format == "parquet":
            return pl.read_parquet(io.BytesIO(data))
        if self.format == "json":
            return pl.read_json(io.BytesIO(data), infer_schema_length=None)
        return pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)

    def _error(self, error: BaseException) -> SourceError:
        if isinstance(error, FileNotFoundError):
            detail = "no such file"
        elif isinstance(error, OSError) and error.strerror:
            detail = error.strerror
        else:
            lines = str(error).strip().splitlines()
            detail = lines[0] if lines else type(error).__name__
        what = f" as {self.format}" if isinstance(error, pl.exceptions.PolarsError) else ""
        return SourceError(f"table {self.name!r}: cannot read {self.path}{what}: {detail}")


def _format_of(name: str, path: Path) -> TableFileFormat:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        msg = (
            f"table {name!r}: cannot tell the format of {path.name} from its suffix; name it "
            f"{', '.join(SUFFIXES)}, or set format: csv, parquet, json or ndjson"
        )
        raise ConfigError(msg)
    return kind


class FileRefreshSettings(BaseModel):
    """When to reload a file table: on a change of its mtime, or by its hash every interval.

    ``{watch: true}`` looks every 2 s, ``{watch: true, interval: 5s}`` every 5 s, and
    ``{interval: 1m}`` reads the file every minute and compares its SHA-256.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    watch: bool = False
    interval: Duration | None = None

    @model_validator(mode="after")
    def _says_when(self) -> FileRefreshSettings:
        if not self.watch and self.interval is None:
            msg = "refresh needs watch: true (look at the file's mtime), an interval, or both"
            raise ValueError(msg)
        if self.interval is not None and self.interval <= timedelta(0):
            msg = f"refresh.interval must be above 0, got {self.interval}"
            raise ValueError(msg)
        return self


class FileTableSettings(BaseModel):
    """A :class:`FileTableSource` as written under a table's ``source:`` in a pipeline YAML.

    >>> refresh = FileRefreshSettings(watch=True)
    >>> settings = FileTableSettings(path=Path("doors.csv"), refresh=refresh)
    >>> table = settings.build("doors")
    >>> table.format, table.interval
    ('csv', datetime.timedelta(seconds=2))
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["file"] = "file"
    path: Path
    format: TableFileFormat | None = None
    # "schema" would shadow a BaseModel method, hence the alias.
    column_types: dict[str, ColumnType] | None = Field(default=None, alias="schema")
    refresh: FileRefreshSettings | None = None

    def build(self, name: str) -> FileTableSource:
        """The table source these settings describe; the file is first read by its ``load``."""
        refresh = self.refresh
        return FileTableSource(
            name,
            self.path,
            self.format,
            schema=self.column_types,
            watch=refresh.watch if refresh else False,
            interval=refresh.interval if refresh else None,
        )
