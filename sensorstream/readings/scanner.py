"""A compiled scanner for the common shape of NDJSON readings: flat objects of plain values.

Parsing JSON took half of the CPU time of a whole pipeline with Polars' reader (0.7 CPU-s per
million readings on the W1 benchmark). Readings are nearly always flat objects of short ASCII
strings, numbers, booleans and nulls, so this scanner, compiled by Numba, handles exactly that
shape in one pass and without the GIL (a reading thread really runs beside the engine).

It is strict: anything outside that shape, or any value it could not convert exactly as
Polars would (an escape, non-ASCII text, a nested value, a duplicate key, a number beyond a
correctly rounded fast conversion, a type that does not match the declared one), or a line
past the format's limits (longer than ``max_payload_bytes``, more than ``max_fields`` keys),
makes it return None, and the Polars path decodes the chunk and explains every bad line.
So the scanner changes speed, never results: ``tests/unit/readings/test_scanner.py`` checks
that it agrees with Polars on random lines or declines.

Numba takes about a second to start (longer the first time, when it compiles), so the kernels
load in a background thread on the first chunk worth scanning, and chunks are left to Polars
until they are ready: nothing waits, and small or short-lived inputs never load them.
"""

from __future__ import annotations

import gc
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from sensorstream.readings.format import ReadingFormat

if TYPE_CHECKING:
    from types import ModuleType

    from numpy.typing import NDArray

# Measurement types the scanner reads (geo values are nested objects: Polars reads those;
# a latlon value is text on the wire).
_SCANNABLE = frozenset({"string", "float", "int", "bool", "latlon"})
# Smaller chunks are left to Polars, and do not start loading the kernels: at that size
# the scanner saves less than a millisecond.
MIN_CHUNK_BYTES = 64 * 1024
_NEWLINE = 10
_INLINE_STRING = 12  # bytes a string view holds in itself
_loading: Future[ModuleType] | None = None
_loading_lock = threading.Lock()


def load_kernels() -> ModuleType:
    """The compiled kernels, imported, compiled or loaded from Numba's cache, and warmed up."""
    from sensorstream.readings import scanner_kernels

    scanner_kernels.warm_up()
    return scanner_kernels


def preload() -> None:
    """Start loading the kernels in the background now, ahead of the first chunk to scan."""
    _loader()


def _loader() -> Future[ModuleType]:
    """The kernels' loading, started on the first call."""
    global _loading
    loading = _loading
    if loading is None:
        with _loading_lock:
            loading = _loading
            if loading is None:
                loading = _loading = Future()
                threading.Thread(
                    target=_load, args=(loading,), name="load NDJSON scanner", daemon=True
                ).start()
    return loading


def _kernels_if_ready() -> ModuleType | None:
    """The kernels if they are loaded; else start loading them in the background, and None."""
    loading = _loader()
    if loading.done() and loading.exception() is None:
        return loading.result()
    return None  # still loading, or Numba failed to load: Polars decodes, as it always can


def _load(future: Future[ModuleType]) -> None:
    try:
        kernels = load_kernels()
        # Numba leaves some hundred thousand long-lived objects; moved out of the collector's
        # generations, they are no longer walked by every full collection (0.1 s per 5M
        # readings on W1). Only objects alive now are frozen: modules and the like, which
        # live as long as the process.
        gc.freeze()
        future.set_result(kernels)
    except BaseException as error:
        future.set_exception(error)


def count_newlines(data: bytes) -> int:
    r"""How many newlines ``data`` holds, counted without holding the GIL (unlike bytes.count).

    >>> count_newlines(b'{"a": 1}\n\n')
    2
    """
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == _NEWLINE))


def supports(fmt: ReadingFormat) -> bool:
    """Whether the scanner can read this format: flat, no geo measurement, plain ASCII names.

    A format with a nested field is left to Polars' reader, which takes nested objects.
    """
    if fmt.nested:
        return False
    names = fmt.wire_schema(pl.Int64())
    return all(kind in _SCANNABLE for kind in fmt.measurements.values()) and all(
        name.isascii() and name.isprintable() and '"' not in name and "\\" not in name
        for name in names
    )


@dataclass(frozen=True)
class Scanned:
    """A scanned chunk: its rows as Polars' reader would give them, and its blank lines."""

    frame: pl.DataFrame
    blank: int


