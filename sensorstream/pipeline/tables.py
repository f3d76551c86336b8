"""Reference tables as YAML writes them: where a table comes from, its key and its columns.

::

    tables:
      doors:
        source: {type: file, path: doors.csv, refresh: {watch: true}}
        key: [device_id]
        columns: {district: string, lat: float, lon: float}
      ranges:
        source:
          type: postgres
          dsn_env: RANGES_DSN
          query: SELECT user_id, low, high, updated_at FROM ranges
          refresh: {change_column: updated_at, listen: ranges_changed}
        key: [user_id]
        columns: {low: float, high: float, updated_at: datetime}
        valid_from: updated_at       # each row's version holds from this event time

A table's rows reach every partition (it is replicated), so a join with it needs no
partitioning of its own. ``columns`` is the one declaration of what a join can add; a
key column is a string unless ``columns`` gives it another type.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from sensorstream.engine.tables import TableDecl
from sensorstream.readings import DEVICE
from sensorstream.sources.tables import TableSourceSettings
from sensorstream.sources.tables.columns import POLARS_TYPES, ColumnType


class TableSpec(BaseModel):
    """One reference table under ``tables:``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: TableSourceSettings
    key: list[str] = [DEVICE]
    columns: dict[str, ColumnType]
    valid_from: str | None = None

    @model_validator(mode="after")
    def _fits(self) -> TableSpec:
        if not self.key:
            msg = "a table needs a key: the columns a record is matched on, e.g. [device_id]"
            raise ValueError(msg)
        values = [name for name in self.columns if name not in self.key]
        if not values:
            msg = "a table needs at least one column besides its key, e.g. {district: string}"
            raise ValueError(msg)
        if self.valid_from is not None and self.columns.get(self.valid_from) != "datetime":
            msg = (
                f"valid_from names a datetime column of the table; declare it: "
                f"columns: {{{self.valid_from}: datetime}}"
            )
            raise ValueError(msg)
        return self

    def decl(self, name: str) -> TableDecl:
        """The engine-side declaration."""
        return TableDecl(
            name,
            key=tuple(self.key),
            columns={
                column: POLARS_TYPES[kind]
                for column, kind in self.columns.items()
                if column not in self.key
            },
            key_types={
                column: POLARS_TYPES[self.columns.get(column, "string")] for column in self.key
            },
            valid_from=self.valid_from,
        )

    def column_types(self) -> dict[str, ColumnType]:
        """Every declared column's type, the key's included (strings unless declared)."""
        return {**dict.fromkeys(self.key, "string"), **self.columns}
