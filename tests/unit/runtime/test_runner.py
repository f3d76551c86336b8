from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sensorstream.errors import CheckpointError, SourceError
from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.readings import ReadingFormat
from sensorstream.runtime.checkpoints import CheckpointStore
from sensorstream.runtime.runner import Runner
from sensorstream.sinks import DuckDBSink
from sensorstream.sources.base import Clock, Identity, InputChange, SourceBatch
from sensorstream.store import Store
from sensorstream.testing import Crash, ListSink, ListSource, ManualClock

START = datetime(2024, 1, 1, tzinfo=UTC)
T0 = int(START.timestamp())


def spec(tmp_path: Path, **event_time: str) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "unit",
            "source": {"type": "simulator"},  # replaced by a ListSource in these tests
            "readings": {"measurements": {"t": "float"}},
            "event_time": {"out_of_orderness": "1s", **event_time},
            "steps": [
                {
                    "name": "w",
                    "window": {"type": "tumbling", "size": "10s"},
                    "aggregates": ["count", "sum(t)"],
                }
            ],
            "checkpoint": {"dir": str(tmp_path / "ckpt"), "interval": "0s"},
        }
    )


def line(device: str, second: float, value: float) -> str:
    return json.dumps({"device_id": device, "ts": T0 + second, "t": value})


BATCHES: list[list[str] | None] = [
    [line("a", 0, 1), line("b", 1, 2), line("a", 2, 3)],
    [line("a", 2, 3), "{broken", line("a", 10.5, 4)],  # a duplicate, a dead letter
    [line("b", 5, 5), line("a", 25, 6)],  # b@5: its window is still open (wm 9.5)
    [line("a", 3, 7), line("b", 30, 8)],  # a@3: its window closed at 10s+0s lateness: late
    [line("a", 41, 9)],
]


def run(tmp_path: Path, source: ListSource, sink: ListSink, *, fresh: bool = False) -> Runner:
    clock = ManualClock(START)
    return Runner(spec(tmp_path), source=source, sinks=[sink], clock=clock, fresh=fresh)


def test_every_payload_is_accounted_for(tmp_path: Path) -> None:
    sink = ListSink()
    summary = run(tmp_path, ListSource(BATCHES), sink).run()
    c = summary.counters
    counts = (c["lines"], c["accepted"], c["duplicates"], c["late"], c["dead_letters"])
    assert counts == (11, 8, 1, 1, 1)
    assert summary.balanced
    assert sink.count("dead_letters") == 1
    assert sink.count("late") == 1
    assert sink.count("readings") == 8


def test_window_results_are_emitted_and_closed_at_the_end(tmp_path: Path) -> None:
    sink = ListSink()
    run(tmp_path, ListSource(BATCHES), sink).run()
    final = sink.final("w")
    rows = {
        (r["device_id"], r["window_start"].second): (r["count"], r["t_sum"])
        for r in final.iter_rows(named=True)
    }
    assert rows == {
        ("a", 0): (2, 4.0),
        ("b", 0): (2, 7.0),
        ("a", 10): (1, 4.0),
        ("a", 20): (1, 6.0),
        ("b", 30): (1, 8.0),
        ("a", 40): (1, 9.0),
    }
    assert final["final"].all()


def test_a_crash_then_restart_gives_the_same_results_as_no_crash(tmp_path: Path) -> None:
    clean = ListSink()
    run(tmp_path / "clean", ListSource(BATCHES), clean).run()
    crashed = ListSink()
    source = ListSource(BATCHES, crash_at=3)
    with pytest.raises(Crash):
        run(tmp_path / "crashed", source, crashed).run()
    summary = run(tmp_path / "crashed", source, crashed).run()
    assert summary.resumed
    assert crashed.final("w").equals(clean.final("w"))
    assert crashed.count("readings") == clean.count("readings")
    assert summary.counters["lines"] == 11
    assert summary.balanced


def test_a_finished_pipeline_run_again_changes_nothing(tmp_path: Path) -> None:
    sink = ListSink()
    run(tmp_path, ListSource(BATCHES), sink).run()
    before = sink.final("w")
    summary = run(tmp_path, ListSource(BATCHES), sink).run()
    assert summary.lines_this_run == 0
    assert sink.final("w").equals(before)


def test_fresh_discards_the_checkpoint(tmp_path: Path) -> None:
    run(tmp_path, ListSource(BATCHES), ListSink()).run()
    summary = run(tmp_path, ListSource(BATCHES), ListSink(), fresh=True).run()
    assert not summary.resumed
    assert summary.counters["lines"] == 11


