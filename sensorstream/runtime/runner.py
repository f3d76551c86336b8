"""The embedded runner: sources -> one task per partition -> sinks, with checkpoints.

A pipeline reads one or more streams, each from its own source; partition ``n`` of every
stream goes to task ``n``, and the streams are read interleaved in event-time order
(:mod:`~sensorstream.runtime.streams`). What a task writes to the sinks is tagged with the
task's position: the sum of its streams' source positions, which grows with every batch.

The loop is the only place where the engine meets I/O and the clock. After each batch it
hands every output to the sinks; every ``checkpoint.interval`` of processing time it starts
the sinks' flush and takes each partition's state with its source position, which are
saved in the background once the flush is durable (:mod:`~sensorstream.runtime.checkpointer`).
After a crash, the next run restores the checkpoint, tells the sinks to forget what they
wrote after it, and resumes the source after the checkpointed positions: the results come
out the same as if nothing had happened. A checkpoint also records what the source read,
so a rerun after the input was replaced refuses to resume into it, and a finished pipeline
knows it is done.

Every line is counted once as accepted, duplicate, late, dead-lettered or blank, per
partition (a partition's counters travel with its state), and the summary checks that they
add up (:mod:`~sensorstream.runtime.counters`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from sensorstream.engine.outputs import OutputKind, outputs_of
from sensorstream.engine.steps import READINGS
from sensorstream.engine.task import PartitionTask, TaskOutput
from sensorstream.engine.time import micros
from sensorstream.engine.watermarks import MIN_WATERMARK
from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.checkpointer import Checkpointer
from sensorstream.runtime.checkpoints import Checkpoint, CheckpointStore
from sensorstream.runtime.counters import Counters, RunSummary
from sensorstream.runtime.inputs import check_input, identity_of
from sensorstream.runtime.metrics import PipelineMetrics
from sensorstream.runtime.partitions import HeldPartitions
from sensorstream.runtime.rejected import rejected_dead_letters
from sensorstream.runtime.streams import Interleaver, StreamInput, labelled, record_schema
from sensorstream.runtime.tables import ReferenceTables
from sensorstream.sinks.base import FROM_START, PipelineInfo, Sink, SinkBatch, StepInfo
from sensorstream.sinks.duckdb import DuckDBSink
from sensorstream.sources.base import Clock, Identity, Source, SourceBatch
from sensorstream.sources.tables import TableSource


def system_clock() -> datetime:
    """Processing time: the machine's UTC clock."""
    return datetime.now(UTC)


def _epoch_us(moment: datetime) -> int:
    return micros(moment - datetime(1970, 1, 1, tzinfo=UTC))


Progress = Callable[[SourceBatch, Counters], None]


