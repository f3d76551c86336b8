"""/metrics: scraped, parsed with prometheus-client's own parser, and equal to the summary."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sensorstream.runtime.runner import Runner
from sensorstream.testing import ListSink, ListSource, ManualClock
from tests.unit.runtime.test_runner import BATCHES, START, spec


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_the_scraped_counters_are_the_runs_summary(tmp_path: Path) -> None:
    runner = Runner(
        spec(tmp_path), source=ListSource(BATCHES), sinks=[ListSink()], clock=ManualClock(START)
    )
    summary = runner.run()
    scraped = samples(runner.metrics.text())
    part = (("partition", "0"), ("pipeline", "unit"))
    for counter in ("lines", "accepted", "duplicates", "late", "dead_letters", "results"):
        assert scraped[(f"sensorstream_{counter}_total", part)] == summary.counters.get(counter)
    reason = (("partition", "0"), ("pipeline", "unit"), ("reason_code", "invalid_json"))
    assert scraped[("sensorstream_dead_letters_by_reason_total", reason)] == 1
    late = (("partition", "0"), ("pipeline", "unit"), ("step", "w"))
    assert scraped[("sensorstream_late_by_step_total", late)] == summary.counters.get("late:w")
    batches = (("pipeline", "unit"), ("stream", "readings"))
    assert scraped[("sensorstream_batch_rows_count", batches)] == len(BATCHES)
    assert scraped[("sensorstream_checkpoint_seconds_count", (("pipeline", "unit"),))] >= 1
    assert scraped[("sensorstream_state_rows", part)] >= 0


def test_two_runners_keep_their_own_figures(tmp_path: Path) -> None:
    first = Runner(spec(tmp_path / "a"), source=ListSource(BATCHES[:1]), sinks=[ListSink()])
    second = Runner(spec(tmp_path / "b"), source=ListSource(BATCHES), sinks=[ListSink()])
    first.run()
    second.run()
    part = (("partition", "0"), ("pipeline", "unit"))
    assert samples(first.metrics.text())[("sensorstream_lines_total", part)] == 3
    assert samples(second.metrics.text())[("sensorstream_lines_total", part)] == sum(
        len(batch or ()) for batch in BATCHES
    )
