"""/metrics: scraped, parsed with prometheus-client's own parser, and equal to the summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sensorstream.engine.rules.lifecycle import ALERT_STATES
from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.runner import Runner
from sensorstream.sinks import DuckDBSink
from sensorstream.store import Store
from sensorstream.testing import Crash, ListSink, ListSource, ManualClock
from tests.unit.runtime.test_runner import BATCHES, START, line, spec


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


def test_each_stream_step_counts_the_rows_it_emitted(tmp_path: Path) -> None:
    derived = spec(tmp_path).model_copy(deep=True)
    data = derived.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["steps"] = [
        {"name": "doubled", "derive": {"t2": "t * 2"}},
        {"name": "big", "input": "doubled", "where": "t2 > 6"},
        {
            "name": "w",
            "input": "big",
            "window": {"type": "tumbling", "size": "10s"},
            "aggregates": ["count"],
        },
    ]
    sink = ListSink()
    runner = Runner(
        PipelineSpec.model_validate(data),
        source=ListSource(BATCHES),
        sinks=[sink],
        clock=ManualClock(START),
    )
    summary = runner.run()
    scraped = samples(runner.metrics.text())
    rows = {
        step: scraped.get(("sensorstream_step_rows_total", (("pipeline", "unit"), ("step", step))))
        for step in ("doubled", "big", "w")
    }
    # Every reading but the duplicate passes the derive (t = 1..9), the one later too late
    # for the window included (it is late for the window, not for a derive); the filter
    # keeps t > 3; a window emits results, not a stream.
    counts = summary.counters
    assert counts.get("duplicates") == 1
    assert rows["doubled"] == counts.get("accepted") + counts.get("late") == 9
    assert rows["big"] == 6
    assert rows["w"] is None


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


# -- alerts: how many in each state, and the transitions into each -------------------------


def alerting_spec(tmp_path: Path) -> PipelineSpec:
    """Readings judged by a rule that needs two breaches in a row, and flaps after 3 changes."""
    return PipelineSpec.model_validate(
        {
            "name": "unit",
            "source": {"type": "simulator"},  # replaced by a ListSource
            "readings": {"measurements": {"t": "float"}},
            "event_time": {"out_of_orderness": "1s"},
            "steps": [
                {
                    "name": "hot",
                    "rule": {"threshold": "t", "above": {"warning": 5}},
                    "consecutive": 2,
                    "flapping": {"changes": 3, "within": "1m", "settle": "10m"},
                }
            ],
            "checkpoint": {"dir": str(tmp_path / "ckpt"), "interval": "0s"},
        }
    )


# a fires; b goes pending, back to ok, pending again; c fires and resolves; d flaps.
ALERTING: list[list[str] | None] = [
    [line("a", 0, 6), line("b", 0, 6), line("c", 0, 6), line("d", 0, 6)],
    [line("a", 1, 7), line("b", 1, 1), line("c", 1, 6), line("d", 1, 1)],
    [line("a", 2, 8), line("c", 2, 1), line("d", 2, 6)],
    None,
    [line("d", 3, 1), line("b", 5, 6)],
    [line("d", 4, 6), line("d", 5, 1), line("d", 6, 6), line("a", 10, 9)],
    None,
    [line("a", 20, 9), line("d", 20, 1)],
]


def alert_figures(text: bytes) -> dict[tuple[str, str], float]:
    """``sensorstream_alerts`` and ``..._alert_transitions_by_rule_total`` by (family, state)."""
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        if family.name in ("sensorstream_alerts", "sensorstream_alert_transitions_by_rule"):
            for sample in family.samples:
                assert (sample.labels["pipeline"], sample.labels["rule"]) == ("unit", "hot")
                found[(sample.name, sample.labels["state"])] = sample.value
    return found


def stored_states(path: Path) -> dict[tuple[str, str], float]:
    """What the gauge should say: the stored alerts counted by current state."""
    with Store(path) as store:
        states = store.alerts("unit")["state"].to_list()
    return {("sensorstream_alerts", s): float(states.count(s)) for s in ALERT_STATES}


def gauges(figures: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    return {key: value for key, value in figures.items() if key[0] == "sensorstream_alerts"}


def test_the_alert_gauges_count_the_stored_alerts_by_state(tmp_path: Path) -> None:
    path = tmp_path / "out.duckdb"
    runner = Runner(
        alerting_spec(tmp_path),
        source=ListSource(ALERTING),
        sinks=[DuckDBSink(path)],
        clock=ManualClock(START),
    )
    summary = runner.run()

    figures = alert_figures(runner.metrics.text())

    assert gauges(figures) == stored_states(path)
    assert {state for (_, state), n in gauges(figures).items() if n} >= {"firing", "resolved"}
    with Store(path) as store:
        transitions = store.alert_transitions("unit", limit=None)["state"].to_list()
    moved = {k: v for k, v in figures.items() if k[0].endswith("by_rule_total")}
    assert moved == {
        ("sensorstream_alert_transitions_by_rule_total", s): float(transitions.count(s))
        for s in set(transitions)
    }
    assert sum(moved.values()) == summary.counters.get("alert_transitions")


def test_a_restored_run_shows_the_alert_figures_of_an_uninterrupted_one(tmp_path: Path) -> None:
    def run(folder: Path, source: ListSource) -> Runner:
        runner = Runner(
            alerting_spec(folder),
            source=source,
            sinks=[DuckDBSink(folder / "out.duckdb")],
            clock=ManualClock(START),
        )
        runner.run()
        return runner

    clean = run(tmp_path / "clean", ListSource(ALERTING))
    crashing = ListSource(ALERTING, crash_at=5)
    with pytest.raises(Crash):
        run(tmp_path / "crashed", crashing)
    restored = run(tmp_path / "crashed", crashing)

    assert alert_figures(restored.metrics.text()) == alert_figures(clean.metrics.text())
    assert gauges(alert_figures(restored.metrics.text())) == stored_states(
        tmp_path / "crashed" / "out.duckdb"
    )
