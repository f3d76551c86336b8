"""Reference tables in: what streams are joined against, loaded whole and refreshed on change.

``TABLE_SOURCES`` maps the ``type`` a pipeline YAML names under a table's ``source:`` to the
source class, and ``TableSourceSettings`` reads any of them::

    tables:
      doors:
        source: {type: file, path: doors.csv, refresh: {watch: true}}
      ranges:
        source:
          type: postgres
          dsn_env: RANGES_DSN
          query: SELECT user_id, low, high, updated_at FROM ranges
          refresh: {change_column: updated_at, listen: ranges_changed, interval: 30s}
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from sensorstream.sources.tables.base import TableSource, TableUpdate
from sensorstream.sources.tables.columns import ColumnType
from sensorstream.sources.tables.files import (
    FileRefreshSettings,
    FileTableSettings,
    FileTableSource,
    TableFileFormat,
)
from sensorstream.sources.tables.postgres import (
    PostgresRefreshSettings,
    PostgresTableSettings,
    PostgresTableSource,
)

TABLE_SOURCES: dict[str, type[TableSource]] = {
    "file": FileTableSource,
    "postgres": PostgresTableSource,
}

TableSourceSettings = Annotated[
    FileTableSettings | PostgresTableSettings, Field(discriminator="type")
]
"""The settings of any table source, told apart by their ``type``."""

__all__ = [
    "TABLE_SOURCES",
    "ColumnType",
    "FileRefreshSettings",
    "FileTableSettings",
    "FileTableSource",
    "PostgresRefreshSettings",
    "PostgresTableSettings",
    "PostgresTableSource",
    "TableFileFormat",
    "TableSource",
    "TableSourceSettings",
    "TableUpdate",
]
