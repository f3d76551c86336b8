"""What makes one JSON line no reading: limits, duplicate keys, shape, with a code and a message.

Two kinds of check live here. :func:`screen_lines` looks at a whole chunk at once (NumPy
over the newline positions) for lines past the format's limits and for blank lines, before
any parser holds them; :func:`line_problem` explains a single line that failed to parse
with the declared schema, and :func:`has_duplicate_key` finds lines where a field the
pipeline reads appears twice (Polars keeps the first value, Python's json and orjson the
last: the data is ambiguous, so it is a dead letter).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import orjson
import polars as pl

from sensorstream.readings.format import (
    PATH_SEPARATOR,
    ReadingFormat,
    dead_letters,
    empty_dead_letters,
    path_keys,
)
from sensorstream.readings.scanner import repeated_key_lines
from sensorstream.readings.validation import field_expr

# What JSON calls white space inside a line; a line of nothing else is blank, not a payload
# (Polars and the scanner skip exactly these).
JSON_SPACE = b" \t\r"
_NEWLINE = 10
# No object with more than N keys fits in 4 * N bytes (each key takes at least 5: "":0,),
# so only longer lines need their keys counted.
_MIN_BYTES_PER_FIELD = 4

Problem = tuple[str, str]  # (reason code, message)


def is_blank(line: bytes) -> bool:
    """Whether a line holds nothing but JSON white space."""
    return not line.strip(JSON_SPACE)


@dataclass
class Screened:
    """A chunk with every line past a limit taken out (its newline kept, so numbering holds).

    ``dead_letters`` explains the lines taken out; ``blank`` counts the lines that were
    blank to begin with.
    """

    chunk: bytes
    dead_letters: pl.DataFrame
    blank: int


def screen_lines(
    chunk: bytes, fmt: ReadingFormat, *, origin: str, first_line: int, arrived_at: datetime
) -> Screened:
    r"""Take out the lines longer than ``max_payload_bytes`` or with more than ``max_fields``.

    >>> from datetime import UTC, datetime
    >>> from sensorstream.readings.format import Limits
    >>> fmt = ReadingFormat({"t": "float"}, limits=Limits(max_payload_bytes=8))
    >>> screened = screen_lines(
    ...     b'{"t":1}\n\n{"t":12345}\n',
    ...     fmt,
    ...     origin="in",
    ...     first_line=1,
    ...     arrived_at=datetime(2024, 1, 1, tzinfo=UTC),
    ... )
    >>> screened.chunk, screened.blank, screened.dead_letters["reason_code"].to_list()
    (b'{"t":1}\n\n\n', 1, ['payload_too_large'])
    """
    limits = fmt.limits
    buf = np.frombuffer(chunk, dtype=np.uint8)
    newlines = np.flatnonzero(buf == _NEWLINE)
    ends = newlines if chunk.endswith(b"\n") or not chunk else np.append(newlines, len(chunk))
    starts = np.concatenate(([0], newlines + 1))[: len(ends)]
    lengths = ends - starts
    blank = int(np.count_nonzero(lengths == 0))
    # A non-empty line is blank only if it starts with white space: few lines do.
    maybe_blank = np.flatnonzero(lengths > 0)
    maybe_blank = maybe_blank[np.isin(buf[starts[maybe_blank]], list(JSON_SPACE))]
    blank += sum(is_blank(chunk[starts[i] : ends[i]]) for i in maybe_blank.tolist())
    removed: list[int] = []
    problems: list[Problem] = []
    for index in np.flatnonzero(lengths > limits.max_payload_bytes).tolist():
        removed.append(index)
        problems.append(
            (
                "payload_too_large",
                f"payload of {int(lengths[index]):,} bytes is longer than "
                f"{limits.max_payload_bytes:,} (readings.limits.max_payload_bytes)",
            )
        )
    long_lines = (lengths > _MIN_BYTES_PER_FIELD * limits.max_fields) & (
        lengths <= limits.max_payload_bytes
    )
    for index in np.flatnonzero(long_lines).tolist():
        fields = count_fields(chunk[starts[index] : ends[index]])
        if fields > limits.max_fields:
            removed.append(index)
            problems.append(
                (
                    "too_many_fields",
                    f"object has {fields:,} fields, more than {limits.max_fields:,} "
                    "(readings.limits.max_fields)",
                )
            )
    if not removed:
        return Screened(chunk, empty_dead_letters(), blank)
    order = sorted(range(len(removed)), key=removed.__getitem__)
    removed = [removed[i] for i in order]
    problems = [problems[i] for i in order]
    pieces: list[bytes] = []
    cursor = 0
    for index in removed:
        pieces.append(chunk[cursor : starts[index]])
        cursor = int(ends[index])
    pieces.append(chunk[cursor:])
    dead = dead_letters(
        [chunk[starts[i] : ends[i]] for i in removed],
        [code for code, _ in problems],
        [message for _, message in problems],
        [f"line {first_line + i} of {origin}" for i in removed],
        arrived_at,
        max_raw_bytes=limits.max_raw_bytes,
    )
    return Screened(b"".join(pieces), dead, blank)


def count_fields(line: bytes) -> int:
    """Keys in a JSON line, nested objects' keys included; 0 if it is not JSON at all.

    >>> count_fields(b'{"a": 1, "b": {"c": 2, "d": [{"e": 3}]}}')
    5
    """
    try:
        stack: list[object] = [orjson.loads(line)]
    except orjson.JSONDecodeError:
        return 0  # the parser explains it
    fields = 0
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            fields += len(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return fields


def _needles(fmt: ReadingFormat) -> dict[str, bytes]:
    """Each key the pipeline reads, as it appears quoted in compact JSON.

    The keys of a nested field's path count, each of them: a repeat of ``payload`` or of
    ``location`` makes ``payload.location.loc`` as ambiguous as a repeat of ``loc``.
    """
    names = [key for where in fmt.wire_fields(pl.String()) for key in path_keys(where)]
    names += [
        part for kind in fmt.measurements.values() if kind == "geo" for part in ("lat", "lon")
    ]
    return {name: f'"{name}"'.encode() for name in dict.fromkeys(names) if name.isprintable()}


def _prefixes(fmt: ReadingFormat) -> dict[str, list[str]]:
    """Each key the pipeline reads and the distinct paths that end in it (``a.b`` for b).

    A geo measurement's ``lat`` and ``lon`` are keys inside its field.
    """
    wheres = list(fmt.wire_fields(pl.String()))
    wheres += [
        f"{fmt.field_of(name)}{PATH_SEPARATOR}{part}"
        for name, kind in fmt.measurements.items()
        if kind == "geo"
        for part in ("lat", "lon")
    ]
    prefixes: dict[str, list[str]] = {}
    for where in wheres:
        keys = path_keys(where)
        for end in range(1, len(keys) + 1):
            prefix = PATH_SEPARATOR.join(keys[:end])
            found = prefixes.setdefault(keys[end - 1], [])
            if prefix not in found:
                found.append(prefix)
    return prefixes


def duplicated_field(line: bytes, fmt: ReadingFormat) -> str | None:
    """The first field the pipeline reads that appears twice in one object of the line."""
    needles = _needles(fmt)
    if not any(line.count(needle) > 1 for needle in needles.values()):
        return None
    repeated: list[str] = []

    def pairs(items: Sequence[tuple[str, object]]) -> dict[str, object]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and key in needles:
                repeated.append(key)
            seen.add(key)
        return dict(items)

    try:
        json.loads(line, object_pairs_hook=pairs)
    except ValueError:
        return None  # not JSON: the parser explains it
    return repeated[0] if repeated else None


def has_duplicate_key(chunk: bytes, wide: pl.DataFrame, fmt: ReadingFormat) -> bool:
    """Whether some line of a chunk Polars parsed repeats a field the pipeline reads.

    Once the scanner's kernels are loaded, one pass over the chunk (without the GIL) lists
    the few lines that might, and those are checked exactly. Before that: each present value
    has its key at least once, so when a key occurs no more often than values are present,
    no line repeats it, which settles nearly every chunk with one count per key; otherwise
    (explicit nulls, the key's name inside a value, a real repeat) the lines holding it
    twice are checked one by one.
    """
    needles = _needles(fmt)
    suspects = repeated_key_lines(chunk, list(needles))
    if suspects is not None:
        if not suspects:
            return False
        lines = chunk.split(b"\n")
        return any(duplicated_field(lines[i], fmt) is not None for i in suspects)
    prefixes: dict[str, list[str]] | None = None
    for name, needle in needles.items():
        if name in wide.columns:
            present = wide.height - wide[name].null_count()
        else:
            # A nested key (or a geo value's lat or lon): each value present at a path
            # ending in it holds it once.
            prefixes = _prefixes(fmt) if prefixes is None else prefixes
            counts = [field_expr(wide, where).is_not_null().sum() for where in prefixes[name]]
            present = int(wide.select(pl.sum_horizontal(counts)).item()) if counts else 0
        if chunk.count(needle) <= present:
            continue
        for line in chunk.split(b"\n"):
            if line.count(needle) > 1 and duplicated_field(line, fmt) is not None:
                return True
    return False


_KIND_CHECKS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "float": ((int, float), "a number"),
    "int": (int, "an integer"),
    "string": (str, "a string"),
    "bool": (bool, "true or false"),
}


def _json_type(value: object) -> str:
    names = {str: "string", bool: "boolean", int: "number", float: "number", list: "array"}
    return "object" if isinstance(value, dict) else names.get(type(value), "null")


def line_problem(line: bytes, fmt: ReadingFormat, number: int) -> Problem | None:
    """Why one JSON line (line ``number`` of its input) cannot be a reading, or None.

    >>> fmt = ReadingFormat({"t": "float"})
    >>> line_problem(b'{"device_id": "a", "ts": 1, "t": }', fmt, 17)[1]
    'invalid JSON: unexpected character, expected a JSON value at column 34 of line 17'

    """
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        if "UTF-8" in error.msg:
            return "invalid_utf8", f"not valid UTF-8 text: {error.msg}"
        where = f"column {error.colno} of line {number}"
        return "invalid_json", f"invalid JSON: {error.msg} at {where}"
    if not isinstance(value, dict):
        return "not_an_object", f"expected a JSON object, got {_json_type(value)}"
    repeated = duplicated_field(line, fmt)
    if repeated is not None:
        return "duplicate_key", (
            f"field {repeated!r} appears twice in one object; JSON readers disagree on which "
            "value counts"
        )
    broken = _broken_path(value, fmt)
    if broken is not None:
        return broken
    device = _at(value, fmt.device_field)
    if device is not None and (isinstance(device, bool) or not isinstance(device, (str, int))):
        return "wrong_type", (
            f"device id field {fmt.device_field!r} must be a string, got {_json_type(device)}"
        )
    ts = _at(value, fmt.time_field)
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (str, int, float))):
        return "wrong_type", (
            f"timestamp field {fmt.time_field!r} must be an epoch number or an ISO 8601 "
            f"string, got {_json_type(ts)}"
        )
    for name, kind in fmt.measurements.items():
        item = _at(value, fmt.field_of(name))
        if item is None or kind == "latlon":
            # Polars reads any latlon value as text; validation says what is not "lat,lon".
            continue
        if kind == "geo":
            if not (
                isinstance(item, dict)
                and all(_is_number(item.get(part)) for part in ("lat", "lon"))
            ):
                why = f"measurement {name!r} must be an object with numeric lat and lon"
                return "wrong_type", why
            continue
        types, wanted = _KIND_CHECKS[kind]
        wrong_bool = isinstance(item, bool) and kind != "bool"
        if wrong_bool or not isinstance(item, types):
            got = f"{_json_type(item)} {shown(item)}"
            return "wrong_type", f"measurement {name!r} must be {wanted}, got {got}"
    for tag in fmt.tags:
        item = _at(value, fmt.field_of(tag))
        if item is not None and not isinstance(item, (str, int, float)):
            return "wrong_type", f"tag {tag!r} must be a string, got {_json_type(item)}"
    return None


def _at(value: dict[str, object], where: str) -> object:
    """The value at a field of a JSON object; None if it, or an object on its way, is missing.

    >>> _at({"payload": {"deviceId": "d-1"}}, "payload.deviceId")
    'd-1'
    """
    if PATH_SEPARATOR not in where:
        return value.get(where)
    node: object = value
    for key in path_keys(where):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _broken_path(value: dict[str, object], fmt: ReadingFormat) -> Problem | None:
    """Why a nested field cannot be read: a value on its way that is not an object, or None.

    A missing or null object on the way only makes the field missing.

    >>> fmt = ReadingFormat({"loc": "latlon"}, paths={"loc": "payload.location.loc"})
    >>> _broken_path({"payload": "oops"}, fmt)[1]
    "'payload' must be an object holding the field 'payload.location.loc', got string 'oops'"
    """
    if not fmt.nested:
        return None
    for where in fmt.wire_fields(pl.String()):
        keys = path_keys(where)
        node: object = value
        for depth, key in enumerate(keys[:-1], start=1):
            if not isinstance(node, dict):
                break
            node = node.get(key)
            if node is not None and not isinstance(node, dict):
                prefix = PATH_SEPARATOR.join(keys[:depth])
                got = f"{_json_type(node)} {shown(node)}"
                return "wrong_type", (
                    f"{prefix!r} must be an object holding the field {where!r}, got {got}"
                )
    return None


# Characters of a value worth quoting in a message: enough to recognise it, never a payload.
SHOWN_CHARACTERS = 80


def shown(value: object) -> str:
    """A value as a message quotes it: its repr, cut to :data:`SHOWN_CHARACTERS`.

    >>> shown("warm"), shown("x" * 100)[-3:]
    ("'warm'", 'xx…')
    """
    text = repr(value)
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 1] + "…"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
