"""A table in event time: the versions of each key's row, looked up as of a time or latest.

Reference data (a door's district, a user's heart-rate range) changes while a pipeline runs.
A :class:`VersionedTable` keeps each key's row versions, each valid from an event time
(``__valid_from``, microseconds) until the next; a deletion is a version too (a tombstone).
A join asks either for the latest row of each key (a lookup join) or for the row valid at
each record's own event time (a temporal join), so a reading from before an update is
enriched with what held when it was taken.

Versions that no record can still ask for are evicted as the watermark passes: per key,
every version newer than the horizon and the newest one before it are kept, so the state is
bounded by the table's size and the updates within the horizon, never by the stream's
length. The frames are Polars frames sorted by key; a lookup of a batch first narrows the
table to the batch's keys by binary search (``search_sorted``), so a batch of 10,000
devices against a table of a million rows joins 10,000 rows, not a million.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import polars as pl

VALID_FROM = "__valid_from"
DELETED = "__deleted"
FOUND = "__found"  # on looked-up rows: whether the key had a row (its values may be null)
# A version's validity as a timestamp, for frames shown to a person or stored.
_ORDER = "__order"
MIN_TIME = -(2**62)  # before any version


@dataclass(frozen=True)
class TableDecl:
    """What a table holds: its key columns and its value columns with their types."""

    name: str
    key: tuple[str, ...]
    # Value columns (the key's types are in key_types); a Null type takes whatever comes.
    columns: Mapping[str, pl.DataType]
    key_types: Mapping[str, pl.DataType]
    # A value column whose time says from when each row holds (else: from its load).
    valid_from: str | None = None

    @property
    def schema(self) -> dict[str, pl.DataType]:
        """The rows' columns: key first, then values."""
        return {**self.key_types, **self.columns}


