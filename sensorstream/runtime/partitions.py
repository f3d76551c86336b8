"""The partitions a runner holds: each one's task, counters and stream positions, as a unit.

A partition is the unit of state, position and output: its task (every step's state), its
counters and each stream's source position in it travel together into a checkpoint unit
(:class:`~sensorstream.runtime.checkpoints.PartitionCheckpoint`) and come back from one.
The runner takes a partition on (:meth:`HeldPartitions.take`: restored from its unit, or new)
when its sources start or a consumer group assigns it, and lets it go
(:meth:`HeldPartitions.release`) once a revocation has checkpointed it. Partition ``n`` of
every stream shares task ``n`` (co-partitioned streams meet there), so a task is released
only when no stream holds its partition any more.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from sensorstream.engine.plan import EnginePlan
from sensorstream.engine.task import PartitionTask
from sensorstream.runtime.checkpoints import PartitionCheckpoint
from sensorstream.runtime.counters import Counters


class HeldPartitions:
    """Tasks, counters and positions of the partitions this runner holds now."""

    def __init__(self, plan: EnginePlan, streams: Iterable[str]) -> None:
        self.plan = plan
        self.tasks: dict[int, PartitionTask] = {}
        self.counters: dict[int, Counters] = {}
        # Per stream, per partition: the source position to resume after.
        self.positions: dict[str, dict[int, int]] = {name: {} for name in streams}
        # Per stream, the partitions its source holds now.
        self.assigned: dict[str, set[int]] = {name: set() for name in self.positions}

    def take(self, stream: str, partition: int) -> bool:
        """Hold ``partition`` for ``stream``; True if it is new here (a fresh task, to restore).

        A partition another stream already holds keeps its task: it was restored then.
        """
        self.assigned[stream].add(partition)
        if partition in self.tasks:
            return False
        self.restore(partition, None)
        return True

    def restore(self, partition: int, unit: PartitionCheckpoint | None) -> None:
        """Give a held partition a new task: restored from ``unit``, or fresh without one."""
        task = PartitionTask(self.plan)
        counters = Counters()
        for positions in self.positions.values():
            positions.pop(partition, None)
        if unit is not None:
            task.restore(unit.state)
            counters = Counters(unit.counters)
            for name, position in unit.positions.items():
                if name in self.positions:
                    self.positions[name][partition] = position
        self.tasks[partition] = task
        self.counters[partition] = counters

    def release(self, stream: str, partition: int) -> bool:
        """``stream`` gives ``partition`` up; True if no stream holds it now (task dropped)."""
        self.assigned[stream].discard(partition)
        if any(partition in held for held in self.assigned.values()):
            return False
        self.tasks.pop(partition, None)
        self.counters.pop(partition, None)
        for positions in self.positions.values():
            positions.pop(partition, None)
        return True

    def position(self, partition: int) -> int | None:
        """A task's position: the sum of its streams' source positions (None: nothing read)."""
        found = [p[partition] for p in self.positions.values() if partition in p]
        return sum(found) if found else None

    def unit(self, partition: int) -> PartitionCheckpoint:
        """The partition's checkpoint unit now (state taken between two batches)."""
        state = self.tasks[partition].snapshot()
        state.meta = copy.deepcopy(state.meta)  # the operators may change theirs meanwhile
        return PartitionCheckpoint(
            partition=partition,
            positions={s: p[partition] for s, p in self.positions.items() if partition in p},
            counters=dict(self.counters[partition]),
            state=state,
        )
