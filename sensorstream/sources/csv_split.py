r"""Where CSV records end: at newlines outside quoted fields, picking up after a stray quote.

A CSV record is a line, unless a quoted field in it holds newlines (RFC 4180). Telling them
apart by the parity of every quote since a record's start lets one stray quote (``12"
sensor``) open a quoted stretch that never closes and swallow the rest of the file. So
records are cut line by line, each line's quotes counted from its start (a record start):

- a line with an even number of double quotes is a record, mid-field quotes and all (Polars
  refuses those: the record is a dead letter, ``invalid_csv``);
- a line with an odd number may open a quoted field that goes on over the next lines, up to
  the next line with an odd number (the lines between have even ones). That span is one
  record if it is at most ``max_record_bytes`` long, has the header's number of fields
  (commas outside quotes, plus one) and well-formed quotes: each quoted field opens at a
  field start and closes before a comma, the record's end or a doubled quote (``""``).
  Otherwise the line alone is a record (a dead letter: a quote left open), and the next line
  starts afresh.

The quote check keeps two inch marks a few rows apart (``12" sensor``) from joining the rows
between them into one record: Polars would refuse such a span anyway. Each decision depends
only on the bytes from the odd line's start to ``max_record_bytes + 1`` past it, so records
cut from any record start are those an uninterrupted read cuts (the promise of
:mod:`~sensorstream.sources.grid`), and no record longer than ``max_record_bytes`` spans lines.

NumPy finds the lines, counts their quotes and checks every pair of consecutive odd lines at
once, so no line costs Python work: a chunk without quotes costs a search for one more than
finding its newlines; one whose quotes are all balanced, a count of each line's quotes.

>>> splitter = CsvRecordSplitter(width=3, max_record_bytes=100)
>>> data = b'a,"x\ny",1\n12" b,2,3\nc,4,5\n'
>>> splitter.ends(data, len(data), final=True).tolist()  # the quoted newline at 4 ends no record
[9, 19, 25]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sensorstream.sources.grid import NEWLINE, Indexes, RecordSplitter

Flags = npt.NDArray[np.bool_]

QUOTE, COMMA, CARRIAGE_RETURN = 34, 44, 13
# A quote opens a quoted field at a field start (after a comma, or at the start of the
# record, a line start) or right after the quote it doubles; it closes one before a comma,
# the end of the record (a newline, or "\r\n") or the quote that doubles it.
_BEFORE_OPENING = [COMMA, NEWLINE, QUOTE]
_AFTER_CLOSING = [COMMA, NEWLINE, CARRIAGE_RETURN, QUOTE]


class CsvRecordSplitter(RecordSplitter):
    """CSV's records, for a header of ``width`` fields and records of ``max_record_bytes``."""

    def __init__(self, width: int, max_record_bytes: int) -> None:
        self.width, self.max_record_bytes = width, max_record_bytes

    def ends(self, data: bytes, stop: int, *, final: bool) -> Indexes:
        """The record-ending newlines of ``data[:stop]``, as the module's rule tells them."""
        buf = np.frombuffer(data, dtype=np.uint8, count=stop)
        newlines: Indexes = np.flatnonzero(buf == NEWLINE)
        if data.find(b'"', 0, stop) < 0:
            return newlines
        quotes = np.flatnonzero(buf == QUOTE)
        line_stops = newlines
        if final and stop > (int(newlines[-1]) + 1 if len(newlines) else 0):
            line_stops = np.append(newlines, stop)  # the last line, without a newline
        before_start, in_line = _quotes_of_lines(quotes, line_stops)
        before_end = before_start + in_line
        odd = np.flatnonzero(in_line & 1)
        if not len(odd):
            return newlines
        starts = np.concatenate(([0], newlines + 1))[odd]
        stops = line_stops[odd]
        joined = _pairs_taken(
            self._may_join(
                buf,
                quotes,
                (starts[:-1], stops[1:]),
                (before_start[odd[:-1]], before_end[odd[1:]]),
            )
        )
        # Lines from the first of a joined pair to the one before its second: their
        # newlines lie inside the record.
        inside = np.zeros(len(line_stops) + 1, dtype=np.intp)
        inside[odd[:-1][joined]] = 1
        inside[odd[1:][joined]] = -1
        ends: Indexes = newlines[np.cumsum(inside[: len(newlines)]) == 0]
        last_taken = bool(len(joined)) and bool(joined[-1])
        if not (final or last_taken) and stop - int(starts[-1]) <= self.max_record_bytes:
            # The last odd line may yet join a line not read: no record from it on is told.
            ends = ends[ends < starts[-1]]
        return ends

    def _may_join(
        self,
        buf: npt.NDArray[np.uint8],
        quotes: Indexes,
        spans: tuple[Indexes, Indexes],
        quotes_in_spans: tuple[Indexes, Indexes],
    ) -> Flags:
        """Which spans, each from an odd line's start to the next odd line's end, are a record.

        ``quotes_in_spans`` holds the range of indexes into ``quotes`` of each span's quotes.
        """
        starts, stops = spans
        if not len(starts):
            return np.zeros(0, dtype=np.bool_)
        fields = field_counts(buf, quote_parity(buf), starts, stops)
        misplaced = misplaced_quotes(buf, quotes, *quotes_in_spans)
        short = stops - starts <= self.max_record_bytes
        may: Flags = short & (fields == self.width) & (misplaced == 0)
        return may


