"""Opening an input file as a stream of bytes, plain or compressed (gzip, zstd), by content.

Compression is told by the file's first bytes (gzip starts ``1f 8b``, zstd ``28 b5 2f fd``),
so a gzip file named ``.ndjson`` is read as gzip; a ``.gz``, ``.zst`` or ``.zstd`` name on a
file without those bytes is an error rather than a guess. A compressed file is read as a
sequential stream of its decompressed bytes: it has no random access, so reading from an
offset decompresses everything before it. Concatenated gzip members and zstd frames (``cat
a.gz b.gz``) read as one stream; a stream cut off early is read up to the cut, and only then
reported (:class:`TruncatedInput`), so no complete line before it is lost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

import pyarrow as pa

from sensorstream.errors import SourceError

Compression = Literal["gzip", "zstd"]

MAGIC: Final[dict[Compression, bytes]] = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}
SUFFIXES: Final[dict[str, Compression]] = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
# Excel and some Windows tools start UTF-8 text with this byte-order mark.
BOM: Final = b"\xef\xbb\xbf"


class TruncatedInput(SourceError):
    """A compressed input ends in the middle of its stream (a partial copy or download)."""


def compression_of(path: Path) -> Compression | None:
    """The compression of a file, by its first bytes; None for a plain file.

    A name that says compressed (``.gz``, ``.zst``) on a file that is not is a SourceError:
    decompressing it would fail, and reading it plain would hide a mistake.
    """
    with path.open("rb") as handle:
        head = handle.read(4)
    for compression, magic in MAGIC.items():
        if head.startswith(magic):
            return compression
    claimed = SUFFIXES.get(path.suffix.lower())
    if claimed is not None:
        msg = (
            f"cannot read {path}: its name ends {path.suffix} but it is not {claimed} "
            f"(it does not start with {MAGIC[claimed].hex(' ')}); rename it or compress it"
        )
        raise SourceError(msg)
    return None


def without_compression_suffix(path: Path) -> Path:
    """The name the content goes by: ``readings.ndjson.gz`` is ``readings.ndjson``.

    >>> without_compression_suffix(Path("in/readings.csv.zst")).name
    'readings.csv'
    """
    if path.suffix.lower() in SUFFIXES:
        return path.with_suffix("")
    return path


class InputStream(ABC):
    """The bytes of a file, decompressed if it is compressed, read front to back.

    ``offset`` counts the bytes read so far (decompressed); :attr:`stored_consumed` counts
    the bytes of the file itself consumed so far (compressed ones), for progress bars.
    """

    path: Path
    offset: int

    @property
    @abstractmethod
    def stored_consumed(self) -> int:
        """Bytes of the stored file consumed so far."""

    @abstractmethod
    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes, fewer only at the end; ``b""`` once the input is used up.

        Raises:
            TruncatedInput: a compressed stream ends early; every byte before the cut has
                been returned by earlier calls.
        """

    @abstractmethod
    def close(self) -> None:
        """Close the file."""

    def __enter__(self) -> InputStream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class PlainStream(InputStream):
    """A file read as it is stored."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0
        self._handle = path.open("rb")

    @property
    def stored_consumed(self) -> int:
        """Bytes read so far."""
        return self.offset

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes."""
        data = self._handle.read(size)
        self.offset += len(data)
        return data

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


class CompressedStream(InputStream):
    """A gzip or zstd file read as its decompressed bytes, through Arrow's decompressors."""

    # Decompressed bytes asked of Arrow per call: after a truncation is found, the bytes of
    # the failed call are recovered one by one, so this bounds that slow path.
    _BLOCK = 256 * 1024

    def __init__(self, path: Path, compression: Compression) -> None:
        self.path, self.compression, self.offset = path, compression, 0
        self._truncated_at: int | None = None
        self._raw, self._stream = self._open()

    def _open(self) -> tuple[pa.NativeFile, pa.NativeFile]:
        raw = pa.OSFile(str(self.path), "r")
        return raw, pa.CompressedInputStream(raw, self.compression)

    @property
    def stored_consumed(self) -> int:
        """Compressed bytes consumed so far (Arrow reads ahead a little)."""
        return self._raw.tell()

    def read(self, size: int) -> bytes:
        """Up to ``size`` decompressed bytes."""
        if self._truncated_at is not None:
            raise self._truncation()
        parts: list[bytes] = []
        wanted = size
        try:
            while wanted > 0:
                block = self._stream.read(min(wanted, self._BLOCK))
                if not block:
                    break
                parts.append(block)
                wanted -= len(block)
                self.offset += len(block)
        except OSError as error:
            # Arrow says "Truncated compressed stream"; anything else is corrupt data.
            if "truncated" not in str(error).lower():
                msg = f"cannot read {self.path}: its {self.compression} data is corrupt ({error})"
                raise SourceError(msg) from error
            parts.append(self._recover())
        data = b"".join(parts)
        if not data and self._truncated_at is not None:
            raise self._truncation()
        return data

    def _recover(self) -> bytes:
        """The bytes Arrow decompressed but dropped when it found the stream truncated.

        Arrow raises as soon as a read cannot be filled, discarding what it had already
        decompressed for that read. Reading again to the same offset and then byte by byte
        returns every decompressed byte before the cut (at most one block of slow reads).
        """
        reached = self.offset
        self.close()
        self._raw, self._stream = self._open()
        skipped = 0
        while skipped < reached:
            skipped += len(self._stream.read(min(reached - skipped, self._BLOCK)))
        recovered = bytearray()
        try:
            while byte := self._stream.read(1):
                recovered += byte
        except OSError:
            pass  # the cut: everything before it is in ``recovered``
        self.offset += len(recovered)
        self._truncated_at = self.offset
        return bytes(recovered)

    def _truncation(self) -> TruncatedInput:
        return TruncatedInput(
            f"cannot read {self.path}: the {self.compression} stream ends early, cut off "
            f"after {self._truncated_at:,} bytes of decompressed data (a partial copy or "
            "download?); the complete lines before the cut were read"
        )

    def close(self) -> None:
        """Close the file."""
        self._stream.close()
        self._raw.close()


def open_input(path: Path) -> InputStream:
    """Open a file as a stream of its (decompressed) bytes; see :func:`compression_of`."""
    compression = compression_of(path)
    return PlainStream(path) if compression is None else CompressedStream(path, compression)
