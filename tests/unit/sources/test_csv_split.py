"""Where CSV records end: a quoted field's newlines end none, a stray quote's line ends itself."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sensorstream.sources.csv_split import CsvRecordSplitter

SPLITTER = CsvRecordSplitter(width=3, max_record_bytes=40)


def records(data: bytes, splitter: CsvRecordSplitter = SPLITTER) -> list[bytes]:
    """The records of a whole input, their newlines dropped."""
    ends = splitter.ends(data, len(data), final=True).tolist()
    starts = [0, *(end + 1 for end in ends)]
    stops = [*ends, len(data)]
    return [data[a:b] for a, b in zip(starts, stops, strict=True) if a < len(data)]


def test_a_line_without_quotes_or_with_balanced_ones_is_a_record() -> None:
    assert records(b'a,1,2\nb,"x, y",3\nab"c"d,4,5\n') == [b"a,1,2", b'b,"x, y",3', b'ab"c"d,4,5']


def test_a_quoted_field_holding_newlines_makes_one_record_of_its_lines() -> None:
    data = b'a,"one\ntwo\nthree",1\nb,2,3\n'
    assert records(data) == [b'a,"one\ntwo\nthree",1', b"b,2,3"]


def test_doubled_quotes_and_quoted_fields_around_the_newlines_are_well_formed() -> None:
    data = b'"a, ""b""",x,"say\n""hi"""\r\nc,2,3\r\n'
    assert records(data) == [b'"a, ""b""",x,"say\n""hi"""\r', b"c,2,3\r"]


def test_a_stray_quote_ends_its_own_line_and_the_next_line_starts_afresh() -> None:
    data = b'12" pipe,1,2\nb,2,3\nc,3,4\n'
    assert records(data) == [b'12" pipe,1,2', b"b,2,3", b"c,3,4"]


def test_two_inch_marks_do_not_join_the_lines_between_them() -> None:
    # As one span, the lines would have three fields; the quotes inside fields forbid it.
    data = b'12" pipe,1,2\nb,2,3\n10" pipe,3,4\n'
    assert records(data) == [b'12" pipe,1,2', b"b,2,3", b'10" pipe,3,4']


def test_a_quoted_field_left_open_does_not_take_the_next_quoted_record() -> None:
    data = b'a,"oops,1\nb,2,"two\nlines"\nc,3,4\n'
    assert records(data) == [b'a,"oops,1', b'b,2,"two\nlines"', b"c,3,4"]


def test_odd_lines_pair_up_in_order_each_joining_at_most_one_other() -> None:
    # Each line may join the next (a quoted newline, one field): the first joins the second,
    # and the third, which the second cannot join any more, the fourth.
    data = b'"\n"\n"\n"\n"\n'
    assert records(data, CsvRecordSplitter(width=1, max_record_bytes=40)) == [
        b'"\n"',
        b'"\n"',
        b'"',
    ]


def test_a_span_with_the_wrong_number_of_fields_is_no_record() -> None:
    assert records(b'a,"x\ny",1,2\nb,2,3\n') == [b'a,"x', b'y",1,2', b"b,2,3"]


def test_a_span_longer_than_the_limit_is_no_record() -> None:
    long = b'a,"' + b"x" * 30 + b"\n" + b"y" * 10 + b'",1\n'
    assert records(long) == [b'a,"' + b"x" * 30, b"y" * 10 + b'",1']
    assert len(records(long, CsvRecordSplitter(width=3, max_record_bytes=100))) == 1


def test_an_odd_line_that_nothing_closes_before_the_end_is_a_record() -> None:
    assert records(b'a,1,2\nb,"open,3') == [b"a,1,2", b'b,"open,3']
    assert records(b'a,1,2\nb,"open,3\n') == [b"a,1,2", b'b,"open,3']


def test_the_records_after_an_odd_line_wait_for_the_bytes_that_decide_it() -> None:
    data = b'a,1,2\nb,"x\nc,3,4\n'
    # Not the input's end, and less than the limit after the odd line: undecided.
    assert SPLITTER.ends(data, len(data), final=False).tolist() == [5]
    # Past the limit, no closing line can come: the odd line is a record alone.
    longer = data + b"d,5,6\n" * 8
    assert SPLITTER.ends(longer, len(longer), final=False).tolist()[:3] == [5, 10, 16]


