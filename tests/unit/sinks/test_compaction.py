"""Compaction of reading segments: what is merged, how, and what readers see meanwhile."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensorstream.errors import SinkError
from sensorstream.readings import ReadingFormat
from sensorstream.sinks import DuckDBSink
from sensorstream.sinks.base import PipelineInfo, SinkBatch
from sensorstream.sinks.compaction import CompactionPolicy, plan_merges
from sensorstream.sinks.segments import (
    Segment,
    list_segments,
    pipeline_folder,
    stored_segments,
    superseded,
)
from sensorstream.store import Store, scan_readings

T0 = datetime(2024, 1, 1, tzinfo=UTC)
FORMAT = ReadingFormat(measurements={"temperature": "float"})
INFO = PipelineInfo("fleet", (), FORMAT.canonical_schema())
# Four flushes of two readings make a merge; the merged inputs go at the next flush.
SMALL = CompactionPolicy(target_rows=1000, fan_in=4, grace=timedelta(0))


def _readings(position: int, start: datetime = T0) -> pl.DataFrame:
    """Two readings whose times run backwards with the position: merging must sort them."""
    return pl.DataFrame(
        {
            "device_id": [f"d{position}-{i}" for i in range(2)],
            "ts": [start - timedelta(seconds=position * 10 + i) for i in range(2)],
            "temperature": [float(position)] * 2,
        },
        schema=FORMAT.canonical_schema(),
    )


def _sink(store: Path, policy: CompactionPolicy | None = SMALL, **options: object) -> DuckDBSink:
    sink = DuckDBSink(store, compaction=policy, **options)  # type: ignore[arg-type]
    sink.open(INFO)
    return sink


def _flushes(sink: DuckDBSink, positions: range) -> None:
    for position in positions:
        sink.write(SinkBatch(0, position, readings=_readings(position)))
        sink.flush()


def _names(store: Path) -> list[str]:
    return sorted(path.name for path in pipeline_folder(store, "fleet").iterdir())


def _positions(store: Path, running: DuckDBSink | None = None) -> list[int]:
    """Every stored reading's position, once per time a reader sees it.

    ``running``: the sink writing the store, whose connection the store reads through.
    """
    scanned = scan_readings(store, "fleet").select("position").collect()["position"]
    with Store(store, running.reader() if running else None) as opened:
        viewed = opened.sql("SELECT position FROM readings ORDER BY position")["position"]
    assert sorted(scanned.to_list()) == viewed.to_list()
    return viewed.to_list()


def _segment(first: int, last: int, sequence: int, partition: int = 0) -> Segment:
    return Segment(Path(f"{sequence}"), partition, first, last, sequence)


# -- which segments a merged one supersedes ---------------------------------------------------
def test_a_merged_segment_supersedes_the_segments_in_its_range_and_no_others() -> None:
    flushed = [_segment(n * 10, n * 10 + 9, n) for n in (1, 2, 3)]
    merged = _segment(10, 29, 4)
    other_partition = _segment(10, 19, 1, partition=1)
    assert superseded([*flushed, merged, other_partition]) == flushed[:2]
    assert superseded(flushed) == []  # flushes follow one another


def test_a_segment_a_restore_shortened_and_its_crash_left_original_hide_nothing() -> None:
    original, shortened = _segment(1, 30, 5), _segment(1, 20, 5)
    assert superseded([original, shortened]) == []  # the next restore settles them


def test_a_segment_of_the_same_range_written_later_supersedes_nothing() -> None:
    assert superseded([_segment(7, 7, 1), _segment(7, 7, 2)]) == []


# -- what is merged --------------------------------------------------------------------------
def test_small_segments_wait_for_fan_in_and_large_ones_are_left_alone() -> None:
    policy = CompactionPolicy(target_rows=100, fan_in=3)
    small = {_segment(n, n, n): 10 for n in (1, 2)}
    assert plan_merges(small, policy) == []
    small[_segment(3, 3, 3)] = 10
    assert plan_merges(small, policy) == [tuple(sorted(small, key=lambda s: s.first))]
    large = {_segment(n, n, n): 50 for n in (1, 2, 3)}
    assert plan_merges(large, policy) == []


def test_a_run_stops_at_a_large_segment_and_at_the_target() -> None:
    policy = CompactionPolicy(target_rows=100, fan_in=2)
    sizes = {
        _segment(1, 1, 1): 30,
        _segment(2, 2, 2): 30,
        _segment(3, 3, 3): 60,  # large: ends the run
        _segment(4, 4, 4): 40,
        _segment(5, 5, 5): 40,
        _segment(6, 6, 6): 40,  # would make 120: starts the next group
    }
    runs = [[s.sequence for s in run] for run in plan_merges(sizes, policy)]
    assert runs == [[1, 2], [4, 5]]


def test_a_merged_segment_waits_for_about_as_many_rows_as_it_holds() -> None:
    policy = CompactionPolicy(target_rows=1000, fan_in=4)
    sizes = {_segment(1, 8, 9): 80, **{_segment(n, n, n): 10 for n in range(10, 14)}}
    assert [[s.sequence for s in run] for run in plan_merges(sizes, policy)] == [[10, 11, 12, 13]]
    sizes = {_segment(1, 8, 9): 40, **{_segment(n, n, n): 10 for n in range(10, 14)}}
    assert [[s.sequence for s in run] for run in plan_merges(sizes, policy)] == [
        [9, 10, 11, 12, 13]
    ]


def test_segments_sharing_a_position_are_never_merged_nor_their_neighbours() -> None:
    policy = CompactionPolicy(target_rows=1000, fan_in=2)
    sizes = {
        _segment(1, 1, 1): 10,
        _segment(2, 5, 2): 10,
        _segment(5, 6, 3): 10,  # shares position 5 with the one before
        _segment(7, 7, 4): 10,
        _segment(8, 8, 5): 10,
    }
    runs = [[s.sequence for s in run] for run in plan_merges(sizes, policy)]
    assert runs == [[4, 5]]  # 1 alone waits; 2 and 3 touch


@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.integers(1, 3), st.integers(1, 400), st.booleans()),
        max_size=40,
    )
)
def test_every_run_is_consecutive_and_merges_into_a_range_holding_only_its_members(
    shapes: list[tuple[int, int, int, bool]],
) -> None:
    sizes: dict[Segment, int] = {}
    previous: dict[int, Segment] = {}
    for sequence, (partition, width, rows, share) in enumerate(shapes, start=1):
        before = previous.get(partition)
        first = 1 if before is None else before.last + 1
        if share and before is not None and before.first < before.last:
            first = before.last  # a boundary position in two segments (not in a whole one)
        segment = _segment(first, first + width - 1, sequence, partition)
        sizes[segment] = rows
        previous[partition] = segment
    assert superseded(sizes) == []
    policy = CompactionPolicy(target_rows=500, fan_in=3)
    for run in plan_merges(sizes, policy):
        assert len(run) >= 2
        assert sum(sizes[s] for s in run) <= policy.target_rows
        merged = _segment(run[0].first, max(s.last for s in run), 10_000, run[0].partition)
        assert set(superseded([*sizes, merged])) == set(run)


# -- merging ---------------------------------------------------------------------------------
def test_small_segments_are_merged_into_one_sorted_by_event_time(tmp_store: Path) -> None:
    sink = _sink(tmp_store)
    _flushes(sink, range(1, 5))
    sink.close()  # waits for the merge started by the fourth flush
    [name] = _names(tmp_store)
    assert name == "part-0-1-4-5.parquet"
    assert _positions(tmp_store) == [1, 1, 2, 2, 3, 3, 4, 4]
    merged = pl.read_parquet(pipeline_folder(tmp_store, "fleet") / name)
    assert merged["ts"].is_sorted()
    assert merged.columns == ["partition", "position", *FORMAT.canonical_schema()]


def test_a_merged_segment_is_merged_again_with_later_ones(tmp_store: Path) -> None:
    policy = CompactionPolicy(target_rows=1000, fan_in=2, grace=timedelta(0))
    sink = _sink(tmp_store, policy)
    _flushes(sink, range(1, 7))
    sink.close()
    with Store(tmp_store) as opened:
        assert opened.counts("fleet").readings == 12
    assert len(list_segments(pipeline_folder(tmp_store, "fleet"))) < 6
    assert _positions(tmp_store) == sorted([*range(1, 7), *range(1, 7)])


def test_merged_inputs_stay_for_readers_until_their_grace_is_over(tmp_store: Path) -> None:
    policy = CompactionPolicy(target_rows=1000, fan_in=4, grace=timedelta(hours=1))
    sink = _sink(tmp_store, policy)
    _flushes(sink, range(1, 5))
    sink._require_segments()._collect_merge(wait=True)
    sink.flush()
    try:
        assert len(_names(tmp_store)) == 5  # four inputs, superseded, and the merged one
        assert _positions(tmp_store, sink) == [1, 1, 2, 2, 3, 3, 4, 4]
    finally:
        sink.close()  # no grace on closing
    assert _names(tmp_store) == ["part-0-1-4-5.parquet"]


def test_compaction_can_be_turned_off(tmp_store: Path) -> None:
    sink = _sink(tmp_store, None)
    _flushes(sink, range(1, 6))
    sink.close()
    assert len(_names(tmp_store)) == 5


def test_a_failed_merge_is_raised_and_leaves_the_segments_as_they_were(
    tmp_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(run: object, sequence: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("sensorstream.sinks.segment_writer.merge", full_disk)
    sink = _sink(tmp_store)
    _flushes(sink, range(1, 5))
    with pytest.raises(SinkError, match=r"merging reading segments .* No space left.* unmerged"):
        sink.close()
    assert len(_names(tmp_store)) == 4
    assert _positions(tmp_store) == [1, 1, 2, 2, 3, 3, 4, 4]


def test_restore_cuts_a_merged_segment_at_the_checkpoint(tmp_store: Path) -> None:
    sink = _sink(tmp_store)
    _flushes(sink, range(1, 5))
    sink.close()
    sink = _sink(tmp_store)
    sink.restore({0: 2})
    sink.close()
    assert _names(tmp_store) == ["part-0-1-2-5.parquet"]
    assert _positions(tmp_store) == [1, 1, 2, 2]


def test_retention_takes_a_merged_segments_inputs_with_it(tmp_store: Path) -> None:
    policy = CompactionPolicy(target_rows=1000, fan_in=4, grace=timedelta(hours=1))
    sink = _sink(tmp_store, policy, retention=timedelta(days=1))
    _flushes(sink, range(1, 5))
    sink._require_segments()._collect_merge(wait=True)
    sink.write(SinkBatch(0, 5, readings=_readings(5, start=T0 + timedelta(days=2))))
    sink.flush()  # the merged segment is two days behind: it goes, and its inputs before it
    try:
        assert _names(tmp_store) == ["part-0-5-5-6.parquet"]
        assert _positions(tmp_store, sink) == [5, 5]
    finally:
        sink.close()


# -- a crash in the middle of a merge ---------------------------------------------------------
_CHILD = """
import os, signal, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from sensorstream.readings import ReadingFormat
from sensorstream.sinks import DuckDBSink, segment_writer
from sensorstream.sinks.base import PipelineInfo, SinkBatch
from sensorstream.sinks.compaction import CompactionPolicy

