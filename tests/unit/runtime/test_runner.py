from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.runner import Runner
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
