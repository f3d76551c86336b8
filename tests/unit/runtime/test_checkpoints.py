from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sensorstream.engine.operator import OperatorState
from sensorstream.errors import CheckpointError
from sensorstream.runtime.checkpoints import Checkpoint, CheckpointStore


def _checkpoint(position: int) -> Checkpoint:
    frame = pl.DataFrame({"device_id": ["a", "b"], "n": [1, 2]})
    return Checkpoint(
        fingerprint="f1",
        positions={0: position},
        counters={0: {"lines": position}},
        partitions={0: OperatorState(frames={"step/windows": frame}, meta={"watermark": 7})},
    )


def test_a_saved_checkpoint_loads_back_equal(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(10))
    loaded = store.load("f1")
    assert loaded is not None
    assert loaded.positions == {0: 10}
    assert loaded.counters == {0: {"lines": 10}}
    assert loaded.partitions[0].meta == {"watermark": 7}
    assert (
        loaded.partitions[0]
        .frames["step/windows"]
        .equals(_checkpoint(10).partitions[0].frames["step/windows"])
    )


def test_no_checkpoint_loads_as_none(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path / "nothing").load("f1") is None


def test_the_latest_checkpoint_wins_and_older_ones_are_removed(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    for position in (1, 2, 3):
        store.save(_checkpoint(position))
    loaded = store.load("f1")
    assert loaded is not None
    assert loaded.positions == {0: 3}
    assert len(list(tmp_path.glob("ckpt-*"))) == 1


def test_a_half_written_checkpoint_leaves_the_previous_one_current(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(1))
    (tmp_path / ".ckpt-00000002.tmp").mkdir()  # a crash while staging the next one
    (tmp_path / ".ckpt-00000002.tmp" / "manifest.json").write_text("{trunc")
    loaded = store.load("f1")
    assert loaded is not None
    assert loaded.positions == {0: 1}


def test_a_checkpoint_of_another_pipeline_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(1))
    with pytest.raises(CheckpointError, match="different pipeline definition"):
        store.load("other")


def test_a_corrupt_manifest_is_a_clear_error(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    path = store.save(_checkpoint(1))
    (path / "manifest.json").write_text("{")
    with pytest.raises(CheckpointError, match="unreadable"):
        store.load("f1")
