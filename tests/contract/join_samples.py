"""Contract samples for the stream join and relation kinds, ready for ``test_steps.SAMPLES``.

They join once the kinds are in ``STEP_KINDS`` and the task feeds steps of two inputs:
``SAMPLES |= JOIN_SAMPLES`` there, and :func:`join_yaml` in ``_as_yaml``. Both sides come
from the readings through derive steps, so one readings stream exercises rounds that bring
both inputs. The contract only compares results, so each join is read by a window.
"""

from __future__ import annotations

from datetime import timedelta

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.derive import DeriveStep
from sensorstream.engine.joins.streams import StreamJoinStep
from sensorstream.engine.relation import RelationStep
from sensorstream.engine.steps import Step
from sensorstream.engine.windows import HoppingWindow, TumblingWindow, WindowStep

SECOND = timedelta(seconds=1)
HOT = DeriveStep("hot", "readings", where="temperature > 0")
HUMID = DeriveStep("humid", "readings", where="humidity > 0")


def counted(name: str, over: str, size: timedelta = 2 * SECOND) -> WindowStep:
    """A window that counts a join's rows, and those with a right side (not null)."""
    return WindowStep(
        name,
        TumblingWindow(size),
        ("device_id",),
        (Aggregate("count"), Aggregate("max", "temperature"), Aggregate("count", "ts_right")),
        input=over,
    )


JOIN_SAMPLES: dict[str, list[tuple[Step, ...]]] = {
    "stream_join": [
        (
            HOT,
            HUMID,
            StreamJoinStep("pairs", "hot", "humid", ("device_id",), 2 * SECOND),
            counted("paired", "pairs"),
        ),
        (
            HOT,
            HUMID,
            StreamJoinStep("or_alone", "hot", "humid", ("device_id",), SECOND, "left"),
            counted("paired_or_alone", "or_alone", 6 * SECOND),
        ),
        (
            HOT,
            HUMID,
            StreamJoinStep(
                "same_window",
                "hot",
                "humid",
                ("device_id",),
                how="left",
                window=HoppingWindow(4 * SECOND, 2 * SECOND),
            ),
            counted("per_window", "same_window"),
        ),
    ],
    "relation": [
        (
            WindowStep(
                "minute",
                TumblingWindow(2 * SECOND),
                ("device_id",),
                (Aggregate("count"), Aggregate("mean", "temperature")),
            ),
            WindowStep(
                "hot_minute",
                TumblingWindow(2 * SECOND),
                ("device_id",),
                (Aggregate("mean", "temperature"),),
                input="hot",
            ),
            HOT,
            RelationStep("all_or_hot", "minute", "hot_minute", "temperature_mean", ("device_id",)),
        ),
        (
            WindowStep(
                "by_band",
                TumblingWindow(2 * SECOND),
                ("device_id", "band"),
                (Aggregate("mean", "humidity"),),
                input="bands",
            ),
            DeriveStep("bands", "readings", columns=(("band", "temperature > 0"),)),
            RelationStep(
                "warm_or_cold",
                "by_band",
                "by_band",
                "humidity_mean",
                ("device_id",),
                left_where="band",
                right_where="NOT band",
            ),
        ),
    ],
}


def join_yaml(step: Step) -> dict[str, object] | None:
    """A stream join or relation as its YAML mapping, by hand; None for other kinds."""
    if isinstance(step, StreamJoinStep):
        join: dict[str, object] = {"stream": step.other, "on": list(step.on), "how": step.how}
        window = step.window
        if isinstance(window, HoppingWindow):
            join["window"] = {"type": "hopping", "size": window.size, "slide": window.slide}
        elif isinstance(window, TumblingWindow):
            join["window"] = {"type": "tumbling", "size": window.size}
        else:
            join["within"] = step.within
        return {"name": step.name, "input": step.input, "join": join}
    if isinstance(step, RelationStep):
        relation: dict[str, object] = {
            "left": step.left,
            "right": step.right,
            "value": step.value,
            "key": list(step.key),
            "left_where": step.left_where,
            "right_where": step.right_where,
        }
        return {"name": step.name, "relation": relation}
    return None
