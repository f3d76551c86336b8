"""The compiled kernels of :mod:`sensorstream.readings.scanner` (imported only when first used).

They are module-level functions so that Numba can cache their machine code on disk: the
first process compiles them (a few seconds), later ones load them.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

# The contract with scanner.py: what a field holds, what a cell holds, how a scan ended.
STRING, FLOAT, INT, BOOL, TIME = 0, 1, 2, 3, 4
MISSING, VALUE, NULL = 0, 1, 2
SCANNED, DECLINED, OUT_OF_ROOM = 0, 1, 2
# Bytes are compared as numbers: 9 tab, 10 newline, 13 CR, 32 space, 34 '"', 44 ',',
# 45 '-', 46 '.', 48-57 digits, 58 ':', 69/101 'E'/'e', 92 backslash, 123/125 braces,
# and n(ull), t(rue), f(alse) are 110, 116, 102.

_POWERS = np.array([10.0**i for i in range(23)])
_jit = numba.njit(cache=True, nogil=True, boundscheck=False)


@_jit
def skip_space(buf: NDArray[np.uint8], i: int, end: int) -> int:
    """The index of the first character at or after i that is not a space, tab or CR."""
    while i < end and (buf[i] == 32 or buf[i] == 9 or buf[i] == 13):
        i += 1
    return i


@_jit
def plain_string_end(buf: NDArray[np.uint8], i: int, end: int) -> int:
    """The index of the closing quote of a string starting at i; -1 if not plain ASCII."""
    while i < end:
        c = buf[i]
        if c == 34:
            return i
        if c == 92 or c < 32 or c >= 128:
            return -1
        i += 1
    return -1


@_jit
def number(buf: NDArray[np.uint8], i: int, end: int) -> tuple[int, int, int, float]:
    """Parse a JSON number: (next index, 0 bad / 1 integer / 2 float, int, float)."""
    negative = buf[i] == 45
    if negative:
        i += 1
    if i >= end or not (48 <= buf[i] <= 57):
        return i, 0, 0, 0.0
    mantissa, digits = 0, 0
    if buf[i] == 48:
        i += 1
        if i < end and 48 <= buf[i] <= 57:
            return i, 0, 0, 0.0  # a leading zero is not JSON
    else:
        while i < end and 48 <= buf[i] <= 57:
            mantissa = mantissa * 10 + (buf[i] - 48)
            digits += 1
            i += 1
    exponent, integer = 0, True
    if i < end and buf[i] == 46:
        integer = False
        i += 1
        if i >= end or not (48 <= buf[i] <= 57):
            return i, 0, 0, 0.0
        while i < end and 48 <= buf[i] <= 57:
            if mantissa or buf[i] != 48:
                mantissa = mantissa * 10 + (buf[i] - 48)
                digits += 1
            exponent -= 1
            i += 1
    if i < end and (buf[i] == 101 or buf[i] == 69):
        integer = False
        i += 1
        sign = 1
        if i < end and (buf[i] == 43 or buf[i] == 45):
            sign = -1 if buf[i] == 45 else 1
            i += 1
        if i >= end or not (48 <= buf[i] <= 57):
            return i, 0, 0, 0.0
        power = 0
        while i < end and 48 <= buf[i] <= 57:
            if power < 10_000:
                power = power * 10 + (buf[i] - 48)
            i += 1
        exponent += sign * power
    if digits > 18:
        return i, 0, 0, 0.0  # may overflow: let Polars decide
    if integer:
        value = -mantissa if negative else mantissa
        return i, 1, value, float(value)
    # Clinger's fast path: both operands exact, so one IEEE operation rounds correctly.
    if mantissa > 9_007_199_254_740_992 or exponent < -22 or exponent > 22:
        return i, 0, 0, 0.0
    result = float(mantissa)
    result = result / _POWERS[-exponent] if exponent < 0 else result * _POWERS[exponent]
    return i, 2, 0, -result if negative else result


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
) -> tuple[int, int, bool]:
    """Fill one row per object: (rows, SCANNED / DECLINED / OUT_OF_ROOM, fractional time)."""
    end, fields = buf.shape[0], kinds.shape[0]
    row, i, fractional_time = 0, 0, False
    while True:
        i = skip_space(buf, i, end)
        if i >= end:
            return row, SCANNED, fractional_time
        if buf[i] == 10:  # a blank line is not a payload
            i += 1
            continue
        if buf[i] != 123:
            return row, DECLINED, fractional_time
        if row >= cells.shape[1]:
            return row, OUT_OF_ROOM, fractional_time  # more rows than room for: the caller counts
        i += 1
        for k in range(fields):
            cells[k, row] = MISSING
        i = skip_space(buf, i, end)
        if i < end and buf[i] == 125:
            i += 1
        else:
            while True:
                if i >= end or buf[i] != 34:
                    return row, DECLINED, fractional_time
                key_end = plain_string_end(buf, i + 1, end)
                if key_end < 0:
                    return row, DECLINED, fractional_time
                field, start = -1, 0
                for k in range(fields):
                    length = key_ends[k] - start
                    if length == key_end - i - 1:
                        same = True
                        for j in range(length):
                            if keys[start + j] != buf[i + 1 + j]:
                                same = False
                                break
                        if same:
                            field = k
                            break
                    start = key_ends[k]
                i = skip_space(buf, key_end + 1, end)
                if i >= end or buf[i] != 58:
                    return row, DECLINED, fractional_time
                i = skip_space(buf, i + 1, end)
                if i >= end:
                    return row, DECLINED, fractional_time
                if field >= 0 and cells[field, row] != MISSING:
                    return row, DECLINED, fractional_time  # a repeated key
                kind = kinds[field] if field >= 0 else -1
                c = buf[i]
                if c == 34:
                    value_end = plain_string_end(buf, i + 1, end)
                    if value_end < 0 or (field >= 0 and kind != STRING):
                        return row, DECLINED, fractional_time
                    if field >= 0:
                        starts[field, row] = i + 1
                        lengths[field, row] = value_end - i - 1
                        cells[field, row] = VALUE
                    i = value_end + 1
                elif c == 45 or 48 <= c <= 57:
                    i, parsed, whole, real = number(buf, i, end)
                    if parsed == 0:
                        return row, DECLINED, fractional_time
                    if field >= 0:
                        if kind in (STRING, BOOL) or (kind == INT and parsed != 1):
                            return row, DECLINED, fractional_time
                        if kind == TIME and parsed != 1:
                            fractional_time = True
                        floats[field, row] = real
                        ints[field, row] = whole
                        cells[field, row] = VALUE
                elif c == 110 or c == 116 or c == 102:
                    word = 4 if c != 102 else 5
                    if i + word > end:
                        return row, DECLINED, fractional_time
                    if c == 110 and not (
                        buf[i + 1] == 117 and buf[i + 2] == 108 and buf[i + 3] == 108
                    ):
                        return row, DECLINED, fractional_time
                    if c == 116 and not (
                        buf[i + 1] == 114 and buf[i + 2] == 117 and buf[i + 3] == 101
                    ):
                        return row, DECLINED, fractional_time
                    if c == 102 and not (
                        buf[i + 1] == 97
                        and buf[i + 2] == 108
                        and buf[i + 3] == 115
                        and buf[i + 4] == 101
                    ):
                        return row, DECLINED, fractional_time
                    if field >= 0:
                        if c == 110:
                            cells[field, row] = NULL
                        elif kind != BOOL:
                            return row, DECLINED, fractional_time
                        else:
                            ints[field, row] = 1 if c == 116 else 0
                            cells[field, row] = VALUE
                    i += word
                else:
                    return row, DECLINED, fractional_time  # nested or not JSON: decline
                i = skip_space(buf, i, end)
                if i < end and buf[i] == 44:
                    i = skip_space(buf, i + 1, end)
                    continue
                if i < end and buf[i] == 125:
                    i += 1
                    break
                return row, DECLINED, fractional_time
        i = skip_space(buf, i, end)
        if i < end and buf[i] != 10:
            return row, DECLINED, fractional_time
        i += 1
        row += 1


@_jit
def gather(
    buf: NDArray[np.uint8],
    starts: NDArray[np.int64],
    lengths: NDArray[np.int64],
    cells: NDArray[np.uint8],
    offsets: NDArray[np.int64],
    data: NDArray[np.uint8],
) -> None:
    """Copy each present string of one column into one contiguous Arrow data buffer."""
    position = 0
    for row in range(offsets.shape[0] - 1):
        offsets[row] = position
        if cells[row] == VALUE:
            start = starts[row]
            for j in range(lengths[row]):
                data[position + j] = buf[start + j]
            position += lengths[row]
    offsets[offsets.shape[0] - 1] = position


def warm_up() -> None:
    """Compile (or load from Numba's cache) both kernels for the argument types used."""
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
    )
    data = np.empty(1, np.uint8)
    gather(line, starts[0], lengths[0], cells[0], np.empty(2, np.int64), data)
