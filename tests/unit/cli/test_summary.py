from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from sensorstream.cli.failures import ExitCode
from sensorstream.cli.summary import Outcome, dead_letter_warning, report
from sensorstream.runtime.counters import Counters, RunSummary


def _console() -> Console:
    return Console(file=io.StringIO(), width=120, color_system=None)


def _text(console: Console) -> str:
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def _report(
    counters: Counters, *, resumed: bool = False, already_complete: bool = False
) -> tuple[ExitCode, str, str]:
    summary = RunSummary(
        counters=counters,
        seconds=1.0,
        resumed=resumed,
        lines_this_run=0 if already_complete else counters.get("lines"),
        already_complete=already_complete,
    )
    outcome = Outcome(
        summary=summary,
        pipeline="weather",
        steps=("avg_1m", "hop_5m"),
        checkpoint_dir=Path(".sensorstream/weather"),
    )
    out, errors = _console(), _console()
    code = report(outcome, out, errors)
    return code, _text(out), _text(errors)


def _row(text: str, label: str) -> list[str]:
    [line] = [line for line in text.splitlines() if f" {label} " in line]
    return [cell.strip() for cell in line.strip("│ ").split("│")]


def test_the_summary_lists_every_outcome_and_says_the_lines_add_up() -> None:
    counters = Counters(lines=10, accepted=6, duplicates=1, late=1, dead_letters=1, blank=1)
    code, out, errors = _report(counters)
    assert code == ExitCode.OK
    assert errors == ""
    labels = [_row(out, label)[0] for label in ("lines in", "accepted", "blank")]
    assert labels == ["lines in", "accepted", "blank"]
    assert _row(out, "late (for every step)") == ["late (for every step)", "1"]
    assert _row(out, "all lines accounted for") == ["all lines accounted for", "yes"]


def test_readings_late_for_one_step_show_per_step_even_when_none_is_late_for_all() -> None:
    counters = Counters(lines=200, accepted=200, **{"late:avg_1m": 131})
    _, out, _ = _report(counters)
    assert _row(out, "late (for every step)")[1] == "0"
    assert _row(out, "late for avg_1m")[1] == "131"
    assert _row(out, "late for hop_5m")[1] == "0"


def test_no_per_step_rows_when_nothing_was_late() -> None:
    _, out, _ = _report(Counters(lines=5, accepted=5))
    assert "late for" not in out


def test_dead_letters_are_broken_down_by_their_top_reason_codes() -> None:
    by_code = {"invalid_json": 5, "wrong_type": 4, "not_finite": 3, "bad_timestamp": 2, "x": 1}
    counters = Counters(
        lines=1000,
        accepted=985,
        dead_letters=15,
        **{f"dead_letters:{code}": count for code, count in by_code.items()},
    )
    _, out, _ = _report(counters)
    assert _row(out, "invalid_json")[1] == "5"
    assert _row(out, "not_finite")[1] == "3"
    assert _row(out, "other reasons")[1] == "3"
    assert "bad_timestamp" not in out


def test_a_finished_pipeline_says_it_is_complete_not_that_it_resumed_at_0_per_second() -> None:
    code, out, _ = _report(Counters(lines=5, accepted=5), resumed=True, already_complete=True)
    assert code == ExitCode.OK
    assert "already completed its input" in out
    assert "--fresh" in out
    assert "resumed" not in out
    assert "readings/s" not in out


def test_mostly_dead_letters_warn_loudly_with_the_reason_and_a_hint() -> None:
    counters = Counters(
        lines=100, accepted=80, dead_letters=20, **{"dead_letters:no_measurements": 20}
    )
    code, _, errors = _report(counters)
    assert code == ExitCode.OK
    assert errors.startswith("warning: 20% of the lines (20 of 100) were dead letters")
    assert "no_measurements 20" in errors
    assert "readings.measurements" in errors


def test_a_few_dead_letters_do_not_warn() -> None:
    assert dead_letter_warning(Counters(lines=10, accepted=6, dead_letters=4)) is None
    assert dead_letter_warning(Counters(lines=1000, accepted=900, dead_letters=100)) is None


def test_accepting_nothing_exits_1_saying_so() -> None:
    counters = Counters(lines=300, dead_letters=300, **{"dead_letters:wrong_type": 300})
    code, _, errors = _report(counters)
    assert code == ExitCode.NOTHING_ACCEPTED
    assert "warning: 100% of the lines" in errors
    assert "error: not one reading of 300 lines was accepted" in errors


def test_an_empty_input_accepted_nothing_either() -> None:
    code, _, errors = _report(Counters())
    assert code == ExitCode.NOTHING_ACCEPTED
    assert "the input had no lines" in errors
