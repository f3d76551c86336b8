"""The compiled kernels of :mod:`sensorstream.readings.scanner` (imported only when first used).

They are module-level functions so that Numba can cache their machine code on disk: the
first process compiles them (a few seconds), later ones load them.

The scanner reads a buffer whose last byte is a newline. That newline stops every inner
loop (it is not a space, a digit, a key byte or a string byte), so only the start of each
line checks the buffer's end: the loops over characters carry no bounds test of their own.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

# The contract with scanner.py: what a field holds, what a cell holds, how a scan ended.
STRING, FLOAT, INT, BOOL, TIME = 0, 1, 2, 3, 4
MISSING, VALUE, NULL = 0, 1, 2
SCANNED, DECLINED, OUT_OF_ROOM = 0, 1, 2
# Bytes are compared as numbers: 9 tab, 10 newline, 13 CR, 32 space, 34 '"', 43 '+',
# 44 ',', 45 '-', 46 '.', 48-57 digits, 58 ':', 69/101 'E'/'e', 92 backslash,
# 123/125 braces, and n(ull), t(rue), f(alse) are 110, 116, 102.

_POWERS = np.array([10.0**i for i in range(23)])
# Indexes are cast to unsigned, so that Numba does not add negative-index wrap-around to
# every access: that alone made the scanner 1.5 times faster.
_u = np.uint64
_jit = numba.njit(cache=True, nogil=True, boundscheck=False)


@_jit
def skip_space(buf: NDArray[np.uint8], i: int) -> int:
    """The index of the first character at or after i that is not a space, tab or CR."""
    c = buf[_u(i)]
    while c == 32 or c == 9 or c == 13:
        i += 1
        c = buf[_u(i)]
    return i


@_jit
def plain_string_end(buf: NDArray[np.uint8], i: int) -> int:
    """The index of the closing quote of a string starting at i; -1 if not plain ASCII."""
    while True:
        c = buf[_u(i)]
        if c == 34:
            return i
        if c == 92 or c < 32 or c >= 128:  # an escape, a control (the final newline), non-ASCII
            return -1
        i += 1


@_jit
def field_of_key(
    buf: NDArray[np.uint8],
    i: int,
    key_end: int,
    keys: NDArray[np.uint8],
    key_ends: NDArray[np.int64],
) -> int:
    """Which declared field the key buf[i:key_end] names; -1 if none."""
    start = 0
    for k in range(key_ends.shape[0]):
        length = key_ends[_u(k)] - start
        if length == key_end - i:
            j = 0
            while j < length and keys[_u(start + j)] == buf[_u(i + j)]:
                j += 1
            if j == length:
                return k
        start = key_ends[_u(k)]
    return -1


@_jit
def scan(
    buf: NDArray[np.uint8],
    keys: NDArray[np.uint8],
    key_ends: NDArray[np.int64],
    kinds: NDArray[np.int8],
    floats: NDArray[np.float64],
    ints: NDArray[np.int64],
    cells: NDArray[np.uint8],
    starts: NDArray[np.int64],
    lengths: NDArray[np.int64],
    max_line: int,
    max_keys: int,
) -> tuple[int, int, bool, int]:
    """Fill one row per object: (rows, SCANNED / DECLINED / OUT_OF_ROOM, fractional time, blanks).

    ``buf`` must end with a newline. A line longer than ``max_line`` bytes (its newline
    not counted) or an object with more than ``max_keys`` keys is declined: the caller's
    slower path explains it as a dead letter.
    """
    end, fields = buf.shape[0], kinds.shape[0]
    if end == 0 or buf[_u(end - 1)] != 10:
        return 0, DECLINED, False, 0
    # The field each key position held in the line before: lines nearly always list their
    # keys in one order, so the next key is checked against that field's name first.
    expected = np.full(fields + 1, -1, np.int64)
    row, i, fractional_time, blanks = 0, 0, False, 0
    while i < end:
        line_start = i
        i = skip_space(buf, i)
        c = buf[_u(i)]
        if c == 10:  # a blank line is not a payload, but it is counted
            blanks += 1
            i += 1
            continue
        if c != 123:
            return row, DECLINED, fractional_time, blanks
        if row >= cells.shape[1]:
            # More rows than room for: the caller counts the lines and scans again.
            return row, OUT_OF_ROOM, fractional_time, blanks
        for k in range(fields):
            cells[_u(k), _u(row)] = MISSING
        i = skip_space(buf, i + 1)
        if buf[_u(i)] == 125:
            i += 1
        else:
            position = 0
            while True:
                if buf[_u(i)] != 34:
                    return row, DECLINED, fractional_time, blanks
                i += 1
                field = -2  # not known yet
                if position < fields:
                    guess = expected[_u(position)]
                    if guess >= 0:
                        start = key_ends[_u(guess - 1)] if guess > 0 else 0
                        length = key_ends[_u(guess)] - start
                        j = 0
                        while j < length and keys[_u(start + j)] == buf[_u(i + j)]:
                            j += 1
                        if j == length and buf[_u(i + length)] == 34:
                            field = guess
                            i += length + 1
                if field == -2:
                    key_end = plain_string_end(buf, i)
                    if key_end < 0:
                        return row, DECLINED, fractional_time, blanks
                    field = field_of_key(buf, i, key_end, keys, key_ends)
                    if position < fields:
                        expected[_u(position)] = field
                    i = key_end + 1
                position += 1
                if position > max_keys:
                    return row, DECLINED, fractional_time, blanks
                i = skip_space(buf, i)
                if buf[_u(i)] != 58:
                    return row, DECLINED, fractional_time, blanks
                i = skip_space(buf, i + 1)
                if field >= 0 and cells[_u(field), _u(row)] != MISSING:
                    return row, DECLINED, fractional_time, blanks  # a repeated key
                kind = kinds[_u(field)] if field >= 0 else -1
                c = buf[_u(i)]
                if c == 34:
                    value_end = plain_string_end(buf, i + 1)
                    if value_end < 0 or (field >= 0 and kind != STRING):
                        return row, DECLINED, fractional_time, blanks
                    if field >= 0:
                        starts[_u(field), _u(row)] = i + 1
                        lengths[_u(field), _u(row)] = value_end - i - 1
                        cells[_u(field), _u(row)] = VALUE
                    i = value_end + 1
                elif c == 45 or 48 <= c <= 57:
                    # A JSON number, read inline: sign, integer part, fraction, exponent.
                    negative = c == 45
                    if negative:
                        i += 1
                    c = buf[_u(i)]
                    if not 48 <= c <= 57:
                        return row, DECLINED, fractional_time, blanks
                    mantissa, digits, exponent, integer = 0, 0, 0, True
                    if c == 48:
                        i += 1
                        if 48 <= buf[_u(i)] <= 57:
                            return row, DECLINED, fractional_time, blanks  # a leading 0: not JSON
                    else:
                        while 48 <= c <= 57:
                            mantissa = mantissa * 10 + (c - 48)
                            digits += 1
                            i += 1
                            c = buf[_u(i)]
                    if buf[_u(i)] == 46:
                        integer = False
                        i += 1
                        c = buf[_u(i)]
                        if not 48 <= c <= 57:
                            return row, DECLINED, fractional_time, blanks
                        while 48 <= c <= 57:
                            if mantissa or c != 48:  # leading zeros of 0.00x are not digits
                                mantissa = mantissa * 10 + (c - 48)
                                digits += 1
                            exponent -= 1
                            i += 1
                            c = buf[_u(i)]
                    if c == 101 or c == 69:
                        integer = False
                        i += 1
                        sign = 1
                        if buf[_u(i)] == 43 or buf[_u(i)] == 45:
                            sign = -1 if buf[_u(i)] == 45 else 1
                            i += 1
                        c = buf[_u(i)]
                        if not 48 <= c <= 57:
                            return row, DECLINED, fractional_time, blanks
                        power = 0
                        while 48 <= c <= 57:
                            if power < 10_000:
                                power = power * 10 + (c - 48)
                            i += 1
                            c = buf[_u(i)]
                        exponent += sign * power
                    if digits > 18:
                        return (
                            row,
                            DECLINED,
                            fractional_time,
                            blanks,
                        )  # may overflow: Polars decides
                    # Clinger's fast path: both operands exact, so one IEEE operation rounds
                    # correctly; a number outside it (even of an undeclared field) goes to
                    # Polars.
                    if not integer and (
                        mantissa > 9_007_199_254_740_992 or not -22 <= exponent <= 22
                    ):
                        return row, DECLINED, fractional_time, blanks
                    if field >= 0:
                        if kind in (STRING, BOOL) or (kind == INT and not integer):
                            return row, DECLINED, fractional_time, blanks
                        if integer:
                            whole = -mantissa if negative else mantissa
                            ints[_u(field), _u(row)] = whole
                            floats[_u(field), _u(row)] = float(whole)
                        else:
                            real = float(mantissa)
                            if exponent < 0:
                                real = real / _POWERS[_u(-exponent)]
                            else:
                                real = real * _POWERS[_u(exponent)]
                            floats[_u(field), _u(row)] = -real if negative else real
                            ints[_u(field), _u(row)] = 0
                            if kind == TIME:
                                fractional_time = True
                        cells[_u(field), _u(row)] = VALUE
                elif c == 110:  # null
                    if not (
                        buf[_u(i + 1)] == 117 and buf[_u(i + 2)] == 108 and buf[_u(i + 3)] == 108
                    ):
                        return row, DECLINED, fractional_time, blanks
                    if field >= 0:
                        cells[_u(field), _u(row)] = NULL
                    i += 4
                elif c == 116 or c == 102:  # true, false
                    if c == 116:
                        if not (
                            buf[_u(i + 1)] == 114
                            and buf[_u(i + 2)] == 117
                            and buf[_u(i + 3)] == 101
                        ):
                            return row, DECLINED, fractional_time, blanks
                        i += 4
                    else:
                        if not (
                            buf[_u(i + 1)] == 97
                            and buf[_u(i + 2)] == 108
                            and buf[_u(i + 3)] == 115
                            and buf[_u(i + 4)] == 101
                        ):
                            return row, DECLINED, fractional_time, blanks
                        i += 5
                    if field >= 0:
                        if kind != BOOL:
                            return row, DECLINED, fractional_time, blanks
                        ints[_u(field), _u(row)] = 1 if c == 116 else 0
                        cells[_u(field), _u(row)] = VALUE
                else:
                    return row, DECLINED, fractional_time, blanks  # nested or not JSON: decline
                i = skip_space(buf, i)
                c = buf[_u(i)]
                if c == 44:
                    i = skip_space(buf, i + 1)
                    continue
                if c == 125:
                    i += 1
                    break
                return row, DECLINED, fractional_time, blanks
        i = skip_space(buf, i)
        if buf[_u(i)] != 10 or i - line_start > max_line:
            return row, DECLINED, fractional_time, blanks
        i += 1
        row += 1
    return row, SCANNED, fractional_time, blanks


@_jit
def gather(
    buf: NDArray[np.uint8],
    starts: NDArray[np.int64],
    lengths: NDArray[np.int64],
    cells: NDArray[np.uint8],
    views: NDArray[np.uint8],
    data: NDArray[np.uint8],
) -> None:
    """Fill the Arrow string views of one column: 16 bytes a row, the layout Polars keeps.

    A view holds the length (4 bytes, little-endian) and then either the string itself, if
    it has at most 12 bytes, or its first 4 bytes, data buffer 0 and its offset in ``data``,
    where longer strings are copied one after another. Missing strings get an empty view.
    """
    position = 0
    for row in range(views.shape[0]):
        r = _u(row)
        for j in range(16):
            views[r, _u(j)] = 0
        if cells[r] != VALUE:
            continue
        start, length = starts[r], lengths[r]
        for j in range(4):
            views[r, _u(j)] = (length >> (8 * j)) & 255
        if length <= 12:
            for j in range(length):
                views[r, _u(4 + j)] = buf[_u(start + j)]
        else:
            for j in range(4):
                views[r, _u(4 + j)] = buf[_u(start + j)]
                views[r, _u(12 + j)] = (position >> (8 * j)) & 255
            for j in range(length):
                data[_u(position + j)] = buf[_u(start + j)]
            position += length


# Objects and arrays nested deeper than this are left to the exact check in Python.
MAX_DEPTH = 64


@_jit
def repeated_keys(
    buf: NDArray[np.uint8],
    keys: NDArray[np.uint8],
    key_ends: NDArray[np.int64],
    suspects: NDArray[np.uint8],
) -> int:
    """Flag each line where one of ``keys`` appears twice in one object, at any depth.

    ``buf`` holds lines that are valid JSON and ends with a newline; ``suspects`` has room
    for a flag per line (blank ones included). A line the kernel cannot follow exactly (a
    key with an escape, nesting deeper than :data:`MAX_DEPTH`) is flagged too: the caller
    checks flagged lines exactly. At most 64 keys. Returns the number of lines.
    """
    end = buf.shape[0]
    masks = np.zeros(MAX_DEPTH, np.uint64)
    in_object = np.zeros(MAX_DEPTH, np.bool_)
    line, i, depth, flagged = 0, 0, 0, False
    while i < end:
        c = buf[_u(i)]
        if c == 10:
            suspects[_u(line)] = 1 if flagged else 0
            line += 1
            depth, flagged = 0, False
            i += 1
            continue
        if flagged:
            i += 1
            continue
        if c == 34:
            j, escaped = i + 1, False
            d = buf[_u(j)]
            while d != 34 and d != 10:
                if d == 92:
                    escaped = True
                    if buf[_u(j + 1)] == 10:
                        break
                    j += 1
                j += 1
                d = buf[_u(j)]
            if d != 34:  # not a whole string before the line ends: not followed exactly
                flagged = True
                i = j
                continue
            k = skip_space(buf, j + 1)
            if buf[_u(k)] == 58 and depth > 0 and in_object[_u(depth)]:
                if escaped:
                    flagged = True
                else:
                    field = field_of_key(buf, i + 1, j, keys, key_ends)
                    if field >= 0:
                        bit = np.uint64(1) << np.uint64(field)
                        if masks[_u(depth)] & bit:
                            flagged = True
                        else:
                            masks[_u(depth)] |= bit
            i = j + 1
        elif c == 123 or c == 91:
            depth += 1
            if depth >= MAX_DEPTH:
                flagged = True
            else:
                masks[_u(depth)] = 0
                in_object[_u(depth)] = c == 123
            i += 1
        elif c == 125 or c == 93:
            depth -= 1
            i += 1
        else:
            i += 1
    return line


def warm_up() -> None:
    """Compile (or load from Numba's cache) the kernels for the argument types used."""
    line = np.frombuffer(b'{"k":"v"}\n', dtype=np.uint8)  # read-only, as real chunks are
    shape = (1, 2)
    cells = np.empty(shape, np.uint8)
    starts, lengths = np.empty(shape, np.int64), np.empty(shape, np.int64)
    scan(
        line,
        np.frombuffer(b"k", dtype=np.uint8),
        np.array([1], np.int64),
        np.array([0], np.int8),
        np.empty(shape, np.float64),
        np.empty(shape, np.int64),
        cells,
        starts,
        lengths,
        64,
        8,
    )
    views, data = np.empty((1, 16), np.uint8), np.empty(1, np.uint8)  # the one row scanned
    gather(line, starts[0], lengths[0], cells[0], views, data)
    repeated_keys(line, np.frombuffer(b"k", dtype=np.uint8), np.array([1], np.int64), cells[0])
