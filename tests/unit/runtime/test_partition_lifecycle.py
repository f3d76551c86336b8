"""Partitions assigned and revoked while a pipeline runs, as a consumer group does it.

A scripted source plays a group's part: it assigns and revokes partitions through the
runner's listener between batches. A partition revoked (checkpointed, dropped) and later
assigned again, here or to another runner sharing the checkpoint folder, must continue
exactly where it stopped: the final results equal one uninterrupted run's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from sensorstream.readings import ReadingFormat, decode_json_lines
from sensorstream.runtime.runner import Runner
from sensorstream.sources.base import Clock, PartitionListener, Source, SourceBatch
from sensorstream.testing import ListSink, ManualClock
from tests.unit.runtime.test_runner import START, line, spec


def messages(partition: int, count: int) -> list[str]:
    """A partition's messages: its devices' readings, a second apart."""
    return [line(f"p{partition}-d{n % 3}", n, float(n * (partition + 1))) for n in range(count)]


@dataclass
class GroupSource(Source):
    """Partitions of messages, and a script of what the group does: assign, revoke, read.

    A step is ``("assign", [partitions])``, ``("revoke", [partitions])``,
    ``("read", partition, n)``: the next ``n`` messages of that partition, as one batch, or
    ``("stop",)``: the worker is stopped (it leaves the group; the input has not ended).
    Positions are message counts (the next offset to read, as Kafka's are).
    """

    data: dict[int, list[str]]
    script: Sequence[tuple[object, ...]]
    dynamic = True
    listener: PartitionListener | None = None
    next_offset: dict[int, int] = field(default_factory=dict)
    seen_resume: dict[int, int] = field(default_factory=dict)
    stop: Callable[[], None] | None = None

    def partitions(self) -> list[int]:
        return sorted(self.data)

    def listen(self, listener: PartitionListener) -> None:
        self.listener = listener

    def read(
        self, fmt: ReadingFormat, resume_after: Mapping[int, int], clock: Clock
    ) -> Iterator[SourceBatch | None]:
        assert self.listener is not None
        for step in self.script:
            kind = step[0]
            if kind == "assign":
                parts: Sequence[int] = step[1]  # type: ignore[assignment]
                resume = self.listener.assigned(parts)
                for p in parts:
                    self.next_offset[p] = resume.get(p, 0)
                    self.seen_resume[p] = resume.get(p, 0)
                yield None
            elif kind == "stop":
                assert self.stop is not None
                self.stop()
                yield None
            elif kind == "revoke":
                parts = step[1]  # type: ignore[assignment]
                self.listener.revoked(parts)
                for p in parts:
                    self.next_offset.pop(p)
                yield None
            else:
                partition, count = int(step[1]), int(step[2])  # type: ignore[call-overload]
                start = self.next_offset[partition]
                lines = self.data[partition][start : start + count]
                if not lines:
                    continue
                decoded = decode_json_lines(
                    "".join(f"{x}\n" for x in lines).encode(), fmt, arrived_at=clock()
                )
                self.next_offset[partition] = start + len(lines)
                yield SourceBatch(
                    partition, start + len(lines), decoded.readings, decoded.dead_letters,
                    decoded.payloads,
                )  # fmt: skip


DATA = {p: messages(p, 60) for p in (0, 1)}


def run(tmp_path: Path, script: Sequence[tuple[object, ...]], sink: ListSink) -> GroupSource:
    source = GroupSource(DATA, script)
    runner = Runner(spec(tmp_path), source=source, sinks=[sink], clock=ManualClock(START))
    source.stop = runner.stop
    runner.run()
    return source


def uninterrupted(tmp_path: Path) -> pl.DataFrame:
    sink = ListSink()
    run(tmp_path / "reference", [("assign", [0, 1]), ("read", 0, 60), ("read", 1, 60)], sink)
    return sink.final("w")


def test_a_partition_revoked_and_assigned_again_continues_where_it_stopped(
    tmp_path: Path,
) -> None:
    sink = ListSink()
    script = [
        ("assign", [0, 1]),
        ("read", 0, 20),
        ("read", 1, 25),
        ("revoke", [1]),  # checkpointed, then dropped: its windows are open mid-stream
        ("read", 0, 20),
        ("assign", [1]),
        ("read", 1, 35),
        ("read", 0, 20),
    ]
    source = run(tmp_path / "moved", script, sink)
    assert source.seen_resume[1] == 25  # resumed after what it had read, not from the start
    assert_frame_equal(sink.final("w"), uninterrupted(tmp_path))


def test_a_partition_revoked_here_continues_in_another_runner_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    """Two workers share the checkpoint folder: partition 1 moves from the first to the second."""
    sink = ListSink()  # the workers' shared store
    script = [("assign", [0, 1]), ("read", 0, 30), ("read", 1, 30), ("revoke", [1]), ("stop",)]
    run(tmp_path, script, sink)
    mine = pl.col("device_id").str.starts_with("p1")
    closed_before = sink.final("w").filter(mine).height
    source = run(tmp_path, [("assign", [1]), ("read", 1, 30)], sink)
    assert source.seen_resume[1] == 30
    assert 0 < closed_before < sink.final("w").filter(mine).height
    expected = uninterrupted(tmp_path).filter(mine)
    assert_frame_equal(sink.final("w").filter(mine), expected)


def test_a_partition_never_seen_starts_from_its_beginning_and_the_others_keep_their_output(
    tmp_path: Path,
) -> None:
    sink = ListSink()  # one sink for both workers: a shared store
    source = run(tmp_path, [("assign", [0]), ("read", 0, 60), ("stop",)], sink)
    assert source.seen_resume[0] == 0
    mine = pl.col("device_id").str.starts_with("p0")
    before = sink.final("w").filter(mine)
    assert before.height > 0
    run(tmp_path, [("assign", [1]), ("read", 1, 60)], sink)
    assert_frame_equal(sink.final("w").filter(mine), before)  # partition 0's rows untouched
    expected = uninterrupted(tmp_path).filter(~mine)
    assert_frame_equal(sink.final("w").filter(~mine), expected)


def test_an_idle_partition_holds_no_other_partitions_windows_open(tmp_path: Path) -> None:
    """Partition 1 is assigned but never sends: partition 0's windows close on its own time."""
    sink = ListSink()
    run(tmp_path, [("assign", [0, 1]), ("read", 0, 60), ("stop",)], sink)  # no end of input
    closed = sink.final("w")
    assert closed.height > 0
    assert set(closed["device_id"].str.slice(0, 2)) == {"p0"}
    reference = uninterrupted(tmp_path).filter(pl.col("device_id").str.starts_with("p0"))
    assert closed.height >= reference.height - 3  # all but each device's last, still open
    # Every window whose end the watermark passed is out, as in a run that read it all.
    assert_frame_equal(
        closed, reference.filter(pl.col("window_start").is_in(closed["window_start"]))
    )
