"""Requests the ingest endpoint decoded, kept for the http source so it need not decode them again.

``POST /api/v1/readings`` decodes every body before it answers (the answer lists each bad
line), then appends it to the ingest log; the http source reads the log and would decode
the same bytes with the same format, arrival time and line numbers a second time. The
endpoint puts what it decoded here, by the body's first sequence number, and the source
takes it instead: the same frames, since decoding is a pure function of those inputs; the
one difference, the dead letters' ``origin`` (``line 3 of request`` before the sequence
number is known), is completed on the way out.

It is a cache, never the record: a replay after a restart decodes from the log, as does a
source that read a body before the endpoint put it here (the log is readable once synced,
a moment before the endpoint's ``put``), or one that fell so far behind that the budget
pushed the oldest out. Entries older than what the source has read are dropped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import polars as pl

from sensorstream.readings import Decoded

DEFAULT_BUDGET_BYTES = 32 * 1024 * 1024  # of bodies decoded and not yet taken
ORIGIN = "request"  # what the endpoint decodes with; the source's is "request <first>"


class DecodedCache:
    """Decoded bodies by first sequence number, within a budget of body bytes."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[int, tuple[int, Decoded]] = OrderedDict()
        self._bytes = 0
        self._read_to = 0  # sequence numbers before this are read: never put them
        self._lock = threading.Lock()

    def put(self, first: int, size: int, decoded: Decoded) -> None:
        """Keep what a body of ``size`` bytes starting at ``first`` decoded to."""
        with self._lock:
            if first < self._read_to or size > self.budget_bytes:
                return
            self._entries[first] = (size, decoded)
            self._bytes += size
            while self._bytes > self.budget_bytes:
                _, (dropped, _) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def take(self, first: int) -> Decoded | None:
        """What the body starting at ``first`` decoded to, as the source would decode it."""
        with self._lock:
            found = self._entries.pop(first, None)
            if found is None:
                return None
            self._bytes -= found[0]
        decoded = found[1]
        if decoded.dead_letters.height == 0:
            return decoded
        origin = pl.col("origin").str.replace(f" of {ORIGIN}$", f" of {ORIGIN} {first}")
        return Decoded(
            decoded.readings,
            decoded.dead_letters.with_columns(origin),
            decoded.payloads,
            decoded.blank,
        )

    def discard_before(self, position: int) -> None:
        """Forget bodies starting before ``position``: the source has read past them."""
        with self._lock:
            self._read_to = max(self._read_to, position)
            for first in [f for f in self._entries if f < position]:
                self._bytes -= self._entries.pop(first)[0]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