store, moment = Path(sys.argv[1]), sys.argv[2]
schema = ReadingFormat(measurements={"temperature": "float"}).canonical_schema()
T0 = datetime(2024, 1, 1, tzinfo=UTC)

def readings(position):
    return pl.DataFrame(
        {
            "device_id": [f"d{position}-{i}" for i in range(2)],
            "ts": [T0 - timedelta(seconds=position * 10 + i) for i in range(2)],
            "temperature": [float(position)] * 2,
        },
        schema=schema,
    )

def killed() -> None:
    os.kill(os.getpid(), signal.SIGKILL)

merge, remove = segment_writer.merge, segment_writer.ReadingSegments._remove

def merging(run, sequence):
    if moment == "writing":
        temporary = run[0].path.with_name(".part-0-1-4-99.parquet.tmp")
        temporary.write_bytes(b"PAR1 half a file")
        killed()
    done = merge(run, sequence)
    if moment == "merged":
        killed()
    return done

def removing(self, path):
    remove(self, path)
    if moment == "removing":
        killed()

segment_writer.merge = merging
segment_writer.ReadingSegments._remove = removing
sink = DuckDBSink(store, compaction=CompactionPolicy(1000, 4, timedelta(0)))
sink.open(PipelineInfo("fleet", (), schema))
for position in range(1, 5):
    sink.write(SinkBatch(0, position, readings=readings(position)))
    sink.flush()
sink._require_segments()._collect_merge(wait=True)
sink.flush()  # removes the inputs
sink.close()
"""


@pytest.mark.parametrize("moment", ["writing", "merged", "removing"])
def test_a_kill_during_a_merge_leaves_the_old_segments_or_the_merged_one_never_both(
    tmp_store: Path, moment: str
) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD), str(tmp_store), moment],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    # Whatever the moment, each reading is read exactly once.
    assert _positions(tmp_store) == [1, 1, 2, 2, 3, 3, 4, 4]
    files = stored_segments(pipeline_folder(tmp_store, "fleet"))
    merged = [s for s in files if s.sequence == 5]
    assert bool(merged) == (moment != "writing")

    sink = _sink(tmp_store)  # opening forgets what the kill left half done
    sink.restore({0: 3})
    sink.close()
    assert not any(name.startswith(".") for name in _names(tmp_store))
    assert _positions(tmp_store) == [1, 1, 2, 2, 3, 3]
    assert superseded(stored_segments(pipeline_folder(tmp_store, "fleet"))) == []
    for path in pipeline_folder(tmp_store, "fleet").iterdir():
        assert pq.read_metadata(path).num_rows > 0
