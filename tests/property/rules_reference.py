"""A per-event model of a threshold rule and the alert lifecycle: plain Python, no Polars.

Readings are judged in arrival order against the watermark that held before each; the
ones in time are then taken key by key in event-time order (arrival order breaks ties),
one at a time: the threshold's levels with hysteresis (:func:`threshold_levels`), then
the lifecycle (:func:`lifecycle`): the breach run, pending and firing, severity changes,
resolution, a pending run that held long enough firing at the instant it did, flapping and
settling. What it reports is what the rule operator must report. The other kinds' levels
are in :mod:`tests.property.rule_kinds_reference`; they share the lifecycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sensorstream.engine.rules.lifecycle import alert_id, key_text

MINUS_INFINITY = -(10**30)
END_OF_INPUT = 10**30
OK, PENDING, FIRING = 0, 1, 2
NAMES = {OK: "ok", PENDING: "pending", FIRING: "firing"}


@dataclass(frozen=True)
class RuleModel:
    """The rule being modelled: a threshold, the lifecycle and the event-time policy."""

    rule: str
    bounds: tuple[tuple[str, float], ...]
    clear: float
    consecutive: int
    hold_us: int
    out_of_orderness_us: int
    flapping_changes: int
    within_us: int
    settle_us: int
    flapping: bool = True


@dataclass
class _Key:
    on: list[bool]
    state: int = OK
    severity: int = 0
    run_start: int | None = None
    run_count: int = 0
    alert: str | None = None
    episode: int | None = None
    sequence: int = 0
    shown: str = "ok"
    changes: list[int] = field(default_factory=list)
    flapping_since: int | None = None


Transition = tuple[str, str, str, str | None, int, int | None, int, str]
"""(key, state, previous state, severity, event time, started at, sequence, alert id)."""


def transitions(model: RuleModel, rows: list[tuple[str, int, float | None]]) -> list[Transition]:
    """What the rule reports for readings (device, ts, value) in arrival order."""
    taken = in_time(rows, model.out_of_orderness_us)
    out: list[Transition] = []
    for device in sorted(taken):
        values = [(ts, value) for ts, _, value in taken[device] if value is not None]
        points = threshold_levels(model, values)
        out += lifecycle(model, key_text({"device_id": device}), points)
    return out


def in_time(
    rows: list[tuple[str, int, float | None]], out_of_orderness_us: int
) -> dict[str, list[tuple[int, int, float | None]]]:
    """Per device, the readings not behind the watermark, in event-time (then arrival) order."""
    watermark, latest = MINUS_INFINITY, None
    taken: dict[str, list[tuple[int, int, float | None]]] = {}
    for arrival, (device, ts, value) in enumerate(rows):
        if ts > watermark:
            taken.setdefault(device, []).append((ts, arrival, value))
        latest = ts if latest is None else max(latest, ts)
        watermark = max(watermark, latest - out_of_orderness_us)
    return {device: sorted(kept, key=lambda r: (r[0], r[1])) for device, kept in taken.items()}


def final_watermark(rows: list[tuple[str, int, float | None]], out_of_orderness_us: int) -> int:
    """The watermark after the last reading (before the end of input closes everything)."""
    if not rows:
        return MINUS_INFINITY
    return max(ts for _, ts, _ in rows) - out_of_orderness_us


def threshold_levels(model: RuleModel, values: list[tuple[int, float]]) -> list[tuple[int, int]]:
    """Each observation's level: the threshold's highest level on, with hysteresis."""
    on = [False] * len(model.bounds)
    points: list[tuple[int, int]] = []
    for ts, value in values:
        for index, (_, bound) in enumerate(model.bounds):
            if value >= bound:
                on[index] = True
            elif model.clear == 0 or value < bound - model.clear:
                on[index] = False
        points.append((ts, max((i + 1 for i, flag in enumerate(on) if flag), default=0)))
    return points


def lifecycle(
    model: RuleModel,
    text: str,
    points: list[tuple[int, int]],
    severities: tuple[str, ...] | None = None,
    end: int = END_OF_INPUT,
) -> list[Transition]:
    """The transitions of one key whose observations have these (event time, level) points.

    Its clocks (a pending alert's ``for``, flapping's settling) run up to ``end``: the end
    of input closes them all, unless the rule's time is processing time (the last tick).
    """
    names = severities if severities is not None else tuple(n for n, _ in model.bounds)
    key = _Key(on=[])
    out: list[Transition] = []

    def record(at: int, state: str, severity: int) -> None:
        if key.alert is None:
            key.alert, key.episode = alert_id(model.rule, text, at), at
        name = names[severity - 1] if severity > 0 else None
        out.append((text, state, key.shown, name, at, key.episode, key.sequence, key.alert))
        key.sequence += 1
        key.shown = "ok" if state == "resolved" else state

    def change(at: int, state: int, severity: int) -> None:
        if state != key.state:
            key.changes = [t for t in key.changes if t > at - model.within_us] + [at]
        if key.state == OK and state != OK and key.flapping_since is None:
            start = key.run_start if key.run_start is not None else at
            key.alert, key.episode, key.sequence = alert_id(model.rule, text, start), start, 0
        previous = key.state
        key.state, key.severity = state, severity
        if key.flapping_since is not None:
            return
        if model.flapping and state != previous and len(key.changes) > model.flapping_changes:
            key.flapping_since = at
            record(at, "flapping", severity)
            return
        if state == OK and key.alert is None:
            return
        record(at, NAMES[state] if state != OK else "resolved", severity)
        if state == OK:
            key.alert = key.episode = None

    def pass_time(now: int) -> None:
        # Firing by holding, and settling after flapping, happen at their own instants, in
        # the order of those instants, before anything observed at ``now``.
        while True:
            fire = None
            if (
                key.state == PENDING
                and model.hold_us > 0
                and key.run_start is not None
                and key.run_count >= model.consecutive
            ):
                fire = key.run_start + model.hold_us
            settled = None
            if key.flapping_since is not None and key.changes:
                settled = key.changes[-1] + model.settle_us
            if fire is not None and fire <= now and (settled is None or fire <= settled):
                change(fire, FIRING, key.severity)
            elif settled is not None and settled <= now:
                key.flapping_since, key.changes = None, []
                record(settled, NAMES[key.state] if key.state != OK else "resolved", key.severity)
                if key.state == OK:
                    key.alert = key.episode = None
            else:
                return

    for ts, level in points:
        pass_time(ts)
        if level:
            if key.run_count == 0:
                key.run_start, key.run_count = ts, 1
            else:
                key.run_count += 1
        else:
            key.run_start, key.run_count = None, 0
        held = key.run_start is not None and ts - key.run_start >= model.hold_us
        state = (
            FIRING
            if level and key.run_count >= model.consecutive and held
            else (PENDING if level else OK)
        )
        if (state, level) != (key.state, key.severity):
            at = ts
            if state == FIRING and key.state != FIRING and key.run_count > model.consecutive:
                assert key.run_start is not None
                at = key.run_start + model.hold_us
            change(at, state, level)
    pass_time(end)
    return out
