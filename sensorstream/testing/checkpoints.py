"""Peeking at a running pipeline's checkpoint from outside, as crash tests do.

A test that kills a pipeline waits for a checkpoint first; these read one partition's
unit (:mod:`sensorstream.runtime.checkpoints`) the way another process sees it: possibly
not there yet, possibly replaced between two reads.
"""

from __future__ import annotations

import json
from pathlib import Path


def current_unit(folder: Path, partition: int = 0) -> Path:
    """The ``CURRENT`` pointer of a partition's unit in the checkpoint folder ``folder``."""
    return folder / "partitions" / str(partition) / "CURRENT"


def checkpointed_position(folder: Path, stream: str = "readings", partition: int = 0) -> int | None:
    """A stream's position in a partition's current unit; None if there is none (yet)."""
    pointer = current_unit(folder, partition)
    try:
        manifest = json.loads((pointer.parent / pointer.read_text() / "manifest.json").read_text())
    except (OSError, ValueError):
        return None  # not written yet, or replaced between the two reads: look again
    position: int | None = manifest["positions"].get(stream)
    return position
