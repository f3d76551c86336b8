"""The golden cases' expected.ndjson: records, their order, tolerant comparison, readable diffs.

The format is described in ``README.md`` beside this module. A record is one JSON object with a
``kind``: ``counters``, ``result``, ``late`` or ``dead_letter``.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeAlias

import pytest

from sensorstream.engine.percentiles import RELATIVE_ACCURACY
from sensorstream.engine.windows import WindowStep
from sensorstream.runtime.counters import TOTALS

JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None
Record: TypeAlias = dict[str, JsonValue]

EXPECTED = "expected.ndjson"
EXACT = 1e-9
# A percentile is a sketch estimate within RELATIVE_ACCURACY of the exact value of its rank.
APPROXIMATE = RELATIVE_ACCURACY + EXACT
KINDS = ("counters", "result", "alert", "late", "dead_letter")
FIELD_ORDER = (
    "kind",
    *TOTALS,
    "step",
    "key",
    "window_start",
    "window_end",
    "values",
    "revision",
    "final",
    "device_id",
    "ts",
    "late_for",
    "rule",
    "state",
    "previous_state",
    "severity",
    "event_time",
    "started_at",
    "sequence",
    "origin",
    "reason_code",
    "reason",
    "raw",
    "arrived_at",
)
UPDATE_HINT = (
    "If the new output is right, run `pytest tests/golden --update-golden` "
    "and check the rewritten file by hand."
)
_LINE = re.compile(r"^line (\d+) of ")


# -- records from what a run stored -----------------------------------------------------------


def counters_record(counters: Mapping[str, int]) -> Record:
    return {"kind": "counters", **{name: counters.get(name, 0) for name in TOTALS}}


def result_record(step: WindowStep, row: Mapping[str, Any]) -> Record:
    return {
        "kind": "result",
        "step": step.name,
        "key": {column: to_json(row[column]) for column in step.key},
        "window_start": to_json(row["window_start"]),
        "window_end": to_json(row["window_end"]),
        "values": {a.name: to_json(row[a.name]) for a in step.aggregates},
        "revision": to_json(row["revision"]),
        "final": to_json(row["final"]),
    }


def alert_record(row: Mapping[str, Any]) -> Record:
    return {
        "kind": "alert",
        "rule": to_json(row["rule"]),
        "key": json.loads(str(row["key"])),
        "state": to_json(row["state"]),
        "previous_state": to_json(row["previous_state"]),
        "severity": to_json(row["severity"]),
        "event_time": to_json(row["event_time"]),
        "started_at": to_json(row["started_at"]),
        "sequence": to_json(row["sequence"]),
        "reason": to_json(row["reason"]),
    }


def late_record(row: Mapping[str, Any]) -> Record:
    return {
        "kind": "late",
        "device_id": to_json(row["device_id"]),
        "ts": to_json(row["ts"]),
        "late_for": to_json(row["late_for"]),
    }


def dead_letter_record(row: Mapping[str, Any]) -> Record:
    return {
        "kind": "dead_letter",
        "origin": to_json(row["origin"]),
        "reason_code": to_json(row["reason_code"]),
        "reason": to_json(row["reason"]),
        # Raw payloads are bytes; the golden inputs are UTF-8 text, shown as such.
        "raw": bytes(row["raw"]).decode("utf-8", "backslashreplace"),
        "arrived_at": to_json(row["arrived_at"]),
    }


def to_json(value: object) -> JsonValue:
    """A stored value as JSON: timestamps as ISO 8601 in UTC with a ``Z``."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            msg = f"a stored timestamp without a time zone: {value}"
            raise ValueError(msg)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    msg = f"no JSON form for {value!r} ({type(value).__name__})"
    raise TypeError(msg)


# -- reading, ordering, comparing -------------------------------------------------------------


def read_expected(path: Path) -> list[Record]:
    records: list[Record] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            pytest.fail(f"{path.parent.name}/{path.name} line {number}: not JSON: {error}")
        if not isinstance(record, dict) or record.get("kind") not in KINDS:
            pytest.fail(f"{path.parent.name}/{path.name} line {number}: kind is one of {KINDS}")
        records.append(record)
    return records


def sort_key(record: Mapping[str, JsonValue]) -> tuple[str, ...]:
    """Counters; results by step, key and window; late readings by time; dead letters by line."""
    kind = record.get("kind")
    rank = str(KINDS.index(kind)) if isinstance(kind, str) and kind in KINDS else "9"
    if kind == "result":
        key = json.dumps(record.get("key"), ensure_ascii=False)
        return rank, str(record.get("step")), key, str(record.get("window_start"))
    if kind == "alert":
        key = json.dumps(record.get("key"), ensure_ascii=False)
        return (
            rank,
            str(record.get("rule")),
            key,
            str(record.get("event_time")),
            f"{record.get('sequence'):09}",
        )
    if kind == "late":
        return (
            rank,
            str(record.get("ts")),
            str(record.get("device_id")),
            str(record.get("late_for")),
        )
    if kind == "dead_letter":
        line = _LINE.match(str(record.get("origin")))
        return rank, f"{int(line.group(1)) if line else 0:09d}", str(record.get("reason"))
    return (rank,)