def _quotes_of_lines(quotes: Indexes, stops: Indexes) -> tuple[Indexes, Indexes]:
    """How many quotes come before each line, and how many it holds, given where they are.

    The lines follow one another from index 0, each ending at its stop (a newline, or the
    end of the input): a line's quotes are those before its end less those before the
    previous line's end.
    """
    before_end = np.searchsorted(quotes, stops)
    before_start: Indexes = np.concatenate(([0], before_end[:-1])).astype(np.intp)
    return before_start, before_end - before_start


def quote_parity(buf: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The parity of the double quotes up to each byte, that byte included (1 if odd)."""
    parity: npt.NDArray[np.uint8] = np.bitwise_xor.accumulate((buf == QUOTE).view(np.uint8))
    return parity


def parity_before(parity: npt.NDArray[np.uint8], at: Indexes) -> npt.NDArray[np.uint8]:
    """The parity of the quotes before each index ``at``, from :func:`quote_parity`."""
    before: npt.NDArray[np.uint8] = np.where(at > 0, parity[np.maximum(at - 1, 0)], 0).astype(
        np.uint8
    )
    return before


def field_counts(
    buf: npt.NDArray[np.uint8], parity: npt.NDArray[np.uint8], starts: Indexes, stops: Indexes
) -> Indexes:
    """The fields of each span: its commas outside quotes (counted from its start), plus one.

    ``parity`` is the buffer's :func:`quote_parity`: a comma lies outside quotes in a span if
    its parity is the parity before the span.
    """
    commas = np.flatnonzero(buf == COMMA)
    even = parity[commas] == 0
    start_parity = parity_before(parity, starts)
    if not start_parity.any():  # every span starts after an even number: the common case
        outside = commas[even]
        counts: Indexes = np.searchsorted(outside, stops) - np.searchsorted(outside, starts) + 1
        return counts
    first, stop = np.searchsorted(commas, starts), np.searchsorted(commas, stops)
    running = _running_count(even)
    outside_if_even = running[stop] - running[first]
    return np.where(start_parity, stop - first - outside_if_even, outside_if_even) + 1


def misplaced_quotes(
    buf: npt.NDArray[np.uint8], quotes: Indexes, first: Indexes, stop: Indexes
) -> Indexes:
    """The misplaced quotes of each span of quotes ``quotes[first:stop]``, which Polars refuses.

    From the span's start, quotes open and close quoted fields in turn: an opening one must
    come at a field start or right after a closing one (a doubled quote), a closing one before
    a comma, the end of the record or an opening one.
    """
    before = np.where(quotes > 0, buf[np.maximum(quotes - 1, 0)], NEWLINE)
    after = np.where(quotes + 1 < len(buf), buf[np.minimum(quotes + 1, len(buf) - 1)], NEWLINE)
    bad_opening = ~np.isin(before, _BEFORE_OPENING)
    bad_closing = ~np.isin(after, _AFTER_CLOSING)
    # Quote number k (from the buffer's start) opens in a span with quotes before it of
    # k's parity, and closes in one with the other parity.
    even = (np.arange(len(quotes)) & 1) == 0
    return _count_by_parity(
        np.where(even, bad_opening, bad_closing),
        np.where(even, bad_closing, bad_opening),
        first,
        stop,
        first,
    )


def _count_by_parity(
    if_even: Flags, if_odd: Flags, first: Indexes, stop: Indexes, parity: Indexes
) -> Indexes:
    """Per span of items ``[first, stop)``: the flags that hold for its parity, counted."""
    even, odd = _running_count(if_even), _running_count(if_odd)
    counts: Indexes = np.where(parity & 1, odd[stop] - odd[first], even[stop] - even[first])
    return counts


def _running_count(flags: Flags) -> Indexes:
    """How many of the flags before each index hold, up to ``len(flags)`` included."""
    counts = np.zeros(len(flags) + 1, dtype=np.intp)
    np.cumsum(flags, out=counts[1:])
    return counts


def _pairs_taken(may_join: Flags) -> Flags:
    """Which odd lines ``k`` join line ``k + 1``, taken in order: a joined line joins no other.

    In a run of lines that may each join the next, the run's first joins, the third, and so
    on; the line after a run's last is joined by it or starts afresh.

    >>> _pairs_taken(np.array([True, True, True, False, True])).tolist()
    [True, False, True, False, True]
    """
    index = np.arange(len(may_join))
    run_starts = may_join & ~np.concatenate(([False], may_join[:-1]))
    run_start = np.maximum.accumulate(np.where(run_starts, index, 0))
    taken: Flags = may_join & ((index - run_start) & 1 == 0)
    return taken
