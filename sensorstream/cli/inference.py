"""What readings a file holds, guessed from its start, for ``replay`` without ``--pipeline``.

The measurements are the numeric fields other than ``device_id`` and ``ts``: of the first
line with content (NDJSON), of a sample of rows (CSV: numeric columns by Polars' schema
inference over them), or of the schema (Parquet). A compressed file (``r.ndjson.gz``,
``r.csv.zst``) is sampled through its decompressor, chosen by the last extension.

The sample is read through PyArrow's input streams, which detect the compression by that
extension; once the file source reads compressed inputs itself, the sample should be read
through the same open function, so that both always agree on what a file is.
"""

from __future__ import annotations

import io
from pathlib import Path

import orjson

from sensorstream.errors import SourceError

NOT_MEASUREMENTS = ("device_id", "ts")
COMPRESSIONS = (".gz", ".bz2", ".lz4", ".zst", ".zstd")
_SAMPLE_BYTES = 1024 * 1024  # of decompressed text: enough for a long first line or 1,000 rows
_SAMPLE_ROWS = 1_000


def data_suffix(path: Path) -> str:
    """The extension that names the format, under any compression: ``r.csv.gz`` -> ``.csv``.

    >>> data_suffix(Path("readings.ndjson.gz"))
    '.ndjson'
    """
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def infer_measurements(path: Path) -> dict[str, str]:
    """The numeric measurements of a readings file, each declared ``float``.

    Raises SourceError naming the file and ``--pipeline`` when it has none or cannot be read.
    """
    from sensorstream.sources.file_formats import EXTENSIONS

    if not path.is_file():
        reason = "it is a folder" if path.is_dir() else "no such file"
        msg = f"cannot read {path}: {reason}"
        raise SourceError(msg)
    kind = EXTENSIONS.get(data_suffix(path))
    if kind == "parquet":
        columns = _parquet_numeric(path)
    elif kind == "csv":
        columns = _csv_numeric(path)
    else:  # NDJSON, or an unknown extension that replay will reject with the allowed ones
        columns = _ndjson_numeric(path)
    found = {name: "float" for name in columns if name not in NOT_MEASUREMENTS}
    if not found:
        where = {"parquet": "in its schema", "csv": "in its first rows"}.get(
            kind or "", "on its first line"
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
    import polars as pl

    sample = _sample(path)
    if len(sample) >= _SAMPLE_BYTES:  # cut after the last whole row
        sample = sample[: sample.rfind(b"\n") + 1]
    try:
        rows = pl.read_csv(
            io.BytesIO(sample), n_rows=_SAMPLE_ROWS, infer_schema_length=_SAMPLE_ROWS
        )
    except pl.exceptions.PolarsError as error:
        raise _cannot_read(path, error) from error
    return [name for name, dtype in rows.schema.items() if dtype.is_numeric()]


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

    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            return stream.read(_SAMPLE_BYTES)
    except (OSError, pa.ArrowException) as error:
        raise _cannot_read(path, error) from error


def _cannot_read(path: Path, error: BaseException) -> SourceError:
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return SourceError(f"cannot read {path}: {detail}")
