"""The embedded runner: source -> one task per partition -> sinks, with checkpoints.

The loop is the only place where the engine meets I/O and the clock. After each batch it
hands every output to the sinks; every ``checkpoint.interval`` of processing time it flushes
the sinks and then saves each partition's state with its source position. After a crash,
the next run restores the checkpoint, tells the sinks to forget what they wrote after it,
and resumes the source after the checkpointed positions: the results come out the same as
if nothing had happened. Every payload is counted once as accepted, duplicate, late or
dead-lettered, and the summary checks that the four add up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sensorstream.engine.task import PartitionTask, TaskOutput
from sensorstream.engine.windows.base import micros
from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.checkpoints import Checkpoint, CheckpointStore
from sensorstream.sinks.base import PipelineInfo, Sink, SinkBatch, StepInfo
from sensorstream.sources.base import Clock, Source, SourceBatch

COUNTERS = ("payloads", "accepted", "duplicates", "late", "dead_letters", "results", "batches")


def system_clock() -> datetime:
    """Processing time: the machine's UTC clock."""
    return datetime.now(UTC)


def _epoch_us(moment: datetime) -> int:
    return micros(moment - datetime(1970, 1, 1, tzinfo=UTC))


@dataclass
class RunSummary:
    """What a run did, for the CLI's closing table."""

    counters: dict[str, int]
    seconds: float
    resumed: bool
    watermarks: dict[int, int] = field(default_factory=dict)

    @property
    def readings_per_second(self) -> float:
        """Payloads handled per wall-clock second in this run."""
        return self.counters["payloads_this_run"] / self.seconds if self.seconds > 0 else 0.0

    @property
    def balanced(self) -> bool:
        """Every payload accounted for: accepted + duplicates + late + dead letters."""
        c = self.counters
        return c["payloads"] == c["accepted"] + c["duplicates"] + c["late"] + c["dead_letters"]


Progress = Callable[[SourceBatch, dict[str, int]], None]


class Runner:
    """Runs one pipeline in this process until its source ends or :meth:`stop` is called."""

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        source: Source | None = None,
        sinks: list[Sink] | None = None,
        clock: Clock = system_clock,
        checkpoint_dir: Path | None = None,
        fresh: bool = False,
        on_batch: Progress | None = None,
    ) -> None:
        self.spec = spec
        self.plan = spec.to_plan()
        self.format = spec.readings.to_format()
        self.source = source if source is not None else spec.source.build()
        self.sinks = sinks if sinks is not None else [s.build() for s in spec.sinks]
        self.clock = clock
        folder = checkpoint_dir or spec.checkpoint.dir or Path(".sensorstream") / spec.name
        self.checkpoints = CheckpointStore(folder)
        if fresh:
            self.checkpoints.clear()
        self.on_batch = on_batch
        self.interval_us = micros(spec.checkpoint.interval)
        self.tasks = {p: PartitionTask(self.plan) for p in self.source.partitions()}
        self.positions: dict[int, int] = {}
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._stopping = False
        self._finished = False

    def info(self) -> PipelineInfo:
        """What the sinks are told about this pipeline."""
        steps = tuple(
            StepInfo(step.name, step.key, tuple(a.name for a in step.aggregates))
            for step in self.plan.steps
        )
        return PipelineInfo(self.spec.name, steps, self.format.canonical_schema())

    def stop(self) -> None:
        """Ask the loop to checkpoint and return after the current batch."""
        self._stopping = True

    def run(self) -> RunSummary:
        """Run to the end of the source (or :meth:`stop`); returns the summary."""
        started = time.perf_counter()
        self.source.prepare(self.format)
        resumed = self._restore()
        payloads_before = self.counters["payloads"]
        last_checkpoint = _epoch_us(self.clock())
        try:
            if not self._finished:
                for item in self.source.read(self.format, dict(self.positions), self.clock):
                    now = _epoch_us(self.clock())
                    if item is not None:
                        self._handle(item, now)
                    self._tick(now)
                    if now - last_checkpoint >= self.interval_us:
                        self._checkpoint()
                        last_checkpoint = now
                    if self._stopping:
                        break
                else:
                    self._finish()
            self._checkpoint()
        finally:
            self.source.close()
            for sink in self.sinks:
                sink.close()
        counters = dict(self.counters)
        counters["payloads_this_run"] = self.counters["payloads"] - payloads_before
        return RunSummary(
            counters=counters,
            seconds=time.perf_counter() - started,
            resumed=resumed,
            watermarks={p: t.watermark for p, t in self.tasks.items()},
        )

    def _restore(self) -> bool:
        for sink in self.sinks:
            sink.open(self.info())
        checkpoint = self.checkpoints.load(self.spec.fingerprint())
        if checkpoint is None:
            for sink in self.sinks:
                sink.restore({})  # a fresh start: forget this pipeline's earlier output
            return False
        self.positions = dict(checkpoint.positions)
        self.counters.update(checkpoint.counters)
        self._finished = checkpoint.finished
        for partition, state in checkpoint.partitions.items():
            if partition in self.tasks:
                self.tasks[partition].restore(state)
        for sink in self.sinks:
            sink.restore(self.positions)
        return True

    def _handle(self, item: SourceBatch, now: int) -> None:
        task = self.tasks[item.partition]
        output = task.process(item.readings, now)
        c = self.counters
        c["batches"] += 1
        c["payloads"] += item.payloads
        c["dead_letters"] += item.dead_letters.height
        c["duplicates"] += output.duplicates
        c["late"] += output.late_count
        c["accepted"] += output.accepted.height if output.accepted is not None else 0
        self._write(item.partition, item.position, output, item)
        self.positions[item.partition] = item.position
        if self.on_batch is not None:
            self.on_batch(item, self.counters)

    def _write(
        self, partition: int, position: int, output: TaskOutput, item: SourceBatch | None = None
    ) -> None:
        self.counters["results"] += sum(frame.height for frame in output.results.values())
        batch = SinkBatch(
            partition=partition,
            position=position,
            readings=output.accepted,
            dead_letters=item.dead_letters
            if item is not None and item.dead_letters.height
            else None,
            late=output.late,
            results=output.results,
        )
        for sink in self.sinks:
            sink.write(batch)

    def _tick(self, now: int) -> None:
        for partition, task in self.tasks.items():
            output = task.tick(now)
            if output.results:
                self._write(partition, self.positions.get(partition, -1), output)

    def _finish(self) -> None:
        for partition, task in self.tasks.items():
            self._write(partition, self.positions.get(partition, -1), task.finish())
        self._finished = True

    def _checkpoint(self) -> None:
        for sink in self.sinks:
            sink.flush()
        self.checkpoints.save(
            Checkpoint(
                fingerprint=self.spec.fingerprint(),
                positions=dict(self.positions),
                counters=dict(self.counters),
                partitions={p: task.snapshot() for p, task in self.tasks.items()},
                finished=self._finished,
            )
        )
