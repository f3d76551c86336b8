"""The closing report of a run: the summary table, loud warnings, and the exit code.

The table shows where every line went: accepted, duplicate, late for every step,
dead-lettered (by reason code), blank, and each stream's own lines when there are several;
then the readings too late for each step (a reading late for one step but taken by
another is accepted, so the per-step rows are the only place it shows) and the records a
step refused (a join's missing reference, stored as dead letters); then the results, the
rate, any reference table whose refresh failed, and whether the lines add up.

A run whose input was mostly dead letters did not really work, even though every line is
accounted for, so it says so on stderr, with the most frequent reason codes and what they
usually mean; if not one reading was accepted the command exits 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sensorstream.cli.failures import ExitCode, error_line
from sensorstream.display import safe_text, visible

if TYPE_CHECKING:
    from sensorstream.runtime.counters import Counters, RunSummary

# A warning when more than this share of the lines with content were dead letters...
HIGH_DEAD_LETTER_SHARE = 0.10
# ... and at least this many: two bad lines of ten are noise, not a misconfiguration.
MIN_DEAD_LETTERS_TO_WARN = 5
TOP_REASONS = 3  # reason codes listed by name in the table and in warnings

# What a reason code usually means when most of the input has it.
HINTS = {
    "no_measurements": "Do readings.measurements match the data's field names?",
    "wrong_type": "Do readings.measurements declare the types the data has?",
    "missing_device_id": "Is readings.device_field the data's device id field?",
    "missing_timestamp": "Is readings.time_field the data's time field?",
    "bad_timestamp": "Is readings.time_field the data's time, and readings.time_unit right?",
    "nonexistent_local_time": "Is readings.time_zone the zone the devices' clocks keep?",
    "time_too_early": "Is readings.time_unit right (s, ms, us or ns since 1970)?",
    "time_in_future": "Is readings.time_unit right (s, ms, us or ns since 1970)?",
    "invalid_json": "Is the input NDJSON, one JSON object per line?",
    "invalid_utf8": "Is the input UTF-8 text?",
    "not_an_object": "Is the input NDJSON, one JSON object per line?",
    "wrong_field_count": "Does every CSV row have the header's fields?",
    "invalid_geo": 'Is the latlon measurement text "lat,lon"? (An object {lat, lon} is geo.)',
}
_LOOK = 'Look at some: sensorstream query "SELECT reason, raw FROM dead_letters LIMIT 5"'


@dataclass(frozen=True)
class Outcome:
    """What running a pipeline from the CLI gave: the summary, and how it ended."""

    summary: RunSummary
    pipeline: str
    steps: tuple[str, ...]
    checkpoint_dir: Path
    stores: tuple[Path, ...] = ()  # the DuckDB files its results went to
    interrupted: bool = False
    fresh: bool = False  # run with --fresh (the demo always is): a rerun starts over


def report(outcome: Outcome, out: Console, errors: Console) -> ExitCode:
    """Print the summary to ``out`` and any warning to ``errors``; returns the exit code."""
    summary = outcome.summary
    if summary.already_complete:
        out.print(
            Text.assemble(
                "pipeline ",
                safe_text(outcome.pipeline, "bold"),
                " already completed its input (checkpoint in ",
                safe_text(outcome.checkpoint_dir),
                "): nothing to do; run with --fresh to process it again.",
            )
        )
        out.print(summary_table(summary, outcome.steps, title="its completed run"))
        return ExitCode.OK
    out.print(summary_table(summary, outcome.steps))
    warning = dead_letter_warning(summary.counters)
    if warning is not None:
        errors.print(warning)
    if outcome.interrupted:
        then = "" if outcome.fresh else "; the same command resumes from it"
        errors.print(Text(f"interrupted: stopped cleanly at a checkpoint{then}", style="yellow"))
        return ExitCode.INTERRUPTED
    if summary.counters.get("accepted") == 0:
        errors.print(error_line(nothing_accepted(summary.counters)))
        return ExitCode.NOTHING_ACCEPTED
    return ExitCode.OK


def summary_table(summary: RunSummary, steps: Sequence[str], title: str = "run summary") -> Table:
    """The counts of a run, nested as they add up, then its rate and whether they balance."""
    counters = summary.counters
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")

    def row(label: str, value: str | int) -> None:
        shown = f"{value:,}" if isinstance(value, int) else value
        table.add_row(safe_text(label), Text(shown))

    row("lines in", counters.get("lines"))
    row("  accepted", counters.get("accepted"))
    row("  duplicates", counters.get("duplicates"))
    row("  late (for every step)", counters.get("late"))
    row("  dead-lettered", counters.get("dead_letters"))
    for code, count in _top_reasons(counters):
        row(f"    {code}", count)
    row("  blank", counters.get("blank"))
    for stream in counters.streams():
        own = f"stream:{stream}:"
        row(
            f"stream {stream}",
            f"{counters.get(own + 'lines'):,} lines: {counters.get(own + 'accepted'):,} "
            f"accepted, {counters.get(own + 'dead_letters'):,} dead-lettered",
        )
    late_by_step = counters.late_by_step()
    if any(late_by_step.values()):
        for step in [*steps, *(s for s in late_by_step if s not in steps)]:
            row(f"late for {step}", late_by_step.get(step, 0))
    for step, count in counters.rejected_by_step().items():
        row(f"refused by {step} (dead letters)", count)
    row("results out", counters.get("results"))
    if counters.get("alert_transitions"):
        row("alert transitions", counters.get("alert_transitions"))
    if not summary.already_complete:
        row("readings/s (this run)", f"{summary.readings_per_second:,.0f}")
        row("wall time", f"{summary.seconds:.2f} s")
        if summary.resumed:
            row("resumed from checkpoint", "yes")
    for table_name, problem in summary.table_errors.items():
        table.add_row(
            safe_text(f"table {table_name}"),
            safe_text(f"last refresh failed, kept its last content: {problem}", "yellow"),
        )
    balanced = Text("yes") if summary.balanced else Text("NO", style="bold red")
    table.add_row(Text("all lines accounted for"), balanced)
    return table


def dead_letter_warning(counters: Counters, *, early: bool = False) -> Text | None:
    """A loud warning when most lines are dead letters, naming the top reasons; else None.

    ``early``: said while the pipeline still runs, of the lines so far.
    """
    dead = counters.get("dead_letters")
    payloads = counters.get("lines") - counters.get("blank")
    if dead < MIN_DEAD_LETTERS_TO_WARN or dead <= HIGH_DEAD_LETTER_SHARE * payloads:
        return None
    reasons = list(counters.dead_letters_by_code())
    if early:
        what = f"the first {payloads:,} lines were all dead letters"
    else:
        what = f"{dead / payloads:.0%} of the lines ({dead:,} of {payloads:,}) were dead letters"
    hints = [HINTS[code] for code in reasons[:TOP_REASONS] if code in HINTS]
    advice = " ".join(dict.fromkeys(hints)) or _LOOK
    text = Text("warning: ", style="bold yellow")
    text.append(f"{what}; reasons: {_reason_list(counters)}. {advice}")
    if early:
        text.append(" (still running; Ctrl-C stops it)")
    return text


def nothing_accepted(counters: Counters) -> str:
    """Why a run that accepted nothing is a failure, and what to look at."""
    lines = counters.get("lines")
    if lines == 0:
        return "the input had no lines: nothing was processed"
    blank = counters.get("blank")
    if lines == blank:
        return f"the input had only blank lines ({blank:,}): nothing was processed"
    return (
        f"not one reading of {lines - blank:,} lines was accepted; "
        "see the summary above for where they went"
    )


def _top_reasons(counters: Counters) -> list[tuple[str, int]]:
    """The most frequent reason codes, and the rest as ``other reasons``."""
    by_code = list(counters.dead_letters_by_code().items())
    if len(by_code) <= TOP_REASONS + 1:
        return by_code
    rest = sum(count for _, count in by_code[TOP_REASONS:])
    return [*by_code[:TOP_REASONS], ("other reasons", rest)]


def _reason_list(counters: Counters) -> str:
    return ", ".join(f"{visible(code)} {count:,}" for code, count in _top_reasons(counters))