def dump(record: Mapping[str, JsonValue]) -> str:
    """One line of the expected file, with the fields in a fixed order."""
    ordered = {name: record[name] for name in FIELD_ORDER if name in record}
    ordered.update({name: value for name, value in record.items() if name not in ordered})
    return json.dumps(ordered, ensure_ascii=False)


def compare(
    expected: Sequence[Record], actual: Sequence[Record], percentiles: set[tuple[str, str]]
) -> tuple[list[Record], bool]:
    """Actual records in file order, each replaced by the expected one it matches; all matched?

    Keeping the matching expected records means a rewrite changes only what really changed
    (a hand-written exact percentile stays), and a diff shows only real differences.
    """
    unused: dict[tuple[str, ...], list[Record]] = {}
    for record in expected:
        unused.setdefault(sort_key(record), []).append(record)
    merged: list[Record] = []
    for record in sorted(actual, key=sort_key):
        candidates = unused.get(sort_key(record), [])
        match = next((e for e in candidates if matches(e, record, percentiles)), None)
        if match is None:
            merged.append(record)
        else:
            candidates.remove(match)
            merged.append(match)
    all_matched = len(expected) == len(actual) and not any(unused.values())
    return merged, all_matched


def matches(expected: Record, actual: Record, percentiles: set[tuple[str, str]]) -> bool:
    if expected.keys() != actual.keys():
        return False
    for name, value in expected.items():
        if name == "values" and isinstance(value, dict):
            other = actual[name]
            if not isinstance(other, dict) or value.keys() != other.keys():
                return False
            step = str(expected.get("step"))
            for output, number in value.items():
                tolerance = APPROXIMATE if (step, output) in percentiles else EXACT
                if not same(number, other[output], tolerance):
                    return False
        elif not same(value, actual[name], EXACT):
            return False
    return True


def same(expected: JsonValue, actual: JsonValue, tolerance: float) -> bool:
    """Equal, numbers within a relative ``tolerance``; a bool is no number here."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(expected, actual, rel_tol=tolerance, abs_tol=EXACT)
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(
            same(expected[k], actual[k], tolerance) for k in expected
        )
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(
            same(e, a, tolerance) for e, a in zip(expected, actual, strict=True)
        )
    return expected == actual


def fail_with_diff(
    case: Path,
    expected: Sequence[Record],
    actual: Sequence[Record],
    percentiles: set[tuple[str, str]],
    *,
    how: str = "",
    hint: str = UPDATE_HINT,
) -> NoReturn:
    """Fail with the fields that differ, then a unified diff of the records in file order."""
    before = [dump(record) for record in sorted(expected, key=sort_key)]
    after = [dump(record) for record in actual]
    diff = difflib.unified_diff(
        before, after, f"{case.name}/{EXPECTED}", f"actual {how}".rstrip(), lineterm=""
    )
    fields = differences(expected, actual, percentiles)
    summary = ["Fields that differ:", *fields, ""] if fields else []
    pytest.fail("\n".join([*summary, *diff, "", hint]), pytrace=False)


def differences(
    expected: Sequence[Record], actual: Sequence[Record], percentiles: set[tuple[str, str]]
) -> list[str]:
    """``label: field: expected x, actual y`` for records that exist on both sides but differ."""
    unmatched = [e for e in expected if not any(e is a for a in actual)]
    lines: list[str] = []
    for record in actual:
        if any(record is e for e in expected):
            continue
        other = next((e for e in unmatched if sort_key(e) == sort_key(record)), None)
        if other is None:
            continue
        unmatched.remove(other)
        step = str(record.get("step"))
        mine, theirs = flatten(other), flatten(record)
        for name in dict.fromkeys([*mine, *theirs]):
            output = name.removeprefix("values.")
            tolerance = APPROXIMATE if (step, output) in percentiles else EXACT
            if (
                name not in mine
                or name not in theirs
                or not same(mine[name], theirs[name], tolerance)
            ):
                was, now = (json.dumps(side.get(name, "(missing)")) for side in (mine, theirs))
                lines.append(f"  {label(record)}: {name}: expected {was}, actual {now}")
    return lines


def flatten(record: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    flat: dict[str, JsonValue] = {}
    for name, value in record.items():
        if name == "values" and isinstance(value, dict):
            flat.update({f"values.{output}": number for output, number in value.items()})
        else:
            flat[name] = value
    return flat


def label(record: Mapping[str, JsonValue]) -> str:
    """Which record: ``result per_minute {"device_id": "a"} 2024-01-01T00:00:00Z``, say."""
    kind = record.get("kind")
    if kind == "result":
        key = json.dumps(record.get("key"), ensure_ascii=False)
        return f"result {record.get('step')} {key} {record.get('window_start')}"
    if kind == "late":
        return f"late {record.get('device_id')} {record.get('ts')}"
    if kind == "dead_letter":
        return f"dead_letter {record.get('origin')}"
    return str(kind)