class Runner:
    """Runs one pipeline in this process until its sources end or :meth:`stop` is called.

    ``source`` replaces the ``readings`` stream's source (tests); ``sources`` replaces any
    stream's by name, and ``tables`` any reference table's source.
    """

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        source: Source | None = None,
        sources: Mapping[str, Source] | None = None,
        sinks: list[Sink] | None = None,
        tables: Mapping[str, TableSource] | None = None,
        clock: Clock = system_clock,
        checkpoint_dir: Path | None = None,
        fresh: bool = False,
        on_batch: Progress | None = None,
    ) -> None:
        self.spec = spec
        self.plan = spec.to_plan()
        given = dict(sources or {})
        if source is not None:
            given[READINGS] = source
        self.streams = {
            name: StreamInput(
                name,
                given[name] if name in given else stream.source.build(),
                stream.readings.to_format(),
            )
            for name, stream in spec.stream_specs().items()
        }
        self.sinks: list[Sink] = sinks if sinks is not None else [s.build() for s in spec.sinks]
        self.tables = ReferenceTables(spec.tables, tables)
        self.clock = clock
        folder = checkpoint_dir or spec.checkpoint.dir or Path(".sensorstream") / spec.name
        self.checkpoints = CheckpointStore(folder)
        if fresh:
            self.checkpoints.clear()
        for name, stream in self.streams.items():
            stream.source.use_checkpoint_dir(folder, name)
        self.on_batch = on_batch
        self.interval_us = micros(spec.checkpoint.interval)
        counts = {name: len(stream.partitions) for name, stream in self.streams.items()}
        self.plan.check_partitioning(counts)
        self.held = HeldPartitions(self.plan, self.streams)
        for name, stream in self.streams.items():
            if not stream.source.dynamic:  # held from the start; restored by run()
                for partition in stream.partitions:
                    self.held.take(name, partition)
            else:
                stream.source.listen(_Listener(self, name))
        self.interleaver = Interleaver(self.streams, self._stream_watermark)
        self.state_rows: dict[int, int] = {}  # per partition, at the last checkpoint
        self.metrics = PipelineMetrics(self)
        self.checkpointer = Checkpointer(self.checkpoints, self.metrics.observe_checkpoint)
        self._stopping = False
        self._finished = False
        self._run_identity: Identity = {}

    @property
    def tasks(self) -> dict[int, PartitionTask]:
        """The task of each partition held now."""
        return self.held.tasks

    @property
    def counters(self) -> dict[int, Counters]:
        """The counters of each partition held now."""
        return self.held.counters

    @property
    def stream_positions(self) -> dict[str, dict[int, int]]:
        """Per stream, per partition held: the source position to resume after."""
        return self.held.positions

    @property
    def source(self) -> Source:
        """The first stream's source (the only one, in a one-stream pipeline)."""
        return next(iter(self.streams.values())).source

    @property
    def positions(self) -> dict[int, int]:
        """Each task's position: the sum of its streams' source positions."""
        return {p: position for p in self.tasks if (position := self.held.position(p)) is not None}

    @property
    def name(self) -> str:
        """The pipeline's name."""
        return self.spec.name

    def now_us(self) -> int:
        """Processing time now, in microseconds since the epoch."""
        return _epoch_us(self.clock())

    def _stream_watermark(self, stream: str) -> int:
        held = [p for p in self.held.assigned[stream] if p in self.tasks]
        # A stream holding nothing yet (waiting for an assignment) is asked first.
        return min((self.tasks[p].watermark_of(stream) for p in held), default=MIN_WATERMARK)

    def info(self) -> PipelineInfo:
        """What the sinks are told about this pipeline."""
        graph = self.plan.graph
        steps = tuple(
            StepInfo(step.name, shape.key, outputs_of(shape))
            if shape.kind is OutputKind.RESULTS
            else StepInfo(step.name, shape.key, (), kind="alerts")
            for step in graph.order
            if (shape := graph.outputs[step.name]).kind in (OutputKind.RESULTS, OutputKind.EVENTS)
        )
        return PipelineInfo(
            self.spec.name,
            steps,
            self._record_schema(),
            checkpoint_dir=self.checkpoints.folder,
            stores=tuple(sink.path for sink in self.sinks if isinstance(sink, DuckDBSink)),
        )

    def _record_schema(self) -> dict[str, pl.DataType]:
        return record_schema(
            {name: stream.format.canonical_schema() for name, stream in self.streams.items()}
        )

    def _labelled(self, frame: pl.DataFrame | None, stream: str) -> pl.DataFrame | None:
        """Records as the sinks store them: with their stream's name when there are several."""
        return frame if len(self.streams) == 1 else labelled(frame, stream)

    def stop(self) -> None:
        """Ask the loop to checkpoint and return after the current batch."""
        self._stopping = True

    def run(self) -> RunSummary:
        """Run to the end of the sources (or :meth:`stop`); returns the summary.

        A pipeline whose checkpoint says it already read all of its (unchanged) input does
        nothing and says so (:attr:`RunSummary.already_complete`).
        """
        started = time.perf_counter()
        for stream in self.streams.values():
            stream.source.prepare(stream.format)
        identity = identity_of(self.streams)
        self._run_identity = identity
        try:
            resumed = self._restore()
            lines_before = self._total().get("lines")
            already_complete = self._finished
            if not self._finished:
                self.interleaver.open(self.stream_positions, self.clock)
                self._consume(identity)
            self._checkpoint(identity)
        finally:
            self.checkpointer.close()
            self.tables.close()
            for stream in self.streams.values():
                stream.source.close()
            for sink in self.sinks:
                sink.close()
        return RunSummary(
            counters=self._total(),
            partitions={p: c.copy() for p, c in self.counters.items()},
            seconds=time.perf_counter() - started,
            resumed=resumed,
            lines_this_run=self._total().get("lines") - lines_before,
            already_complete=already_complete,
            watermarks={p: t.watermark for p, t in self.tasks.items()},
            table_errors=dict(self.tables.errors),
        )

    def _consume(self, identity: Identity) -> None:
        """Handle the sources' batches until they end or a stop is asked for.

        If a source fails, what was handled so far is checkpointed before the error goes
        on: a rerun resumes after the last good batch instead of starting over.
        """
        last_checkpoint = _epoch_us(self.clock())
        while True:
            try:
                pulled = self.interleaver.next()
            except Exception as error:
                self._checkpoint_after_failure(identity, error)
                raise
            now = _epoch_us(self.clock())
            self.tables.poll(self.tasks.values())
            if pulled.batch is not None and pulled.stream is not None:
                self._handle(pulled.stream, pulled.batch, now)
            elif pulled.ended and pulled.stream is not None:
                if self.interleaver.finished:
                    self._finish()
                    return
                self._close_stream(pulled.stream)
            self._tick(now)
            if now - last_checkpoint >= self.interval_us:
                self._checkpoint(identity, wait=False)
                last_checkpoint = now
            if self._stopping:
                return

    def _restore(self) -> bool:
        """Open the sinks and restore the partitions held from the start; True if resumed.

        Each partition comes back from its own checkpoint unit (a partition without one
        starts from its beginning, and the sinks forget what they hold of it); partitions a
        consumer group assigns later are restored the same way when they arrive.
        """
        for sink in self.sinks:
            sink.open(self.info())
        header = self.checkpoints.load_header(self.spec.fingerprint())
        if header is not None:
            check_input(self.streams, header, self.checkpoints.folder)
            self._finished = header.finished
        restored = self._restore_units(sorted(self.tasks))
        self.tables.load()
        for partition, task in self.tasks.items():
            self.tables.seed(task, restored=partition in restored)
        return header is not None or bool(restored)

    def _restore_units(self, partitions: Sequence[int]) -> set[int]:
        """Restore these held partitions from their units; the sinks forget later output."""
        restored: set[int] = set()
        forget: dict[int, int] = {}
        fingerprint = self.spec.fingerprint()
        for partition in partitions:
            unit = self.checkpoints.load_partition(fingerprint, partition)
            self.held.restore(partition, unit)
            position = self.held.position(partition) if unit is not None else None
            forget[partition] = FROM_START if position is None else position
            if unit is not None:
                restored.add(partition)
        if forget:
            for sink in self.sinks:
                sink.restore(forget)
        return restored

    def assign(self, stream: str, partitions: Sequence[int]) -> dict[int, int]:
        """A consumer group gave ``stream`` these partitions: restore them, say where to resume.

        Called by the stream's source (through its :class:`~sensorstream.sources.base.\
PartitionListener`) before it reads them.
        """
        new = [p for p in partitions if self.held.take(stream, p)]
        if new:
            restored = self._restore_units(new)
            for partition in new:
                self.tables.seed(self.tasks[partition], restored=partition in restored)
            self.metrics.observe_assignment(stream, len(new), 0)
        positions = self.stream_positions[stream]
        return {p: positions[p] for p in partitions if p in positions}

    def revoke(self, stream: str, partitions: Sequence[int]) -> None:
        """``stream`` loses these partitions: checkpoint them, then let them go.

        Returns once the checkpoint is saved (and the source told, so a consumer group's
        offsets are committed before the partitions move to another worker).
        """
        held = [p for p in partitions if p in self.held.assigned[stream]]
        if not held:
            return
        self._checkpoint(self._run_identity)
        dropped = sum(self.held.release(stream, p) for p in held)
        self.metrics.observe_assignment(stream, 0, dropped)

    def _handle(self, stream: str, item: SourceBatch, now: int) -> None:
        if item.partition not in self.held.assigned[stream]:
            msg = f"the {stream} source yielded a batch of partition {item.partition}, not held"
            raise RuntimeError(msg)
        task = self.tasks[item.partition]
        output = task.process(item.readings, now, stream)
        self.counters[item.partition].count_batch(
            item, output, stream=stream if len(self.streams) > 1 else None
        )
        self.stream_positions[stream][item.partition] = item.position
        self._write(item.partition, output, item)
        arrived = item.arrived_us if item.arrived_us is not None else now
        self.metrics.observe_batch(stream, item.lines, (self.now_us() - arrived) / 1e6)
        if self.on_batch is not None:
            self.on_batch(item, self._total())

    def _write(self, partition: int, output: TaskOutput, item: SourceBatch | None = None) -> None:
        counts = self.counters[partition]
        self.metrics.observe_steps(output.rows_by_step)
        counts.add("results", sum(frame.height for frame in output.results.values()))
        counts.add("alert_transitions", sum(frame.height for frame in output.events.values()))
        counts.count_alerts(output.events)
        dead = [item.dead_letters] if item is not None and item.dead_letters.height else []
        if output.rejected:
            refused = rejected_dead_letters(output.rejected, self.clock())
            counts.count_rejected(output.rejected)
            dead.append(refused)
        batch = SinkBatch(
            partition=partition,
            position=self.positions.get(partition, -1),
            readings=self._labelled(output.accepted, output.stream),
            dead_letters=pl.concat(dead) if dead else None,
            late=self._labelled(output.late, output.stream),
            results=output.results,
            alerts=output.events,
            counters=self.counters[partition].copy(),
        )
        for sink in self.sinks:
            sink.write(batch)

    def _tick(self, now: int) -> None:
        for partition, task in self.tasks.items():
            output = task.tick(now)
            if output.results or output.events or output.rejected:
                self._write(partition, output)

    def _close_stream(self, stream: str) -> None:
        """A stream's source ended while others go on: it holds no watermark back."""
        for partition in sorted(self.held.assigned[stream]):
            self._write(partition, self.tasks[partition].close_stream(stream))

    def _finish(self) -> None:
        for partition, task in self.tasks.items():
            self._write(partition, task.finish())
        self._finished = True

    def _total(self) -> Counters:
        return Counters.sum(self.counters.values())

    def _checkpoint(self, identity: Identity, *, wait: bool = True) -> None:
        """Take a checkpoint: here its quick part, then saved by :attr:`checkpointer`.

        ``wait`` returns once it is saved (the end of a run); otherwise the loop goes on
        while it is saved in the background.
        """
        waits = [sink.flush_started() for sink in self.sinks]
        units = {p: self.held.unit(p) for p in self.tasks}
        self.state_rows = {
            p: sum(frame.height for frame in unit.state.frames.values())
            for p, unit in units.items()
        }
        checkpoint = Checkpoint(
            fingerprint=self.spec.fingerprint(),
            partitions=units,
            finished=self._finished,
            source=identity,
        )
        positions = {name: dict(p) for name, p in self.stream_positions.items()}

        def saved() -> None:
            for name, stream in self.streams.items():
                stream.source.checkpointed(positions[name])

        self.checkpointer.submit(checkpoint, waits, saved)
        if wait:
            self.checkpointer.wait()

    def _checkpoint_after_failure(self, identity: Identity, error: Exception) -> None:
        """Keep the batches handled before the source failed; never hide its error."""
        try:
            self._checkpoint(identity)
        except Exception as failure:  # the source's error is the one to report
            error.add_note(f"(checkpointing what was read before it also failed: {failure})")


class _Listener:
    """A dynamic source's :class:`~sensorstream.sources.base.PartitionListener`: one stream's."""

    def __init__(self, runner: Runner, stream: str) -> None:
        self.runner = runner
        self.stream = stream

    def assigned(self, partitions: Sequence[int]) -> Mapping[int, int]:
        """Restore the partitions; answer where to resume each."""
        return self.runner.assign(self.stream, partitions)

    def revoked(self, partitions: Sequence[int]) -> None:
        """Checkpoint the partitions, then drop them."""
        self.runner.revoke(self.stream, partitions)
