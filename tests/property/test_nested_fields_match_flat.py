"""Nested and flat declarations of the same data decode to the same canonical rows.

Each example draws records of random values (some missing, null, of the wrong type or not
"lat,lon" text), writes each once flat and once with its values moved into nested objects
(with empty or null objects where nothing lies inside), and decodes each with its format:
the readings must be equal, and the dead letters must have the same codes on the same lines.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from sensorstream.readings import Decoded, MeasurementType, ReadingFormat, decode_json_lines

NOW = datetime(2024, 1, 1, 1, tzinfo=UTC)
TS = 1_704_067_200_000
MEASUREMENTS: dict[str, MeasurementType] = {
    "temperature": "float",
    "count": "int",
    "label": "string",
    "where": "latlon",
}
FLAT = ReadingFormat(measurements=MEASUREMENTS, tags=("site",))
# Where the nested records keep each flat field.
NESTED_FIELDS = {
    "device_id": "meta.id",
    "temperature": "data.temperature",
    "count": "data.stats.count",
    "where": "data.where",
    "site": "meta.site",
}
NESTED = ReadingFormat(
    measurements=MEASUREMENTS,
    device_field=NESTED_FIELDS["device_id"],
    tags=("site",),
    paths={name: NESTED_FIELDS[name] for name in ("temperature", "count", "where", "site")},
)
MISSING = object()


def _mostly(good: st.SearchStrategy[object], bad: list[object]) -> st.SearchStrategy[object]:
    """A good value nine times in ten, else one of ``bad`` (missing, null, wrong)."""
    return st.integers(0, 9).flatmap(lambda roll: good if roll else st.sampled_from(bad))


_VALUES = {
    "device_id": _mostly(st.sampled_from(["a", "b"]), ["", None, MISSING]),
    "ts": _mostly(
        st.sampled_from([TS, TS + 1500, "2024-01-01T00:00:02Z"]), [12345, "soon", None, MISSING]
    ),
    "temperature": _mostly(st.floats(-50, 50, allow_nan=False), [None, MISSING, "warm"]),
    "count": _mostly(st.integers(-5, 5), [None, MISSING, 1.5]),
    "label": _mostly(st.sampled_from(["on", "off"]), [None, MISSING]),
    "where": _mostly(st.sampled_from(["47.37,8.52", "47.37, 8.52"]), ["north", "95,1", None, 3]),
    "site": _mostly(st.sampled_from(["x", "y"]), [None, MISSING]),
}
Record = dict[str, object]


@st.composite
def records(draw: st.DrawFn) -> Record:
    return {key: value for key, values in _VALUES.items() if (value := draw(values)) is not MISSING}


def flat_line(record: Record) -> str:
    return json.dumps(record)


def nested_line(record: Record, empty_objects: list[str | None]) -> str:
    """The record with its values moved to their nested fields; ``empty_objects`` adds
    an empty (or null) object at the start of a path where the record has nothing inside."""
    nested: dict[str, object] = {}
    for key, value in record.items():
        *parents, leaf = NESTED_FIELDS.get(key, key).split(".")
        node = nested
        for parent in parents:
            child = node.setdefault(parent, {})
            assert isinstance(child, dict)
            node = child
        node[leaf] = value
    for top in ("meta", "data"):
        if top not in nested and empty_objects:
            choice = empty_objects.pop()
            nested[top] = {} if choice == "{}" else None if choice is None else {"stats": {}}
    return json.dumps(nested)


def decode(lines: list[str], fmt: ReadingFormat) -> Decoded:
    chunk = "".join(f"{line}\n" for line in lines).encode()
    return decode_json_lines(chunk, fmt, arrived_at=NOW, origin="in.ndjson")


def outcomes(decoded: Decoded) -> list[tuple[str, str]]:
    dead = decoded.dead_letters.select("origin", "reason_code").rows()
    return sorted((str(origin), str(code)) for origin, code in dead)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(records(), min_size=1, max_size=12),
    st.lists(st.sampled_from(["{}", None, "stats"]), max_size=24),
)
def test_nested_and_flat_declarations_decode_to_the_same_rows(
    data: list[Record], empty_objects: list[str | None]
) -> None:
    flat = decode([flat_line(record) for record in data], FLAT)
    nested = decode([nested_line(record, empty_objects) for record in data], NESTED)
    assert nested.readings.equals(flat.readings)
    assert outcomes(nested) == outcomes(flat)
    assert (nested.payloads, nested.blank) == (flat.payloads, flat.blank)