class VersionedTable:
    """Every key's row versions in event time, for one partition; see the module docstring."""

    def __init__(self, decl: TableDecl) -> None:
        self.decl = decl
        self.key = list(decl.key)
        self._versions = pl.DataFrame(schema=self._version_schema())
        # The earliest horizon at which a version could be evicted (None: none could be,
        # until the next change), so that evicting a large unchanged table costs nothing.
        self._evictable_from: int | None = None

    def _version_schema(self) -> dict[str, pl.DataType]:
        return {**self.decl.schema, VALID_FROM: pl.Int64(), DELETED: pl.Boolean()}

    @property
    def versions(self) -> pl.DataFrame:
        """Every kept version, sorted by key and validity."""
        return self._versions

    @property
    def height(self) -> int:
        """Versions kept."""
        return self._versions.height

    # --- changes ------------------------------------------------------------------------

    def replace_all(self, rows: pl.DataFrame, at_us: int) -> None:
        """The whole table is now ``rows`` (a reload): changed rows and deletions from ``at_us``.

        Keys absent from ``rows`` are deleted; rows equal to their key's latest version add
        nothing, so reloading an unchanged table keeps the state as it was. A table with a
        ``valid_from`` column dates each row by it instead.
        """
        rows = self._conform(rows)
        latest = self.latest
        gone = latest.join(rows.select(self.key), on=self.key, how="anti", nulls_equal=True)
        tombstones = gone.with_columns(
            pl.lit(at_us, pl.Int64).alias(VALID_FROM), pl.lit(True).alias(DELETED)
        )
        changed = self._changed(rows, self._validity(rows, at_us))
        self._add(pl.concat([changed, tombstones], how="vertical_relaxed"))

    def upsert(self, rows: pl.DataFrame, at_us: int | pl.Series) -> None:
        """Rows that changed (an incremental refresh, a changelog): valid from ``at_us``.

        ``at_us`` is one instant for all, or a series of microseconds, one per row (a
        changelog stream's event times); a table's ``valid_from`` column overrides it.
        """
        rows = self._conform(rows)
        self._add(self._changed(rows, self._validity(rows, at_us)))

    def _validity(self, rows: pl.DataFrame, at_us: int | pl.Series) -> int | pl.Series:
        """From when each row holds: its ``valid_from`` column where it has a time."""
        column = self.decl.valid_from
        if column is None or isinstance(at_us, pl.Series):
            return at_us
        own = rows[column].cast(pl.Int64)
        return own.fill_null(at_us)

    def changelog(self, rows: pl.DataFrame, at_us: pl.Series, deleted: pl.Series) -> None:
        """A changelog's rows in arrival order: upserts, and deletions where ``deleted``.

        Two changes of a key at one instant keep the later one, as they arrived.
        """
        stamped = self._stamped(self._conform(rows), at_us).with_columns(deleted.alias(DELETED))
        self._add(stamped)

    def delete(self, keys: pl.DataFrame, at_us: int | pl.Series) -> None:
        """Tombstones: these keys have no row from ``at_us`` on."""
        keys = self._conform(keys.select(self.key))
        stamped = self._stamped(keys, at_us).with_columns(pl.lit(True).alias(DELETED))
        self._add(stamped.select(self._version_schema().keys()))

    def _conform(self, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` with the declared columns, in order and of the declared types."""
        schema = self.decl.schema
        absent = [name for name in schema if name not in rows.columns]
        return rows.with_columns(pl.lit(None, schema[name]).alias(name) for name in absent).select(
            _typed(schema)
        )

    def _stamped(self, rows: pl.DataFrame, at_us: int | pl.Series) -> pl.DataFrame:
        stamp = (
            pl.lit(at_us, pl.Int64)
            if isinstance(at_us, int)
            else pl.Series(VALID_FROM, at_us, pl.Int64)
        )
        return rows.with_columns(
            stamp.alias(VALID_FROM) if isinstance(stamp, pl.Expr) else stamp,
            pl.lit(False).alias(DELETED),
        )

    def _changed(self, rows: pl.DataFrame, at_us: int | pl.Series) -> pl.DataFrame:
        """The versions ``rows`` add: a row equal to its key's latest version adds none."""
        stamped = self._stamped(rows, at_us)
        if self._versions.height == 0:
            return stamped
        values = list(self.decl.schema)
        # A row equal to its key's latest version changes nothing, unless its own time says
        # it starts a version of its own (a changelog repeating a value still dates it).
        if isinstance(at_us, int) or self.decl.valid_from is not None:
            return stamped.join(self.latest.select(values), on=values, how="anti", nulls_equal=True)
        return stamped

    def _add(self, versions: pl.DataFrame) -> None:
        if versions.height == 0:
            return
        combined = pl.concat(
            [self._versions, versions.select(self._versions.columns)], how="vertical_relaxed"
        )
        # Sorted by key and time, arrival order kept among equals; of two changes of a key
        # at one instant the later stays. Comparing neighbours is cheaper than hashing.
        # (An arrival number as the last sort key is cheaper than a stable sort.)
        ordered = combined.with_row_index(_ORDER).sort([*self.key, VALID_FROM, _ORDER])
        repeated = _same_as_next([*self.key, VALID_FROM])
        self._versions = ordered.filter(~repeated).drop(_ORDER)
        self.__dict__.pop("latest", None)
        self._evictable_from = MIN_TIME

    # --- reading ------------------------------------------------------------------------

    @cached_property
    def latest(self) -> pl.DataFrame:
        """Each key's newest row (deleted keys left out), sorted by key: what a lookup sees."""
        if self._versions.height == 0:
            return pl.DataFrame(schema=self.decl.schema)
        newest = self._versions.filter(~_same_as_next(self.key))  # each key's last version
        return newest.filter(~pl.col(DELETED)).select(self.decl.schema.keys())

    def narrowed(self, frame: pl.DataFrame, on: Sequence[str], rows: pl.DataFrame) -> pl.DataFrame:
        """The rows of ``rows`` (sorted by key) whose keys occur in ``frame[on]``.

        With one key column this is a binary search per distinct key of the batch, not a
        hash of the whole table per batch; a composite key falls back to a semi join.
        """
        if len(self.key) != 1:
            wanted = frame.select(
                [pl.col(c).alias(k) for c, k in zip(on, self.key, strict=True)]
            ).unique()
            return rows.join(wanted, on=self.key, how="semi", nulls_equal=True)
        column = rows[self.key[0]]
        if column.len() == 0:
            return rows.clear()
        wanted_keys = frame[on[0]].drop_nulls().unique().cast(column.dtype).sort()
        if wanted_keys.len() == 0:
            return rows.clear()
        low = column.search_sorted(wanted_keys, side="left")
        high = column.search_sorted(wanted_keys, side="right")
        spans = pl.DataFrame({"low": low, "high": high}).filter(pl.col("high") > pl.col("low"))
        if spans.height == 0:
            return rows.clear()
        index = spans.select(pl.int_ranges("low", "high").explode())["low"]
        return rows[index]

    def lookup(self, frame: pl.DataFrame, on: Sequence[str]) -> pl.DataFrame:
        """``frame`` with each key's latest values (nulls where the key has none), in order.

        A :data:`FOUND` column says which rows' keys had a row.
        """
        found = self.narrowed(frame, on, self.latest).with_columns(pl.lit(True).alias(FOUND))
        joined = frame.join(
            found,
            left_on=list(on),
            right_on=self.key,
            how="left",
            maintain_order="left",
            coalesce=True,
        )
        return joined.with_columns(pl.col(FOUND).fill_null(False))

    def columns_for(
        self, frame: pl.DataFrame, on: Sequence[str], columns: Sequence[tuple[str, str]]
    ) -> pl.DataFrame:
        """``frame`` with some of each key's latest values, under new names, in order.

        ``columns`` pairs a table column with its name on ``frame`` (nulls where the key
        has no row).
        """
        wanted = self.narrowed(frame, on, self.latest)
        renamed = [pl.col(column).alias(alias) for column, alias in columns]
        found = wanted.select(*(pl.col(k) for k in self.key), *renamed)
        return frame.drop([alias for _, alias in columns], strict=False).join(
            found, left_on=list(on), right_on=self.key, how="left", maintain_order="left"
        )

    def as_of(self, frame: pl.DataFrame, on: Sequence[str], ts: str) -> pl.DataFrame:
        """``frame`` with the values each key had at each row's ``ts``, in order.

        A row before its key's first version, or at a time the key was deleted, gets nulls
        (and False in :data:`FOUND`).
        """
        versions = self.narrowed(frame, on, self._versions)
        ordered = frame.with_row_index(_ORDER).with_columns(
            pl.col(ts).cast(pl.Int64).alias("__ts_us")
        )
        ordered = ordered.sort("__ts_us")
        right = versions.sort(VALID_FROM)
        renamed = {k: c for k, c in zip(self.key, on, strict=True) if k != c}
        right = right.rename(renamed)
        joined = ordered.join_asof(
            right,
            left_on="__ts_us",
            right_on=VALID_FROM,
            by=list(on),
            strategy="backward",
            check_sortedness=False,
        )
        values = list(self.decl.columns)
        deleted = pl.col(DELETED).fill_null(True)
        joined = joined.with_columns(
            *[pl.when(deleted).then(None).otherwise(pl.col(c)).alias(c) for c in values],
            (~deleted).alias(FOUND),
        )
        return joined.sort(_ORDER).drop(_ORDER, "__ts_us", VALID_FROM, DELETED)

    # --- state --------------------------------------------------------------------------

    def evict(self, horizon_us: int) -> None:
        """Drop versions no record at or after ``horizon_us`` can ask for."""
        if self._evictable_from is None or horizon_us < self._evictable_from:
            return
        if self._single_versions():  # a table loaded once and never changed, most often
            self._evictable_from = None
            return
        following = pl.col(VALID_FROM).shift(-1).over(self.key)
        marked = self._versions.with_columns(following.alias("__next"))
        kept = marked.filter(pl.col("__next").is_null() | (pl.col("__next") > horizon_us))
        # A key deleted before the horizon, with nothing after: nothing can ask for it.
        last = pl.col("__next").is_null()
        finished = last & pl.col(DELETED) & (pl.col(VALID_FROM) <= horizon_us)
        kept = kept.filter(~finished)
        # When could the next eviction drop anything? When the horizon reaches the
        # earliest successor of a kept version, or a kept deletion.
        upcoming = kept.select(
            pl.min_horizontal(
                pl.col("__next").min(),
                pl.col(VALID_FROM).filter(last & pl.col(DELETED)).min(),
            )
        ).item()
        self._evictable_from = None if upcoming is None else int(upcoming)
        kept = kept.drop("__next")
        if kept.height != self._versions.height:
            self._versions = kept
            self.__dict__.pop("latest", None)

    def _single_versions(self) -> bool:
        """Every key has one version and none is a deletion: nothing will ever be evicted."""
        versions = self._versions
        return not versions[DELETED].any() and versions.height == self.latest.height

    def snapshot(self) -> dict[str, pl.DataFrame]:
        """The versions, as named frames (what an operator's snapshot holds)."""
        return {"versions": self._versions}

    def restore(self, frames: Mapping[str, pl.DataFrame]) -> None:
        """Continue from :meth:`snapshot`."""
        frame = frames.get("versions")
        if frame is not None:
            self._versions = frame.select(_typed(self._version_schema()))
            self.__dict__.pop("latest", None)
            self._evictable_from = MIN_TIME


def _typed(schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
    """Each column cast to its declared type; a Null type (not known) takes what comes."""
    return [
        pl.col(name) if dtype == pl.Null() else pl.col(name).cast(dtype)
        for name, dtype in schema.items()
    ]


def _same_as_next(columns: Sequence[str]) -> pl.Expr:
    """Rows equal to the next row in all of ``columns`` (nulls equal), for sorted frames."""
    return pl.all_horizontal(
        [pl.col(c).eq_missing(pl.col(c).shift(-1)).fill_null(False) for c in columns]
    ) & pl.int_range(pl.len()).lt(pl.len() - 1)
