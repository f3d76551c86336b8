from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sensorstream.engine.operator import OperatorState
from sensorstream.errors import CheckpointError
from sensorstream.runtime.checkpoints import Checkpoint, CheckpointStore, PartitionCheckpoint


def _unit(partition: int, position: int) -> PartitionCheckpoint:
    frame = pl.DataFrame({"device_id": ["a", "b"], "n": [partition, position]})
    return PartitionCheckpoint(
        partition=partition,
        positions={"readings": position},
        counters={"lines": position},
        state=OperatorState(frames={"step/windows": frame}, meta={"watermark": position}),
    )


def _checkpoint(position: int, partitions: tuple[int, ...] = (0,)) -> Checkpoint:
    return Checkpoint(
        fingerprint="f1",
        partitions={p: _unit(p, position) for p in partitions},
        source={"file": "in.ndjson"},
    )


def test_a_saved_checkpoint_loads_back_equal(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(10))
    loaded = store.load("f1")
    assert loaded is not None
    assert loaded.positions("readings") == {0: 10}
    assert loaded.source == {"file": "in.ndjson"}
    unit = loaded.partitions[0]
    assert unit.counters == {"lines": 10}
    assert unit.state.meta == {"watermark": 10}
    assert unit.state.frames["step/windows"].equals(_unit(0, 10).state.frames["step/windows"])


def test_no_checkpoint_loads_as_none(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path / "nothing").load("f1") is None
    assert CheckpointStore(tmp_path / "nothing").load_header("f1") is None


def test_the_latest_unit_wins_and_older_ones_are_removed(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    for position in (1, 2, 3):
        store.save(_checkpoint(position))
    loaded = store.load("f1")
    assert loaded is not None
    assert loaded.positions("readings") == {0: 3}
    assert len(list((tmp_path / "partitions" / "0").glob("ckpt-*"))) == 1


def test_one_partition_is_saved_and_loaded_without_touching_the_others(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(5, partitions=(0, 1, 2)))
    before = {p: (tmp_path / "partitions" / str(p) / "CURRENT").read_text() for p in (0, 2)}
    store.save_partition("f1", _unit(1, 9))
    after = {p: (tmp_path / "partitions" / str(p) / "CURRENT").read_text() for p in (0, 2)}
    assert after == before  # the other units were not rewritten
    one = store.load_partition("f1", 1)
    assert one is not None
    assert one.positions == {"readings": 9}
    assert store.load_partition("f1", 7) is None
    loaded = store.load("f1")
    assert loaded is not None
    assert loaded.positions("readings") == {0: 5, 1: 9, 2: 5}


def test_a_checkpoint_without_a_partition_keeps_that_partitions_unit(tmp_path: Path) -> None:
    """A worker that gave partition 1 up checkpoints only what it holds."""
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(5, partitions=(0, 1)))
    store.save(_checkpoint(8, partitions=(0,)))
    loaded = store.load("f1")
    assert loaded is not None
    assert loaded.positions("readings") == {0: 8, 1: 5}
    store.forget([1])
    assert store.stored_partitions() == [0]


def test_a_half_written_unit_leaves_the_previous_one_current(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(1))
    staging = tmp_path / "partitions" / "0" / ".ckpt-00000002.tmp"
    staging.mkdir()  # a crash while staging the next one
    (staging / "manifest.json").write_text("{trunc")
    loaded = store.load("f1")
    assert loaded is not None
    assert loaded.positions("readings") == {0: 1}


def test_a_checkpoint_of_another_pipeline_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(1))
    with pytest.raises(CheckpointError, match="different pipeline definition"):
        store.load("other")
    with pytest.raises(CheckpointError, match="different pipeline definition"):
        store.load_partition("other", 0)


def test_a_checkpoint_of_the_older_format_is_refused_naming_fresh(tmp_path: Path) -> None:
    (tmp_path / "CURRENT").write_text("ckpt-00000001")
    with pytest.raises(CheckpointError, match=r"format 2, this one reads 3.*--fresh"):
        CheckpointStore(tmp_path).load("f1")


def test_a_corrupt_manifest_is_a_clear_error(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    path = store.save_partition("f1", _unit(0, 1))
    (path / "manifest.json").write_text("{")
    with pytest.raises(CheckpointError, match="unreadable"):
        store.load("f1")


def test_a_first_save_cut_short_after_a_unit_still_records_what_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(tmp_path)
    real = store.save_partition

    def killed_after_the_first_unit(fingerprint: str, unit: PartitionCheckpoint) -> Path:
        real(fingerprint, unit)
        raise KeyboardInterrupt  # stands for kill -9 between the units and the header

    monkeypatch.setattr(store, "save_partition", killed_after_the_first_unit)
    with pytest.raises(KeyboardInterrupt):
        store.save(_checkpoint(5, partitions=(0, 1)))
    loaded = CheckpointStore(tmp_path).load("f1")
    assert loaded is not None
    assert loaded.source == {"file": "in.ndjson"}, "a resume compares the input it recorded"
    assert loaded.finished is False
    assert loaded.positions("readings") == {0: 5}