def test_an_idle_source_still_closes_its_windows_after_idle_timeout(tmp_path: Path) -> None:
    clock = ManualClock(START)
    sink = ListSink()
    source = ListSource([[line("a", 0, 1)]], endless=True)
    runner = Runner(spec(tmp_path, idle_timeout="5s"), source=source, sinks=[sink], clock=clock)

    def quiet_second() -> None:
        clock.advance(timedelta(seconds=1))
        if sink.results:
            runner.stop()  # the window closed through idleness alone; end of input never came
        elif clock.now > START + timedelta(minutes=1):
            pytest.fail("the idle window never closed")

    source.on_idle = quiet_second
    runner.run()
    assert sink.final("w")["count"].to_list() == [1]
    assert clock.now - START >= timedelta(seconds=11)  # window end 10s + out-of-orderness 1s


# -- accounting ------------------------------------------------------------------------------


def test_blank_lines_are_counted_and_the_books_balance(tmp_path: Path) -> None:
    batches: list[list[str] | None] = [[line("a", 0, 1), "", "  ", line("a", 1, 2)], ["\t"]]
    summary = run(tmp_path, ListSource(batches), ListSink()).run()
    c = summary.counters
    assert (c["lines"], c["accepted"], c["blank"]) == (5, 2, 3)
    assert summary.balanced


def test_dead_letters_are_counted_per_reason_code(tmp_path: Path) -> None:
    batches: list[list[str] | None] = [["{broken", "[1]", "{also broken", line("a", 0, 1)]]
    summary = run(tmp_path, ListSource(batches), ListSink()).run()
    assert summary.counters.dead_letters_by_code() == {"invalid_json": 2, "not_an_object": 1}
    assert summary.dead_letter_share == 0.75


def two_steps(tmp_path: Path) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "two",
            "source": {"type": "simulator"},
            "readings": {"measurements": {"t": "float"}},
            "event_time": {"out_of_orderness": "0s"},
            "steps": [
                {
                    "name": "avg_10s",
                    "window": {"type": "tumbling", "size": "10s"},
                    "aggregates": ["count"],
                },
                {
                    "name": "hop_60s",
                    "window": {"type": "hopping", "size": "60s", "slide": "10s"},
                    "aggregates": ["count"],
                },
            ],
            "checkpoint": {"dir": str(tmp_path / "ckpt"), "interval": "0s"},
        }
    )


def test_a_reading_late_for_one_step_only_is_counted_late_for_that_step(tmp_path: Path) -> None:
    # At 25s the watermark is 25s: a reading at 5s is too late for the 10s windows but the
    # hopping step's window [0s, 60s) is still open, so it is accepted, and counted late
    # for avg_10s; one at -100s is too late for both.
    batches: list[list[str] | None] = [
        [line("a", 0, 1), line("a", 25, 2)],
        [line("a", 5, 3), line("a", -100, 4)],
    ]
    sink = ListSink()
    summary = Runner(
        two_steps(tmp_path), source=ListSource(batches), sinks=[sink], clock=ManualClock(START)
    ).run()
    c = summary.counters
    assert (c["accepted"], c["late"]) == (3, 1)
    assert c.late_by_step() == {"avg_10s": 2, "hop_60s": 1}
    assert summary.balanced
    assert sink.count("late") == 2  # both late readings are stored, with the steps they missed


# -- what a checkpoint belongs to ------------------------------------------------------------


class VersionedSource(ListSource):
    """A list source whose input carries a version, as a file carries its size and hashes."""

    def __init__(self, batches: list[list[str] | None], version: int, *, grows: bool = False):
        super().__init__(batches)
        self.version, self.grows = version, grows

    def identity(self) -> Identity:
        return {"version": self.version}

    def compare(self, recorded: Mapping[str, Any]) -> InputChange | None:
        before = recorded.get("version")
        if before == self.version:
            return None
        return InputChange(f"the input went from version {before} to {self.version}", self.grows)


def test_a_changed_input_is_not_resumed_into(tmp_path: Path) -> None:
    source = VersionedSource(BATCHES, 1)
    source.crash_at = 3
    with pytest.raises(Crash):
        run(tmp_path, source, ListSink()).run()
    with pytest.raises(CheckpointError, match=r"version 1 to 2.*--fresh"):
        run(tmp_path, VersionedSource(BATCHES, 2), ListSink()).run()
    summary = run(tmp_path, VersionedSource(BATCHES, 2), ListSink(), fresh=True).run()
    assert summary.counters["lines"] == 11


