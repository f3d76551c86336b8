"""Checkpoints on disk: one self-contained unit per partition, each written atomically.

A partition's unit is what that partition needs to continue anywhere: its state (every
step's frames and metadata), each stream's source position in it, and its counters. Units
are saved and loaded one partition at a time, so a partition can be checkpointed when it
is revoked and restored when it is assigned without touching the others (a worker of a
consumer group holds only some partitions; the ones it gives up go on elsewhere).

Layout of ``checkpoint.dir``::

    pipeline.json                   format, fingerprint, the input's identity, finished
    partitions/<n>/CURRENT          the name of partition n's current unit
    partitions/<n>/ckpt-<seq>/      manifest.json (positions, counters, metadata, frames)
                                    state.arrow (the state frames, Arrow IPC back to back)

A unit is written under a temporary name, fsynced and renamed, then its ``CURRENT`` is
switched with an atomic replace; a crash at any point leaves the previous unit intact.
``pipeline.json`` is replaced the same way after the units. Units are independent: a
crash between two of them leaves one partition newer than the other, which is harmless,
because each partition's output in the sinks is restored to its own unit's position.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from sensorstream.durable import sync_file, sync_folder
from sensorstream.engine.operator import OperatorState
from sensorstream.errors import CheckpointError

# Format 3: one unit per partition (format 2 held every partition in one folder).
_FORMAT = 3
_PIPELINE = "pipeline.json"
_PARTITIONS = "partitions"


@dataclass
class PartitionCheckpoint:
    """One partition's unit: its state, each stream's position in it, and its counters."""

    partition: int
    positions: dict[str, int]  # stream name -> source position to resume after
    counters: dict[str, int]
    state: OperatorState = field(default_factory=OperatorState)


@dataclass
class Checkpoint:
    """The pipeline's checkpoint: its partitions' units and what was read.

    ``source`` is the input's identity when taken (:meth:`Source.identity`), ``finished``
    that the whole input was read to its end.
    """

    fingerprint: str
    partitions: dict[int, PartitionCheckpoint] = field(default_factory=dict)
    finished: bool = False
    source: dict[str, Any] = field(default_factory=dict)

    def positions(self, stream: str) -> dict[int, int]:
        """One stream's position in each partition."""
        return {
            p: unit.positions[stream]
            for p, unit in self.partitions.items()
            if stream in unit.positions
        }


