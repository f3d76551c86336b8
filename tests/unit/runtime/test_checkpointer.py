"""Checkpoints saved in the background while the loop goes on, one at a time, errors raised."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from sensorstream.pipeline.spec import CheckpointSpec
from sensorstream.runtime.checkpointer import Checkpointer
from sensorstream.runtime.checkpoints import CheckpointStore
from sensorstream.runtime.runner import Runner
from sensorstream.sinks.base import SinkBatch
from sensorstream.testing import ListSink, ListSource, ManualClock
from tests.unit.runtime.test_checkpoints import _checkpoint
from tests.unit.runtime.test_runner import BATCHES, START, spec


class SlowDisk(ListSink):
    """A sink whose first flush becomes durable only after two more batches were written."""

    def __init__(self) -> None:
        super().__init__()
        self.durable = threading.Event()
        self.written_while_flushing = 0
        self._flushing = False

    def write(self, batch: SinkBatch) -> None:
        if self._flushing:
            self.written_while_flushing += 1
            if self.written_while_flushing == 2:
                self.durable.set()  # only now does the disk catch up
        super().write(batch)

    def flush_started(self) -> Callable[[], None]:
        if self.written_while_flushing:  # later flushes: durable at once
            return lambda: None
        self._flushing = True

        def wait() -> None:
            assert self.durable.wait(10), "the flush never became durable"
            self._flushing = False

        return wait


def test_a_checkpoint_is_saved_only_once_its_sinks_are_durable(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    checkpointer = Checkpointer(store)
    durable = threading.Event()
    told: list[str] = []

    def disk() -> None:
        assert durable.wait(10)

    checkpointer.submit(_checkpoint(5), [disk], lambda: told.append("saved"))

    assert store.load("f1") is None  # still waiting for the sink
    durable.set()
    checkpointer.wait()
    loaded = store.load("f1")
    assert loaded is not None
    assert loaded.positions("readings") == {0: 5}
    assert told == ["saved"]
    checkpointer.close()


def test_the_next_checkpoint_waits_for_the_one_in_flight_and_raises_its_error(
    tmp_path: Path,
) -> None:
    checkpointer = Checkpointer(CheckpointStore(tmp_path))

    def broken() -> None:
        msg = "the disk is full"
        raise OSError(msg)

    checkpointer.submit(_checkpoint(1), [broken], lambda: None)
    with pytest.raises(OSError, match="the disk is full"):
        checkpointer.submit(_checkpoint(2), [], lambda: None)
    checkpointer.close()


def test_the_loop_handles_batches_while_a_checkpoint_is_made_durable(tmp_path: Path) -> None:
    sink = SlowDisk()
    clock = ManualClock(START)
    moved: list[bool] = []

    def idle() -> None:  # the first pause: a checkpoint interval goes by
        if not moved:
            clock.advance(timedelta(seconds=10))
            moved.append(True)

    batches: list[list[str] | None] = [BATCHES[0], None, BATCHES[1], BATCHES[2]]
    source = ListSource(batches, on_idle=idle)
    every_5s = spec(tmp_path).model_copy(
        update={"checkpoint": CheckpointSpec(interval=timedelta(seconds=5))}
    )
    runner = Runner(every_5s, source=source, sinks=[sink], clock=clock, checkpoint_dir=tmp_path)

    summary = runner.run()

    assert sink.written_while_flushing == 2  # both later batches, while the first flush waited
    loaded = runner.checkpoints.load(every_5s.fingerprint())
    assert loaded is not None
    assert loaded.positions("readings") == {
        0: len(batches) - 1
    }  # the last one, saved before run returned
    assert summary.counters["lines"] == sum(len(b) for b in batches if b)
