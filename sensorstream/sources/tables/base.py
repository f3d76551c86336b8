"""The reference-table protocol: a whole table at start-up, then the changes as they come.

A stream is joined against reference tables (door locations, each user's allowed range):
small or medium tables that change now and then, not streams of their own. A
:class:`TableSource` loads its table whole when the pipeline starts (:meth:`~TableSource.load`,
blocking, so a missing file or a refused connection stops the start with a clear error) and
then, if it refreshes, hands each change it noticed to :meth:`~TableSource.poll`, which never
blocks: the watching and querying happen in a background thread, so a slow disk or database
never stalls the pipeline.

An update is the whole table (``full=True``: keys absent from it are deleted) or the rows that
changed (``full=False``: upserts). A refresh that fails keeps the last good content: the error
is logged and kept in :attr:`~TableSource.last_error`, and the next interval tries again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl


def utc_now() -> datetime:
    """The processing time of a load: now, in UTC (the default clock of table sources)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class TableUpdate:
    """New content of a reference table: the whole table, or the rows that changed.

    ``full=True`` means ``rows`` is the whole table: keys absent from it are deleted.
    ``full=False`` means ``rows`` are upserts: each replaces the row with its key, or is added.
    """

    rows: pl.DataFrame
    full: bool
    loaded_at: datetime  # UTC processing time of the load: when it was read, not when written
    # What identifies this content, for logs and checkpoints: a file's mtime, size and SHA-256
    # prefix; a query's highest change-column value, or its row count and content hash.
    version: str


class TableSource(ABC):
    """Base of every reference-table source; subclass it and implement :meth:`load`.

    Call :meth:`poll` until it returns None to take every change noticed since the last
    load or poll, oldest first::

        while (update := table.poll()) is not None:
            apply(update)
    """

    name: str = "table"
    # Why the latest refresh failed (the last good content is kept); None once one succeeds.
    last_error: str | None = None

    @abstractmethod
    def load(self) -> TableUpdate:
        """The whole table now (blocking; at start-up); starts refreshing, if configured.

        Raises SourceError naming the table and what is wrong (the file is missing, the
        query is bad, the connection was refused).
        """

    def poll(self) -> TableUpdate | None:
        """The next change noticed since the last load or poll, or None; never blocks.

        A table that does not refresh never has one.
        """
        return None

    def close(self) -> None:  # noqa: B027 - optional hook: a table that never refreshes holds nothing
        """Stop refreshing and release what the source holds open."""
