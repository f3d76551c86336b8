"""The Python way to define a pipeline; it builds the same :class:`PipelineSpec` as YAML does.

>>> from datetime import timedelta
>>> from sensorstream import Pipeline, TumblingWindow
>>> from sensorstream.sources import SimulatorSourceSettings
>>> p = Pipeline(
...     "weather",
...     source=SimulatorSourceSettings(type="simulator", devices=3),
...     measurements={"temperature": "float"},
... )
>>> p = p.window("avg_1m", TumblingWindow(timedelta(minutes=1)), ["mean(temperature)"])
>>> p.spec().steps[0].window.type
'tumbling'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from sensorstream.engine.windows import HoppingWindow, TumblingWindow, Window
from sensorstream.pipeline.joins import TableJoinStepSpec, TableStepSpec
from sensorstream.pipeline.rules import RuleStepSpec
from sensorstream.pipeline.spec import (
    CheckpointSpec,
    DedupSpec,
    EventTimeSpec,
    MeasurementSpec,
    PipelineSpec,
    ReadingsSpec,
    SinkSettings,
    SourceSettings,
    StreamSpec,
    TableSpec,
)
from sensorstream.pipeline.steps import DeriveStepSpec, StepSpec, WindowSpec, WindowStepSpec
from sensorstream.pipeline.stream_joins import RelationStepSpec, StreamJoinStepSpec
from sensorstream.readings import MeasurementType
from sensorstream.sources.tables import TableSourceSettings


def _window_spec(window: Window) -> WindowSpec:
    if isinstance(window, TumblingWindow):
        return WindowSpec(type="tumbling", size=window.size, offset=window.offset or None)
    if isinstance(window, HoppingWindow):
        return WindowSpec(
            type="hopping", size=window.size, slide=window.slide, offset=window.offset or None
        )
    return WindowSpec(type="session", gap=window.gap)


@dataclass(frozen=True)
class Pipeline:
    """An immutable builder: each method returns a new pipeline with one more piece."""

    name: str
    source: SourceSettings | None = None  # the readings stream (None: only named streams)
    # A type ("float") or a MeasurementSpec with the field to read it from.
    measurements: Mapping[str, MeasurementType | MeasurementSpec] | None = None
    readings_options: dict[str, Any] = field(default_factory=dict)
    streams: tuple[tuple[str, StreamSpec], ...] = ()
    tables: tuple[tuple[str, TableSpec], ...] = ()
    steps: tuple[StepSpec, ...] = ()
    sinks: tuple[SinkSettings, ...] = ()
    event_time_spec: EventTimeSpec = field(default_factory=EventTimeSpec)
    dedup_spec: DedupSpec = field(default_factory=DedupSpec)
    checkpoint_spec: CheckpointSpec = field(default_factory=CheckpointSpec)

    def window(
        self,
        name: str,
        window: Window,
        aggregates: Sequence[str],
        *,
        key: Sequence[str] = ("device_id",),
        emit: str = "on_close",
        input: str = "readings",
    ) -> Pipeline:
        """Add a windowed aggregation, e.g. ``["count", "mean(temperature)", "p99(latency)"]``.

        ``input`` is ``readings``, a derive step, or another window step to roll up.
        """
        step = WindowStepSpec.model_validate(
            {
                "name": name,
                "input": input,
                "window": _window_spec(window),
                "key": list(key),
                "aggregates": list(aggregates),
                "emit": emit,
            }
        )
        return replace(self, steps=(*self.steps, step))

    def derive(
        self,
        name: str,
        columns: dict[str, str] | None = None,
        *,
        where: str | None = None,
        input: str = "readings",
    ) -> Pipeline:
        """Add new columns (SQL expressions) and/or a row filter, e.g. ``where="t > 0"``."""
        step = DeriveStepSpec(name=name, input=input, derive=dict(columns or {}), where=where)
        return replace(self, steps=(*self.steps, step))

    def rule(
        self,
        name: str,
        rule: dict[str, Any],
        *,
        input: str = "readings",
        key: Sequence[str] | None = None,
        consecutive: int = 1,
        hold: timedelta = timedelta(0),
        flapping: dict[str, Any] | bool = True,
        judge: str = "on_close",
    ) -> Pipeline:
        """Add a rule; its condition as YAML writes it.

        For example ``{"threshold": "temperature_mean", "above": {"warning": 20}}``.
        ``hold`` is YAML's ``for``: how long a breach must last before the alert fires.
        """
        declared: dict[str, Any] = {
            "name": name,
            "input": input,
            "rule": rule,
            "consecutive": consecutive,
            "for": hold,
            "judge": judge,
        }
        if key is not None:
            declared["key"] = list(key)
        if flapping is False:
            declared["flapping"] = False
        elif isinstance(flapping, dict):
            declared["flapping"] = flapping
        return replace(self, steps=(*self.steps, RuleStepSpec.model_validate(declared)))

    def stream(
        self,
        name: str,
        source: SourceSettings,
        measurements: dict[str, Any],
        **readings: Any,
    ) -> Pipeline:
        """Add a named input stream, e.g. ``devices``; ``readings`` as YAML's ``readings:``.

        ``pipeline.stream("events", source, {"eventType": "string"}, device_field="deviceId")``
        """
        declared = {"measurements": measurements, **readings}
        spec = StreamSpec.model_validate({"source": source, "readings": declared})
        return replace(self, streams=(*self.streams, (name, spec)))

    def reference_table(
        self,
        name: str,
        source: TableSourceSettings,
        columns: dict[str, str],
        *,
        key: Sequence[str] = ("device_id",),
        valid_from: str | None = None,
    ) -> Pipeline:
        """Add a reference table (a file or a PostgreSQL query) that joins and rules read."""
        spec = TableSpec.model_validate(
            {"source": source, "key": list(key), "columns": columns, "valid_from": valid_from}
        )
        return replace(self, tables=(*self.tables, (name, spec)))

    def table(
        self,
        name: str,
        *,
        input: str,
        key: Sequence[str] = ("device_id",),
        columns: Sequence[str] = (),
        delete_when: str | None = None,
    ) -> Pipeline:
        """Add a table step: a changelog stream kept as the latest row per key."""
        step = TableStepSpec.model_validate(
            {
                "name": name,
                "input": input,
                "table": {"key": list(key), "columns": list(columns), "delete_when": delete_when},
            }
        )
        return replace(self, steps=(*self.steps, step))

    def join(self, name: str, *, input: str = "readings", **join: Any) -> Pipeline:
        """Add a join; ``join`` as YAML's ``join:`` mapping.

        With a table: ``join("placed", table="rooms", mode="as_of", missing="dead_letter")``;
        with a stream: ``join("pairs", input="a", stream="b", on=["device_id"], within=...)``.
        """
        declared = {"name": name, "input": input, "join": join}
        step: StepSpec = (
            StreamJoinStepSpec.model_validate(declared)
            if "stream" in join
            else TableJoinStepSpec.model_validate(declared)
        )
        return replace(self, steps=(*self.steps, step))

    def relation(
        self,
        name: str,
        *,
        left: str,
        right: str,
        value: str,
        key: Sequence[str] = ("device_id",),
        left_where: str | None = None,
        right_where: str | None = None,
    ) -> Pipeline:
        """Add a relation: two sides' window results compared per key and window."""
        step = RelationStepSpec.model_validate(
            {
                "name": name,
                "relation": {
                    "left": left,
                    "right": right,
                    "value": value,
                    "key": list(key),
                    "left_where": left_where,
                    "right_where": right_where,
                },
            }
        )
        return replace(self, steps=(*self.steps, step))

    def sink(self, settings: SinkSettings) -> Pipeline:
        """Add a sink."""
        return replace(self, sinks=(*self.sinks, settings))

    def event_time(
        self,
        *,
        out_of_orderness: timedelta = timedelta(seconds=5),
        allowed_lateness: timedelta = timedelta(0),
        idle_timeout: timedelta | None = timedelta(seconds=30),
    ) -> Pipeline:
        """Set how event time is judged."""
        spec = EventTimeSpec(
            out_of_orderness=out_of_orderness,
            allowed_lateness=allowed_lateness,
            idle_timeout=idle_timeout,
        )
        return replace(self, event_time_spec=spec)

    def dedup(self, *, enabled: bool = True, by: str = "exact") -> Pipeline:
        """Set which repeats are dropped."""
        return replace(self, dedup_spec=DedupSpec.model_validate({"enabled": enabled, "by": by}))

    def readings(self, **options: Any) -> Pipeline:
        """Set reading-format options: device_field, time_field, time_unit, time_zone, tags, ..."""
        return replace(self, readings_options={**self.readings_options, **options})

    def checkpoint(self, folder: Path, interval: timedelta = timedelta(seconds=5)) -> Pipeline:
        """Set where and how often to checkpoint."""
        return replace(self, checkpoint_spec=CheckpointSpec(dir=folder, interval=interval))

    def spec(self) -> PipelineSpec:
        """The validated definition, identical to what the equivalent YAML gives."""
        readings = (
            ReadingsSpec.model_validate(
                {"measurements": dict(self.measurements), **self.readings_options}
            )
            if self.measurements is not None
            else None
        )
        spec = PipelineSpec(
            name=self.name,
            source=self.source,
            readings=readings,
            streams=dict(self.streams),
            tables=dict(self.tables),
            event_time=self.event_time_spec,
            dedup=self.dedup_spec,
            steps=list(self.steps),
            sinks=list(self.sinks),
            checkpoint=self.checkpoint_spec,
        )
        spec.check_steps()
        return spec

    def to_yaml(self) -> str:
        """The YAML form of this pipeline."""
        return self.spec().to_yaml()