def scan_lines(chunk: bytes, fmt: ReadingFormat, *, wait: bool = False) -> Scanned | None:
    """The chunk as Polars' reader would give it (wire names and types), or None to decline.

    It also declines chunks under :data:`MIN_CHUNK_BYTES` and, until the kernels have loaded
    in the background, every chunk; ``wait=True`` scans any chunk, loading them first.
    """
    if not chunk or not supports(fmt):
        return None
    if not wait and len(chunk) < MIN_CHUNK_BYTES:
        return None
    kernels = _kernels_if_ready()
    if kernels is None:
        if not wait:
            return None
        kernels = load_kernels()
    schema = fmt.wire_schema(pl.Int64())
    names = list(schema)
    codes = {
        "string": kernels.STRING,
        "float": kernels.FLOAT,
        "int": kernels.INT,
        "bool": kernels.BOOL,
        "latlon": kernels.STRING,
    }
    # A measurement may be read from a field of another name (readings' paths).
    kind_of_field = {fmt.field_of(m): kind for m, kind in fmt.measurements.items()}
    kinds = np.array(
        [
            kernels.TIME if name == fmt.time_field else codes[kind_of_field.get(name, "string")]
            for name in names
        ],
        dtype=np.int8,
    )
    encoded = [name.encode() for name in names]
    keys = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    key_ends = np.cumsum([len(key) for key in encoded], dtype=np.int64)
    # The kernels need a final newline (it stops their loops); only a file's last line
    # can lack one.
    buf = np.frombuffer(chunk if chunk.endswith(b"\n") else chunk + b"\n", dtype=np.uint8)
    # Room for one row per 16 bytes (no reading is shorter); a chunk of shorter objects runs
    # out of room and is scanned again with its lines counted: every object but the last
    # ends at a newline.
    for capacity in (len(buf) // 16 + 1, None):
        room = capacity if capacity is not None else count_newlines(chunk) + 1
        floats, ints, cells, starts, lengths = _scratch(len(names), room)
        rows, status, fractional_time, blank = kernels.scan(
            buf,
            keys,
            key_ends,
            kinds,
            floats,
            ints,
            cells,
            starts,
            lengths,
            fmt.limits.max_payload_bytes,
            fmt.limits.max_fields,
        )
        if status != kernels.OUT_OF_ROOM:
            break
    if status != kernels.SCANNED:
        return None
    columns: list[pl.Series] = []
    for k, (name, dtype) in enumerate(schema.items()):
        present = cells[k, :rows] == kernels.VALUE
        kind = int(kinds[k])
        if kind == kernels.STRING:
            columns.append(
                _strings(kernels, name, buf, starts[k, :rows], lengths[k, :rows], cells[k, :rows])
            )
            continue
        if kind == kernels.TIME:
            values: NDArray[np.generic] = floats[k, :rows] if fractional_time else ints[k, :rows]
            dtype = pl.Float64() if fractional_time else pl.Int64()
        elif kind == kernels.FLOAT:
            values = floats[k, :rows]
        elif kind == kernels.BOOL:
            values = ints[k, :rows].astype(np.bool_)
        else:
            values = ints[k, :rows]
        # Polars would share the scratch rows, which the next chunk overwrites: copy them.
        columns.append(_with_nulls(name, values.copy(), present, dtype))
    return Scanned(pl.DataFrame(columns), blank)


def repeated_key_lines(chunk: bytes, names: list[str]) -> list[int] | None:
    """Lines (from 0) of valid JSON lines where one of ``names`` may appear twice in an object.

    Exact in one direction: a line repeating a name in one object is always listed; a listed
    line may still be fine (a key with an escape, very deep nesting), so check each exactly.
    None when the kernels are not loaded (this never starts loading them), or for more
    than 64 names.
    """
    loading = _loading  # never started from here: a small input must not load Numba
    if loading is None or not loading.done() or loading.exception() is not None:
        return None
    kernels = loading.result()
    if len(names) > 64 or not chunk:
        return None
    encoded = [name.encode() for name in names]
    keys = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    key_ends = np.cumsum([len(key) for key in encoded], dtype=np.int64)
    buf = np.frombuffer(chunk if chunk.endswith(b"\n") else chunk + b"\n", dtype=np.uint8)
    suspects = np.zeros(int(np.count_nonzero(buf == _NEWLINE)) + 1, dtype=np.uint8)
    lines = kernels.repeated_keys(buf, keys, key_ends, suspects)
    return [int(i) for i in np.flatnonzero(suspects[:lines])]


_Scratch = tuple[
    "NDArray[np.float64]",
    "NDArray[np.int64]",
    "NDArray[np.uint8]",
    "NDArray[np.int64]",
    "NDArray[np.int64]",
]
_scratch_of_thread = threading.local()


def _scratch(fields: int, capacity: int) -> _Scratch:
    """This thread's kernel output arrays, with room for ``capacity`` rows of ``fields``.

    They are kept from chunk to chunk: fresh arrays cost a page fault per 4 KiB the kernel
    first writes (keeping them saved 13,000 of the 100,000 page faults of a W1 run). What a
    thread last used stays held until the thread ends: about 10 MB for 16 MiB of W1 lines.
    """
    held: _Scratch | None = getattr(_scratch_of_thread, "arrays", None)
    if held is None or held[2].shape[0] != fields or held[2].shape[1] < capacity:
        shape = (fields, capacity)
        held = (
            np.empty(shape, np.float64),
            np.empty(shape, np.int64),
            np.empty(shape, np.uint8),
            np.empty(shape, np.int64),
            np.empty(shape, np.int64),
        )
        _scratch_of_thread.arrays = held
    return held


def _with_nulls(
    name: str, values: NDArray[np.generic], present: NDArray[np.bool_], dtype: pl.DataType
) -> pl.Series:
    if present.all():
        return pl.Series(name, values, dtype)
    array = pa.array(values, mask=~present)
    return pl.Series(name, pl.from_arrow(array)).cast(dtype)


def _strings(
    kernels: ModuleType,
    name: str,
    buf: NDArray[np.uint8],
    starts: NDArray[np.int64],
    lengths: NDArray[np.int64],
    cells: NDArray[np.uint8],
) -> pl.Series:
    present = cells == kernels.VALUE
    rows = cells.shape[0]
    long_bytes = int(lengths[present & (lengths > _INLINE_STRING)].sum())
    views, data = np.empty((rows, 16), np.uint8), np.empty(long_bytes, np.uint8)
    kernels.gather(buf, starts, lengths, cells, views, data)
    missing = rows - int(present.sum())
    validity = pa.py_buffer(np.packbits(present, bitorder="little").data) if missing else None
    # Arrow string views are Polars' own layout: taken as they are, no copy, no conversion
    # (converting offsets and bytes cost about 1.5 ms per W1 chunk of 100,000 lines).
    array = pa.Array.from_buffers(
        pa.string_view(),
        rows,
        [validity, pa.py_buffer(views.data), pa.py_buffer(data.data)],
        missing,
    )
    return pl.Series(name, pl.from_arrow(array))
