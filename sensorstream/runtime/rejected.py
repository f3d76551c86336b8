"""Records a step refused, as dead letters: stored with a reason code, never dropped unseen.

A join under ``missing: dead_letter`` refuses a record whose key its table lacks. The
record was a valid reading when it arrived (it is counted accepted), so its dead letter
keeps the record as JSON, with the step's reason code and message and ``origin`` naming
the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import orjson
import polars as pl

from sensorstream.readings import dead_letters


def rejected_dead_letters(
    rejected: Mapping[str, pl.DataFrame], arrived_at: datetime
) -> pl.DataFrame:
    """Dead letters for every refused record, step by step."""
    parts = []
    for step, frame in rejected.items():
        values = frame.drop("reason_code", "reason")
        raws = [orjson.dumps(row, default=str) for row in values.to_dicts()]
        parts.append(
            dead_letters(
                raws,
                frame["reason_code"].to_list(),
                frame["reason"].to_list(),
                [f"step {step}"] * frame.height,
                arrived_at,
            )
        )
    return pl.concat(parts)
