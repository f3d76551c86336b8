"""Checkpoints on disk: each partition's state and source position, written atomically.

A checkpoint is a folder ``ckpt-<seq>`` holding ``manifest.json`` (pipeline fingerprint,
the identity of the input read, positions, each partition's counters and metadata, and where
each state frame lies) and
``state.arrow``, the Arrow IPC streams of all state frames back to back. It is
written under a temporary name, fsynced and renamed, then ``CURRENT`` is switched to it with
an atomic replace; a crash at any point leaves the previous checkpoint intact. One
partition's state is self-contained, so it can be loaded alone and moved to another worker.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from sensorstream.durable import sync_file, sync_folder
from sensorstream.engine.operator import OperatorState
from sensorstream.errors import CheckpointError

# Format 2 (counters per partition, the source's identity, CSV positions in bytes) cannot be
# read as format 1 was: positions of one would be misread as the other's.
_FORMAT = 2


@dataclass
class Checkpoint:
    """What a restart needs: positions, counters and state per partition, and what was read."""

    fingerprint: str
    positions: dict[int, int]
    counters: dict[int, dict[str, int]]
    partitions: dict[int, OperatorState] = field(default_factory=dict)
    finished: bool = False
    source: dict[str, Any] = field(default_factory=dict)  # Source.identity() when taken
    # Per stream, per partition, the source position (a pipeline of several streams; one
    # stream's are ``positions`` themselves).
    streams: dict[str, dict[int, int]] = field(default_factory=dict)


class CheckpointStore:
    """Reads and writes the checkpoints of one pipeline in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, fingerprint: str) -> Checkpoint | None:
        """The latest checkpoint, None if there is none; refuses one of another pipeline."""
        current = self.folder / "CURRENT"
        if not current.exists():
            return None
        path = self.folder / current.read_text().strip()
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError) as error:
            msg = f"checkpoint {path} is unreadable ({error}); delete {self.folder} to start over"
            raise CheckpointError(msg) from None
        if manifest.get("format") != _FORMAT:
            msg = (
                f"the checkpoint in {self.folder} was written by another version of "
                f"sensorstream (format {manifest.get('format')}, this one reads {_FORMAT}); "
                "run with --fresh to start over"
            )
            raise CheckpointError(msg)
        if manifest.get("fingerprint") != fingerprint:
            msg = (
                f"the checkpoint in {self.folder} was written by a different pipeline definition; "
                "run with --fresh to discard it, or point checkpoint.dir elsewhere"
            )
            raise CheckpointError(msg)
        blob = (path / "state.arrow").read_bytes()
        partitions = {}
        for key, part in manifest["partitions"].items():
            frames = {
                name: pl.read_ipc(io.BytesIO(blob[start : start + length]))
                for name, (start, length) in part["frames"].items()
            }
            partitions[int(key)] = OperatorState(frames=frames, meta=part["meta"])
        return Checkpoint(
            fingerprint=fingerprint,
            positions={int(k): int(v) for k, v in manifest["positions"].items()},
            counters={
                int(p): {str(k): int(v) for k, v in counts.items()}
                for p, counts in manifest["counters"].items()
            },
            partitions=partitions,
            finished=bool(manifest.get("finished", False)),
            source=dict(manifest.get("source", {})),
            streams={
                str(name): {int(k): int(v) for k, v in positions.items()}
                for name, positions in manifest.get("streams", {}).items()
            },
        )

    def save(self, checkpoint: Checkpoint) -> Path:
        """Write a new checkpoint and make it current; older ones are removed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        sequence = self._next_sequence()
        name = f"ckpt-{sequence:08d}"
        staging = self.folder / f".{name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        partitions: dict[str, Any] = {}
        offset = 0
        with (staging / "state.arrow").open("wb") as blob:
            for partition, state in checkpoint.partitions.items():
                frames = {}
                for frame_name, frame in sorted(state.frames.items()):
                    buffer = io.BytesIO()
                    frame.write_ipc(buffer)
                    data = buffer.getvalue()
                    blob.write(data)
                    frames[frame_name] = [offset, len(data)]
                    offset += len(data)
                partitions[str(partition)] = {"meta": state.meta, "frames": frames}
        manifest = {
            "format": _FORMAT,
            "fingerprint": checkpoint.fingerprint,
            "positions": {str(k): v for k, v in checkpoint.positions.items()},
            "counters": {str(p): counts for p, counts in checkpoint.counters.items()},
            "partitions": partitions,
            "finished": checkpoint.finished,
            "source": checkpoint.source,
            "streams": checkpoint.streams,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest))
        _fsync_tree(staging)
        final = self.folder / name
        staging.rename(final)
        pointer = self.folder / ".CURRENT.tmp"
        pointer.write_text(name)
        sync_file(pointer)
        pointer.replace(self.folder / "CURRENT")
        sync_folder(self.folder)
        for old in self.folder.glob("ckpt-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def clear(self) -> None:
        """Forget every checkpoint (``--fresh``)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _next_sequence(self) -> int:
        numbers = [int(p.name.split("-")[1]) for p in self.folder.glob("ckpt-*") if p.is_dir()]
        return max(numbers, default=0) + 1


def _fsync_tree(folder: Path) -> None:
    for item in folder.iterdir():
        sync_file(item)
    sync_folder(folder)
