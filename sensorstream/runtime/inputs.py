"""What a pipeline reads, as a checkpoint records it, and whether a checkpoint still fits it.

Every checkpoint records its input's identity (:meth:`Source.identity`: a file's size,
time and hashes, a topic, a simulator's settings); a restart compares it with the input
now (:meth:`Source.compare`) and refuses to resume into another one, or into one that grew
after the pipeline had completed it, naming ``--fresh``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sensorstream.errors import CheckpointError
from sensorstream.runtime.checkpoints import Checkpoint
from sensorstream.runtime.streams import StreamInput
from sensorstream.sources.base import Identity, InputChange


def identity_of(streams: Mapping[str, StreamInput]) -> Identity:
    """What every stream reads (one stream's identity alone, as before streams)."""
    if len(streams) == 1:
        return next(iter(streams.values())).source.identity()
    return {"streams": {name: s.source.identity() for name, s in streams.items()}}


def check_input(streams: Mapping[str, StreamInput], checkpoint: Checkpoint, where: Path) -> None:
    """Refuse to resume into an input other than the one the checkpoint was taken of."""
    if len(streams) == 1:
        changes = [next(iter(streams.values())).source.compare(checkpoint.source)]
    else:
        recorded = checkpoint.source.get("streams", {})
        changes = [
            stream.source.compare(recorded.get(name, {})) for name, stream in streams.items()
        ]
    for change in changes:
        if change is not None:
            _refuse(change, checkpoint, where)


def _refuse(change: InputChange, checkpoint: Checkpoint, where: Path) -> None:
    if not change.grown:
        msg = (
            f"{change.description}, so the checkpoint in {where} does not fit it: run with "
            "--fresh to process the input from the beginning (or point checkpoint.dir "
            "elsewhere)"
        )
        raise CheckpointError(msg)
    if checkpoint.finished:
        msg = (
            f"{change.description} after the pipeline completed it: its windows were all "
            "closed at the end of the input, so the new lines would all be late; run with "
            "--fresh to process the whole input again"
        )
        raise CheckpointError(msg)
