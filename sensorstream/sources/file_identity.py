"""What identifies an input file, so a checkpoint is never resumed into another file.

A checkpoint records the file's size, modification time (``mtime_ns``) and the SHA-256 of
its first and last 64 KiB as stored (compressed bytes, for a compressed file), plus its
resolved path for messages. On the next run, the file is:

- **the same** if all of these are equal;
- **grown** if it is larger, its first block unchanged and the 64 KiB that ended at the old
  size still hash to the old last block: something was appended (a log file, another gzip
  member), so the old positions are still valid;
- **changed** otherwise, with a description of what differs.

The modification time alone settles nothing either way, and is still treated as a change
when everything else matches: an edit in the middle that keeps the size (a digit fixed in
place) changes only the mtime and the middle bytes, which are not hashed, and resuming into
it would silently mix two versions. Hashing the whole file would tell, but would cost a read
of every byte at every start; a file merely copied or touched costs a ``--fresh`` run instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sensorstream.sources.base import Identity, InputChange

BLOCK = 64 * 1024
_FIELDS = ("size", "mtime_ns", "head_sha256", "tail_sha256")


def _sha256(path: Path, start: int, end: int) -> str:
    """The SHA-256 of the bytes ``[start, end)`` of a file."""
    with path.open("rb") as handle:
        handle.seek(start)
        return hashlib.sha256(handle.read(max(0, end - start))).hexdigest()


def file_identity(path: Path) -> Identity:
    """The size, mtime and first and last 64 KiB's hashes of a file, and its resolved path."""
    stat = path.stat()
    size = stat.st_size
    return {
        "path": str(path.resolve()),
        "size": size,
        "mtime_ns": stat.st_mtime_ns,
        "head_sha256": _sha256(path, 0, min(size, BLOCK)),
        "tail_sha256": _sha256(path, max(0, size - BLOCK), size),
    }


def compare_file(path: Path, recorded: Mapping[str, Any]) -> InputChange | None:
    r"""How ``path`` differs from its identity in a checkpoint (``recorded``); None if it does not.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     log = Path(folder) / "r.ndjson"
    ...     _ = log.write_text('{"a": 1}\n')
    ...     then = file_identity(log)
    ...     with log.open("a") as handle:
    ...         _ = handle.write('{"a": 2}\n')
    ...     compare_file(log, then).grown
    True
    """
    now = file_identity(path)
    name = path.name
    if any(not isinstance(recorded.get(field), int | str) for field in _FIELDS):
        return InputChange(
            f"the checkpoint does not record which {name} it read (it was written by an "
            "older sensorstream)"
        )
    if all(recorded[field] == now[field] for field in _FIELDS):
        return None
    old_size, new_size = int(recorded["size"]), int(now["size"])
    head_kept = _sha256(path, 0, min(old_size, BLOCK)) == recorded["head_sha256"]
    if new_size > old_size and head_kept:
        tail_kept = _sha256(path, max(0, old_size - BLOCK), old_size) == recorded["tail_sha256"]
        if tail_kept:
            return InputChange(
                f"{name} has grown since the checkpoint: {old_size:,} bytes then, {new_size:,} now",
                grown=True,
            )
    modified = _modified(int(recorded["mtime_ns"]), int(now["mtime_ns"]))
    if old_size != new_size:
        what = f"{old_size:,} bytes then, {new_size:,} now"
    elif any(recorded[field] != now[field] for field in ("head_sha256", "tail_sha256")):
        what = f"the same size ({new_size:,} bytes) but different content"
    else:
        what = (
            f"the same size and first and last {BLOCK // 1024} KiB, but a new modification "
            "time (edited in place, or copied or touched)"
        )
    return InputChange(f"{name} changed since the checkpoint: {what}; {modified}")


def _modified(then_ns: int, now_ns: int) -> str:
    """'modified 2026-12-01 10:00:03 UTC then, 10:04:10 now' (the date again if it differs)."""
    then = datetime.fromtimestamp(then_ns / 1e9, tz=UTC)
    now = datetime.fromtimestamp(now_ns / 1e9, tz=UTC)
    if then_ns == now_ns:
        return f"modification time unchanged ({then:%Y-%m-%d %H:%M:%S} UTC)"
    clock = "%H:%M:%S" if f"{then:%H:%M:%S}" != f"{now:%H:%M:%S}" else "%H:%M:%S.%f"
    shown_now = now.strftime(clock if now.date() == then.date() else f"%Y-%m-%d {clock}")
    return f"modified {then.strftime(f'%Y-%m-%d {clock}')} UTC then, {shown_now} now"
