"""Corrections: a window result the rule already judged was corrected by late readings.

The rule does not rewrite what it reported (see :mod:`.operator`): it re-judges the
corrected result alone, and if its level would differ, records a ``correction`` for the
key, which the alert store keeps beside the alerts' transitions. A window that late
readings opened after later windows were judged is one too, against ``ok`` (revision 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from sensorstream.engine.outputs import REVISION, START
from sensorstream.engine.rules.conditions import CARRIED, Condition
from sensorstream.engine.rules.lifecycle import LEVEL, KeyAlert, alert_id, key_text
from sensorstream.engine.time import micros_of
from sensorstream.readings import TS


def corrections(
    rule: str,
    condition: Condition,
    key: Sequence[str],
    seen: pl.DataFrame,
    alerts: Mapping[tuple[Any, ...], KeyAlert],
) -> list[dict[str, Any]]:
    """A correction record for each corrected result whose level alone would differ.

    A correction belongs to the key's open alert if that alert had begun by the window's
    time (so ``alerts show`` lists it in the alert's history); otherwise it has an id of
    its own, from the rule, the key and the window. Its transition id names the window
    and the revision, so corrections of several windows of one alert never collide.
    """
    seen = seen.sort([*key, TS], maintain_order=True)  # as a condition's level() wants it
    judged_level = seen[LEVEL]
    frame = seen.drop(LEVEL).with_columns(pl.lit(False).alias(CARRIED))
    frame = frame.with_columns(
        pl.lit(None, kind).alias(name) for name, kind in condition.carry().items()
    )
    frame = frame.with_columns(pl.lit(None, pl.Int8).alias(LEVEL))
    levels = condition.level(frame, key).get_column(LEVEL)
    records: list[dict[str, Any]] = []
    value = condition.value
    names = condition.severities
    for row, before, after in zip(frame.iter_rows(named=True), judged_level, levels, strict=True):
        if int(after) == int(before):
            continue
        values = {name: row[name] for name in key}
        text = key_text(values)
        start = micros_of(row[START])
        at = micros_of(row[TS])
        shown = row[value] if value is not None else None
        would = names[int(after) - 1] if after else "ok"
        was = names[int(before) - 1] if before else "ok"
        open_alert = alerts.get(tuple(values.values()))
        if (
            open_alert is not None
            and open_alert.alert is not None
            and open_alert.episode is not None
            and open_alert.episode <= at
        ):
            ident = open_alert.alert
        else:
            ident = alert_id(rule, text, start)
        records.append(
            {
                "transition_id": f"{ident}-w{start}-r{row[REVISION]}",
                "alert_id": ident,
                "rule": rule,
                "key": text,
                "state": "correction",
                "previous_state": was,
                "severity": None if not after else names[int(after) - 1],
                "event_time": at,
                "started_at": start,
                "value": None if shown is None else float(shown),
                "reason": (
                    f"the window from {row[START]:%H:%M:%S} was corrected by late readings "
                    f"(revision {row[REVISION]}): judged {was}, it would now be {would}"
                    if row[REVISION]
                    else f"the window from {row[START]:%H:%M:%S} was opened by late readings "
                    f"after later windows were judged: alone it would be {would}"
                ),
                "sequence": int(row[REVISION]),
                "kind": "correction",
            }
        )
    return records