def test_an_input_that_grew_is_resumed_where_the_checkpoint_left_it(tmp_path: Path) -> None:
    source = VersionedSource(BATCHES, 1)
    source.crash_at = 3
    with pytest.raises(Crash):
        run(tmp_path, source, ListSink()).run()
    grown = VersionedSource(BATCHES, 2, grows=True)
    summary = run(tmp_path, grown, ListSink()).run()
    assert summary.resumed
    assert summary.counters["lines"] == 11


def test_an_input_that_grew_after_it_was_completed_is_refused(tmp_path: Path) -> None:
    run(tmp_path, VersionedSource(BATCHES, 1), ListSink()).run()
    with pytest.raises(CheckpointError, match=r"completed.*would all be late.*--fresh"):
        run(tmp_path, VersionedSource(BATCHES, 2, grows=True), ListSink()).run()


def test_a_completed_pipeline_says_so_and_reads_nothing(tmp_path: Path) -> None:
    run(tmp_path, ListSource(BATCHES), ListSink()).run()
    summary = run(tmp_path, ListSource(BATCHES), ListSink()).run()
    assert summary.already_complete
    assert summary.lines_this_run == 0
    assert summary.counters["lines"] == 11


class FailingSource(ListSource):
    """Fails with a source error before one batch, every time, as a corrupt file would."""

    def __init__(self, batches: list[list[str] | None], fail_at: int) -> None:
        super().__init__(batches)
        self.fail_at = fail_at

    def read(
        self, fmt: ReadingFormat, resume_after: Mapping[int, int], clock: Clock
    ) -> Iterator[SourceBatch | None]:
        for item in super().read(fmt, resume_after, clock):
            if item is not None and item.position == self.fail_at:
                msg = "cannot read batch 3: it is corrupt"
                raise SourceError(msg)
            yield item


def test_when_the_source_fails_what_was_read_before_is_checkpointed(tmp_path: Path) -> None:
    spec_ = spec(tmp_path)
    spec_ = spec_.model_copy(
        update={"checkpoint": spec_.checkpoint.model_copy(update={"interval": timedelta(hours=1)})}
    )
    with pytest.raises(SourceError, match="corrupt"):
        Runner(
            spec_, source=FailingSource(BATCHES, 3), sinks=[ListSink()], clock=ManualClock(START)
        ).run()
    checkpoint = CheckpointStore(tmp_path / "ckpt").load(spec_.fingerprint())
    assert checkpoint is not None
    assert checkpoint.positions("readings") == {0: 2}
    summary = Runner(
        spec_, source=ListSource(BATCHES), sinks=[ListSink()], clock=ManualClock(START)
    ).run()
    assert summary.resumed
    assert summary.counters["lines"] == 11
    assert summary.balanced


def test_counters_reach_the_store_per_partition(tmp_path: Path) -> None:
    db = tmp_path / "out.duckdb"
    Runner(
        two_steps(tmp_path),
        source=ListSource([[line("a", 0, 1), line("a", 25, 2)], ["", line("a", 5, 3)]]),
        sinks=[DuckDBSink(db)],
        clock=ManualClock(START),
    ).run()
    with Store(db) as store:
        counters = store.counters("two")
    assert counters["lines"] == 4
    assert counters["blank"] == 1
    assert counters["late:avg_10s"] == 1


class Listening(ListSource):
    """A ListSource that remembers what the runner told it about checkpoints."""

    def __init__(self, batches: list[list[str] | None]) -> None:
        super().__init__(batches)
        self.folder: tuple[Path, str] | None = None
        self.saved: list[dict[int, int]] = []

    def use_checkpoint_dir(self, folder: Path, stream: str) -> None:
        self.folder = (folder, stream)

    def checkpointed(self, positions: Mapping[int, int]) -> None:
        self.saved.append(dict(positions))


def test_a_source_hears_where_checkpoints_live_and_each_position_saved(tmp_path: Path) -> None:
    source = Listening(BATCHES)

    run(tmp_path, source, ListSink()).run()

    assert source.folder == (tmp_path / "ckpt", "readings")
    assert source.saved[-1] == {0: len(BATCHES) - 1}
    assert source.saved == sorted(source.saved, key=lambda saved: saved.get(0, -1))