class CheckpointStore:
    """Reads and writes the checkpoint units of one pipeline in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    # -- reading ---------------------------------------------------------------------------
    def load(self, fingerprint: str) -> Checkpoint | None:
        """Every partition's unit, None if there is none; refuses one of another pipeline."""
        self._refuse_older_format()
        header = self._header()
        if header is not None:
            self._check(header, fingerprint, self.folder / _PIPELINE)
        units = {p: self.load_partition(fingerprint, p) for p in self.stored_partitions()}
        found = {p: unit for p, unit in units.items() if unit is not None}
        if header is None and not found:
            return None
        return Checkpoint(
            fingerprint=fingerprint,
            partitions=found,
            finished=bool(header and header.get("finished", False)),
            source=dict(header.get("source", {})) if header else {},
        )

    def load_header(self, fingerprint: str) -> Checkpoint | None:
        """The pipeline's part alone (input identity, finished), None before its first save.

        Refuses a checkpoint of another pipeline or version, as :meth:`load` does.
        """
        self._refuse_older_format()
        header = self._header()
        if header is None:
            if self.stored_partitions():  # a first save cut short before its header
                return Checkpoint(fingerprint=fingerprint)
            return None
        self._check(header, fingerprint, self.folder / _PIPELINE)
        return Checkpoint(
            fingerprint=fingerprint,
            finished=bool(header.get("finished", False)),
            source=dict(header.get("source", {})),
        )

    def load_partition(self, fingerprint: str, partition: int) -> PartitionCheckpoint | None:
        """One partition's unit alone, None if it has none."""
        folder = self._partition_folder(partition)
        current = folder / "CURRENT"
        if not current.exists():
            return None
        path = folder / current.read_text().strip()
        manifest = self._read_json(path / "manifest.json")
        self._check(manifest, fingerprint, path)
        blob = (path / "state.arrow").read_bytes()
        frames = {
            name: pl.read_ipc(io.BytesIO(blob[start : start + length]))
            for name, (start, length) in manifest["frames"].items()
        }
        return PartitionCheckpoint(
            partition=partition,
            positions={str(k): int(v) for k, v in manifest["positions"].items()},
            counters={str(k): int(v) for k, v in manifest["counters"].items()},
            state=OperatorState(frames=frames, meta=manifest["meta"]),
        )

    def stored_partitions(self) -> list[int]:
        """The partitions that have a unit, in order."""
        root = self.folder / _PARTITIONS
        if not root.is_dir():
            return []
        found = [int(p.name) for p in root.iterdir() if p.name.isdigit() and p.is_dir()]
        return sorted(p for p in found if (root / str(p) / "CURRENT").exists())

    # -- writing ---------------------------------------------------------------------------
    def save(self, checkpoint: Checkpoint) -> Path:
        """Save each partition's unit given, then the pipeline's header; returns the folder.

        Partitions the checkpoint does not hold keep the units they have.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        header = {
            "format": _FORMAT,
            "fingerprint": checkpoint.fingerprint,
            "finished": False,
            "source": checkpoint.source,
        }
        if not (self.folder / _PIPELINE).exists():
            # The first save records what is read before any unit: a kill between the
            # units and the header must not leave units whose input is unknown.
            _replace(self.folder / _PIPELINE, json.dumps(header))
        for unit in checkpoint.partitions.values():
            self.save_partition(checkpoint.fingerprint, unit)
        header["finished"] = checkpoint.finished
        _replace(self.folder / _PIPELINE, json.dumps(header))
        return self.folder

    def save_partition(self, fingerprint: str, unit: PartitionCheckpoint) -> Path:
        """Write one partition's unit and make it that partition's current one."""
        folder = self._partition_folder(unit.partition)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"ckpt-{_next_sequence(folder):08d}"
        staging = folder / f".{name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        frames: dict[str, list[int]] = {}
        offset = 0
        with (staging / "state.arrow").open("wb") as blob:
            for frame_name, frame in sorted(unit.state.frames.items()):
                buffer = io.BytesIO()
                frame.write_ipc(buffer)
                data = buffer.getvalue()
                blob.write(data)
                frames[frame_name] = [offset, len(data)]
                offset += len(data)
        manifest = {
            "format": _FORMAT,
            "fingerprint": fingerprint,
            "partition": unit.partition,
            "positions": unit.positions,
            "counters": unit.counters,
            "meta": unit.state.meta,
            "frames": frames,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest))
        for item in staging.iterdir():
            sync_file(item)
        sync_folder(staging)
        final = folder / name
        staging.rename(final)
        _replace(folder / "CURRENT", name)
        sync_folder(folder.parent)
        for old in folder.glob("ckpt-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def forget(self, partitions: Iterable[int]) -> None:
        """Delete these partitions' units (a partition started over from its beginning)."""
        for partition in partitions:
            shutil.rmtree(self._partition_folder(partition), ignore_errors=True)

    def clear(self) -> None:
        """Forget every checkpoint (``--fresh``)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------
    def _partition_folder(self, partition: int) -> Path:
        return self.folder / _PARTITIONS / str(partition)

    def _header(self) -> dict[str, Any] | None:
        path = self.folder / _PIPELINE
        return self._read_json(path) if path.exists() else None

    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            msg = f"checkpoint {path} is unreadable ({error}); delete {self.folder} to start over"
            raise CheckpointError(msg) from None
        if not isinstance(data, dict):
            msg = f"checkpoint {path} is not a checkpoint; delete {self.folder} to start over"
            raise CheckpointError(msg)
        return data

    def _check(self, manifest: dict[str, Any], fingerprint: str, path: Path) -> None:
        if manifest.get("format") != _FORMAT:
            self._other_version(manifest.get("format"))
        if manifest.get("fingerprint") != fingerprint:
            msg = (
                f"the checkpoint in {self.folder} was written by a different pipeline definition "
                f"({path.name}); run with --fresh to discard it, or point checkpoint.dir elsewhere"
            )
            raise CheckpointError(msg)

    def _refuse_older_format(self) -> None:
        if (self.folder / "CURRENT").exists():  # format 2 kept one CURRENT for everything
            self._other_version(2)

    def _other_version(self, found: object) -> None:
        msg = (
            f"the checkpoint in {self.folder} was written by another version of "
            f"sensorstream (format {found}, this one reads {_FORMAT}); "
            "run with --fresh to start over"
        )
        raise CheckpointError(msg)


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically and durably (temp file, fsync, rename)."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text)
    sync_file(staging)
    staging.replace(path)
    sync_folder(path.parent)


def _next_sequence(folder: Path) -> int:
    numbers = [int(p.name.split("-")[1]) for p in folder.glob("ckpt-*") if p.is_dir()]
    return max(numbers, default=0) + 1
