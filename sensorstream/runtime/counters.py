"""What a run counted, per partition, and the summary that checks every line is accounted for.

Every line a source consumes is exactly one of: **accepted** (it reached at least one window
step in time), **duplicate**, **late** (too late for every step), **dead-lettered** (it is no
valid reading: see its reason code) or **blank**. So, always::

    lines = accepted + duplicates + late + dead_letters + blank

A reading too late for some steps but not all is accepted, and counted per step as
``late:<step>``; dead letters are counted per reason code as ``dead_letters:<code>``. The
counters of a partition are part of its checkpointed state, so the invariant holds across
restarts and a partition's counters move with it.

Alerts are counted from the transitions a partition emits: ``transitions:<rule>:<state>``
counts the transitions into each state (and ``correction`` events), and
``alerts:<rule>:<state>`` how many of the rule's alerts are in each state now (each
transition moves one alert from its previous state to its new one). Being counters, they
are checkpointed with the state that emits the transitions, so a restored run counts
exactly what an uninterrupted one does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import polars as pl

from sensorstream.engine.task import TaskOutput
from sensorstream.sources.base import SourceBatch

# The classification, in the order a summary lists it.
OUTCOMES = ("accepted", "duplicates", "late", "dead_letters", "blank")
TOTALS = ("lines", *OUTCOMES, "results", "batches")
LATE_FOR = "late:"
DEAD_FOR = "dead_letters:"
REJECTED_FOR = "rejected:"
STREAM_FOR = "stream:"
ALERTS_IN = "alerts:"  # alerts:<rule>:<state>: a rule's alerts in a state now
TRANSITIONS_TO = "transitions:"  # transitions:<rule>:<state>: transitions into a state


class Counters(dict[str, int]):
    """Named counts; a missing name counts 0.

    >>> c = Counters(lines=3, accepted=2, blank=1)
    >>> c.balanced, c.get("late")
    (True, 0)
    """

    def get(self, name: str, default: int = 0) -> int:  # type: ignore[override]
        """The count of ``name``, 0 if never counted."""
        return super().get(name, default)

    def add(self, name: str, amount: int) -> None:
        """Count ``amount`` more of ``name``."""
        if amount:
            self[name] = self.get(name) + amount

    def count_batch(
        self, item: SourceBatch, output: TaskOutput, *, stream: str | None = None
    ) -> None:
        """Count one source batch and what the engine made of its readings.

        With ``stream`` (a pipeline of several), the batch is also counted under the
        stream's own names (``stream:events:lines``, ...), so each stream balances alone.
        """
        if stream is not None:
            own = Counters()
            own.count_batch(item, output)
            for name in ("lines", *OUTCOMES):
                self.add(f"{STREAM_FOR}{stream}:{name}", own.get(name))
        self.add("batches", 1)
        self.add("lines", item.lines)
        self.add("blank", item.blank)
        self.add("dead_letters", item.dead_letters.height)
        if item.dead_letters.height:
            codes = item.dead_letters["reason_code"].value_counts()
            for code, count in codes.iter_rows():
                self.add(f"{DEAD_FOR}{code}", int(count))
        self.add("duplicates", output.duplicates)
        self.add("late", output.late_count)
        for step, count in output.late_by_step.items():
            self.add(f"{LATE_FOR}{step}", count)
        self.add("accepted", output.accepted.height if output.accepted is not None else 0)

    def count_rejected(self, rejected: Mapping[str, pl.DataFrame]) -> None:
        """Count records a step refused (a join's missing reference), per step.

        They were accepted at intake, so they are not among the outcomes of a line: a
        refusal is counted besides, like lateness for one step.
        """
        for step, frame in rejected.items():
            self.add("rejected", frame.height)
            self.add(f"{REJECTED_FOR}{step}", frame.height)

    def count_alerts(self, events: Mapping[str, pl.DataFrame]) -> None:
        """Count rule steps' transitions by state, and move their alerts between states.

        An alert's first transition (``sequence`` 0) puts it in its state; each later one
        takes it out of its previous state. Corrections leave states as they are.

        >>> from sensorstream.engine.rules.lifecycle import transitions_frame
        >>> def moved(n, state, was):
        ...     return dict(
        ...         alert_id="a",
        ...         rule="hot",
        ...         key="{}",
        ...         state=state,
        ...         sequence=n,
        ...         previous_state=was,
        ...         kind="transition",
        ...         transition_id=f"a-{n}",
        ...     )
        >>> c = Counters()
        >>> c.count_alerts({"hot": transitions_frame([moved(0, "pending", "ok")])})
        >>> c.count_alerts({"hot": transitions_frame([moved(1, "firing", "pending")])})
        >>> c.alerts_by_state()
        {('hot', 'firing'): 1, ('hot', 'pending'): 0}
        """
        for rule, frame in events.items():
            if frame.height == 0:
                continue
            for state, count in frame["state"].value_counts().iter_rows():
                self.add(f"{TRANSITIONS_TO}{rule}:{state}", int(count))
            moved = frame.filter(pl.col("kind") == "transition")
            for state, count in moved["state"].value_counts().iter_rows():
                self.add(f"{ALERTS_IN}{rule}:{state}", int(count))
            left = moved.filter(pl.col("sequence") > 0)["previous_state"].value_counts()
            for state, count in left.iter_rows():
                self.add(f"{ALERTS_IN}{rule}:{state}", -int(count))

    def alerts_by_state(self) -> dict[tuple[str, str], int]:
        """How many alerts of each rule are in each state now, by (rule, state)."""
        return _by_rule_and_state(self, ALERTS_IN)

    def transitions_by_state(self) -> dict[tuple[str, str], int]:
        """Transitions (and corrections) each rule emitted into each state, by (rule, state)."""
        return _by_rule_and_state(self, TRANSITIONS_TO)

    @property
    def balanced(self) -> bool:
        """Every line accounted for: accepted + duplicates + late + dead letters + blank.

        In a pipeline of several streams, each stream's lines balance too.
        """
        if self.get("lines") != sum(self.get(name) for name in OUTCOMES):
            return False
        return all(
            self.get(f"{STREAM_FOR}{stream}:lines")
            == sum(self.get(f"{STREAM_FOR}{stream}:{name}") for name in OUTCOMES)
            for stream in self.streams()
        )

    def streams(self) -> list[str]:
        """The streams counted on their own (none in a one-stream pipeline)."""
        suffix = ":lines"
        return sorted(
            name[len(STREAM_FOR) : -len(suffix)]
            for name in self
            if name.startswith(STREAM_FOR) and name.endswith(suffix)
        )

    def rejected_by_step(self) -> dict[str, int]:
        """Records each step refused."""
        return _with_prefix(self, REJECTED_FOR)

    def late_by_step(self) -> dict[str, int]:
        """Readings too late for each step (a reading late for all of them counts in each)."""
        return _with_prefix(self, LATE_FOR)

    def dead_letters_by_code(self) -> dict[str, int]:
        """Dead letters per reason code, most frequent first."""
        counts = _with_prefix(self, DEAD_FOR)
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def copy(self) -> Counters:
        """An independent copy."""
        return Counters(self)

    @staticmethod
    def sum(parts: Iterable[Mapping[str, int]]) -> Counters:
        """The counts of several partitions added up."""
        total = Counters()
        for part in parts:
            for name, value in part.items():
                total.add(name, value)
        return total


def _with_prefix(counters: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {
        name[len(prefix) :]: value for name, value in counters.items() if name.startswith(prefix)
    }


def _by_rule_and_state(counters: Mapping[str, int], prefix: str) -> dict[tuple[str, str], int]:
    found = {}
    for name, value in sorted(_with_prefix(counters, prefix).items()):
        rule, _, state = name.rpartition(":")  # a state has no colon; a step name might
        found[(rule, state)] = value
    return found


@dataclass
class RunSummary:
    """What a run did, for the CLI's closing table."""

    counters: Counters
    seconds: float
    resumed: bool
    lines_this_run: int = 0
    already_complete: bool = False
    partitions: dict[int, Counters] = field(default_factory=dict)
    watermarks: dict[int, int] = field(default_factory=dict)
    # Reference tables whose latest refresh failed (their last good content stayed).
    table_errors: dict[str, str] = field(default_factory=dict)

    @property
    def readings_per_second(self) -> float:
        """Lines handled per wall-clock second in this run."""
        return self.lines_this_run / self.seconds if self.seconds > 0 else 0.0

    @property
    def balanced(self) -> bool:
        """Every line accounted for, in every partition."""
        return self.counters.balanced and all(c.balanced for c in self.partitions.values())

    @property
    def dead_letter_share(self) -> float:
        """The share of non-blank lines that were dead-lettered (0 when there were none)."""
        payloads = self.counters.get("lines") - self.counters.get("blank")
        return self.counters.get("dead_letters") / payloads if payloads else 0.0
