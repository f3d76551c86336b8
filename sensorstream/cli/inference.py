"""What readings a file holds, guessed from its start, for ``replay`` without ``--pipeline``.

The measurements are the numeric fields other than ``device_id`` and ``ts``: of the first
line with content (NDJSON), of a sample of rows (CSV: the columns whose values in its first
rows are all numbers; rows with the wrong number of fields are passed over, as the replay
will dead-letter them), or of the schema (Parquet). The sample is read through the file
source's own :func:`~sensorstream.sources.streams.open_input`, so a compressed file
(``r.ndjson.gz``, or gzip under any name) is sampled exactly as it will be replayed.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson

from sensorstream.errors import SourceError

NOT_MEASUREMENTS = ("device_id", "ts")
_SAMPLE_BYTES = 1024 * 1024  # of decompressed text: enough for a long first line or 1,000 rows
_SAMPLE_ROWS = 1_000


def infer_measurements(path: Path) -> dict[str, str]:
    """The numeric measurements of a readings file, each declared ``float``.

    Raises SourceError naming the file and ``--pipeline`` when it has none or cannot be read.
    """
    from sensorstream.sources.file_formats import format_of

    if not path.is_file():
        reason = "it is a folder" if path.is_dir() else "no such file"
        msg = f"cannot read {path}: {reason}"
        raise SourceError(msg)
    kind = format_of(path)
    if kind == "parquet":
        columns = _parquet_numeric(path)
    elif kind == "csv":
        columns = _csv_numeric(path)
    else:
        columns = _ndjson_numeric(path)
    found = {name: "float" for name in columns if name not in NOT_MEASUREMENTS}
    if not found:
        where = {"parquet": "in its schema", "csv": "in its first rows"}.get(
            kind, "on its first line"
        )
        msg = (
            f"{path}: no numeric measurements {where} (other than device_id and ts); "
            "pass --pipeline to describe the readings"
        )
        raise SourceError(msg)
    return found


def _ndjson_numeric(path: Path) -> list[str]:
    sample = _sample(path)
    lines = sample.split(b"\n")
    complete = lines if len(sample) < _SAMPLE_BYTES else lines[:-1]
    first = next((line for line in complete if line.strip()), None)
    if first is None:
        if len(sample) < _SAMPLE_BYTES:
            problem = "has no line with content"
        else:
            problem = f"starts with a line longer than {_SAMPLE_BYTES:,} bytes"
        msg = f"{path}: {problem}; pass --pipeline to describe the readings"
        raise SourceError(msg)
    try:
        record = orjson.loads(first)
    except orjson.JSONDecodeError:
        msg = f"{path}: the first line is not JSON; pass --pipeline to describe the readings"
        raise SourceError(msg) from None
    if not isinstance(record, dict):
        msg = f"{path}: the first line is not a JSON object; pass --pipeline"
        raise SourceError(msg)
    return [
        key
        for key, value in record.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]


def _csv_numeric(path: Path) -> list[str]:
    sample = _sample(path)
    if len(sample) >= _SAMPLE_BYTES:  # cut after the last whole row
        sample = sample[: sample.rfind(b"\n") + 1]
    text = sample.decode("utf-8", "replace").removeprefix("\ufeff")
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header:
        msg = f"{path}: has no header row; pass --pipeline to describe the readings"
        raise SourceError(msg)
    seen: dict[str, bool] = {}  # column -> every value seen so far is a number
    for number, row in enumerate(rows):
        if number >= _SAMPLE_ROWS:
            break
        if len(row) != len(header):
            continue  # a malformed row: the replay makes it a dead letter
        for name, value in zip(header, row, strict=True):
            if value.strip():
                seen[name] = seen.get(name, True) and _is_number(value)
    return [name for name in header if seen.get(name, False)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parquet_numeric(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as error:
        raise _cannot_read(path, error) from error
    return [
        field.name
        for field in schema
        if pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
    ]


def _sample(path: Path) -> bytes:
    """The first :data:`_SAMPLE_BYTES` of the file's (decompressed) content."""
    import pyarrow as pa

    from sensorstream.sources.streams import open_input

    try:
        with open_input(path) as stream:
            return stream.read(_SAMPLE_BYTES)
    except (OSError, pa.ArrowException) as error:
        raise _cannot_read(path, error) from error


def _cannot_read(path: Path, error: BaseException) -> SourceError:
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return SourceError(f"cannot read {path}: {detail}")