def model_ends(data: bytes, width: int, limit: int) -> list[int]:
    """The rule line by line in plain Python, for a whole input: the model of the splitter."""
    lines, start = [], 0
    while start < len(data):
        stop = data.find(b"\n", start)
        stop = len(data) if stop < 0 else stop
        lines.append((start, stop))
        start = stop + 1
    odd = [data.count(b'"', a, b) % 2 == 1 for a, b in lines]
    ends, index = [], 0
    while index < len(lines):
        start, stop = lines[index]
        closing = (
            next((k for k in range(index + 1, len(lines)) if odd[k]), None) if odd[index] else None
        )
        if (
            closing is not None
            and lines[closing][1] - start <= limit
            and model_fields(data[start : lines[closing][1]]) == width
        ):
            stop, index = lines[closing][1], closing
        ends.append(stop)
        index += 1
    return [end for end in ends if end < len(data)]


def model_fields(record: bytes) -> int | None:
    """A record's fields as RFC 4180 reads them; None if its quotes are not well-formed."""
    fields, inside, at = 1, False, 0
    while at < len(record):
        char, after = record[at : at + 1], record[at + 1 : at + 2]
        if inside and char == b'"':
            if after == b'"':  # a doubled quote
                at += 1
            elif after in (b",", b"\r", b""):
                inside = False
            else:
                return None
        elif char == b'"':
            if at and record[at - 1 : at] not in (b",", b"\n"):
                return None
            inside = True
        elif char == b"," and not inside:
            fields += 1
        at += 1
    return fields


@given(
    st.lists(st.sampled_from([b"a", b"bc", b",", b'"', b'""', b"\n", b"\r\n", b" "]), max_size=80),
    st.integers(1, 4),
    st.integers(5, 40),
)
def test_the_splitter_cuts_as_the_rule_applied_line_by_line(
    parts: list[bytes], width: int, limit: int
) -> None:
    data = b"".join(parts)
    splitter = CsvRecordSplitter(width=width, max_record_bytes=limit)
    assert splitter.ends(data, len(data), final=True).tolist() == model_ends(data, width, limit)


lines = st.sampled_from(
    [
        b"a,1,2",
        b'"a,b",1,2',
        b'12" pipe,1,2',
        b'a,"open,1',
        b'x,"two',
        b'lines",1',
        b"",
        b'ab"c"d,1,2',
    ]
)


@given(
    st.lists(lines, max_size=40),
    st.integers(0, 400),
    st.integers(0, 400),
    st.integers(10, 60),
)
def test_the_ends_up_to_any_stop_begin_the_ends_up_to_a_later_one(
    chosen: list[bytes], first: int, second: int, limit: int
) -> None:
    splitter = CsvRecordSplitter(width=3, max_record_bytes=limit)
    data = b"\n".join(chosen) + b"\n"
    whole = splitter.ends(data, len(data), final=True).tolist()
    early, late = sorted((min(first, len(data)), min(second, len(data))))
    ends_early = splitter.ends(data, early, final=False).tolist()
    ends_late = splitter.ends(data, late, final=False).tolist()
    assert ends_late[: len(ends_early)] == ends_early
    assert whole[: len(ends_late)] == ends_late


@given(st.lists(lines, max_size=40), st.integers(10, 60))
def test_splitting_from_any_record_start_gives_the_same_records_after_it(
    chosen: list[bytes], limit: int
) -> None:
    splitter = CsvRecordSplitter(width=3, max_record_bytes=limit)
    data = b"\n".join(chosen) + b"\n"
    whole = splitter.ends(data, len(data), final=True).tolist()
    for end in whole:
        rest = data[end + 1 :]
        after = splitter.ends(rest, len(rest), final=True).tolist()
        assert [end + 1 + e for e in after] == [e for e in whole if e > end]
