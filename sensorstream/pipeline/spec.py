"""The pipeline definition as data: Pydantic models that a YAML file and the Python builder share.

Validation errors name the field's path and, for YAML files, its line::

    pipeline.yaml line 12, steps[0].window.size: invalid duration 'abc': write a number
    and a unit, e.g. 500ms, 5s, 2m, 1h, 1d
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ByteSize, ConfigDict, Field, ValidationError, field_validator

from sensorstream.durations import Duration
from sensorstream.engine.plan import Dedup, EnginePlan, EventTime
from sensorstream.engine.steps import StepError
from sensorstream.errors import ConfigError
from sensorstream.pipeline.steps import (
    DeriveStepSpec,
    StepSpec,
    WindowSpec,
    WindowStepSpec,
    engine_steps,
    parse_aggregate,
    step_location,
)
from sensorstream.readings import Limits, MeasurementType, ReadingFormat, TimeUnit
from sensorstream.sinks import ConsoleSinkSettings, DuckDBSinkSettings, WebhookSinkSettings
from sensorstream.sources import FileSourceSettings, SimulatorSourceSettings

SourceSettings = Annotated[
    FileSourceSettings | SimulatorSourceSettings, Field(discriminator="type")
]
SinkSettings = Annotated[
    DuckDBSinkSettings | ConsoleSinkSettings | WebhookSinkSettings, Field(discriminator="type")
]
# Where a value sits in the YAML: ("steps", 0, "window", "size").
Location = tuple[str | int, ...]

__all__ = [
    "DeriveStepSpec",
    "PipelineSpec",
    "StepSpec",
    "WindowSpec",
    "WindowStepSpec",
    "YamlLoader",
    "load_spec",
    "parse_aggregate",
    "parse_spec",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_DEFAULT_LIMITS = Limits()


class LimitsSpec(_Model):
    """How large a payload may be (sizes as ``1MiB``, ``64KiB`` or a number of bytes).

    A payload past a limit becomes a dead letter saying which limit; see
    :class:`~sensorstream.readings.Limits`.
    """

    max_payload_bytes: ByteSize = Field(default=ByteSize(_DEFAULT_LIMITS.max_payload_bytes), gt=0)
    max_fields: int = Field(default=_DEFAULT_LIMITS.max_fields, gt=0)
    max_id_bytes: ByteSize = Field(default=ByteSize(_DEFAULT_LIMITS.max_id_bytes), gt=0)
    max_raw_bytes: ByteSize = Field(default=ByteSize(_DEFAULT_LIMITS.max_raw_bytes), gt=0)

    def to_limits(self) -> Limits:
        """The engine-side limits."""
        return Limits(
            max_payload_bytes=int(self.max_payload_bytes),
            max_fields=self.max_fields,
            max_id_bytes=int(self.max_id_bytes),
            max_raw_bytes=int(self.max_raw_bytes),
        )


class ReadingsSpec(_Model):
    """Where a payload keeps each part of a reading, and what a valid reading is."""

    measurements: dict[str, MeasurementType]
    device_field: str = "device_id"
    time_field: str = "ts"
    time_unit: TimeUnit = "auto"
    tags: list[str] = []
    message_id_field: str | None = None
    max_future: Duration = Field(default="1h", validate_default=True)
    limits: LimitsSpec = LimitsSpec()

    def to_format(self) -> ReadingFormat:
        """The engine-side reading format."""
        return ReadingFormat(
            measurements=self.measurements,
            device_field=self.device_field,
            time_field=self.time_field,
            time_unit=self.time_unit,
            tags=tuple(self.tags),
            message_id_field=self.message_id_field,
            max_future=self.max_future,
            limits=self.limits.to_limits(),
        )


class EventTimeSpec(_Model):
    """How event time is judged."""

    out_of_orderness: Duration = Field(default="5s", validate_default=True)
    allowed_lateness: Duration = Field(default="0s", validate_default=True)
    idle_timeout: Duration | None = Field(default="30s", validate_default=True)


class DedupSpec(_Model):
    """Which repeats to drop."""

    enabled: bool = True
    by: Literal["exact", "message_id"] = "exact"
    horizon: Duration | None = None


class CheckpointSpec(_Model):
    """Where and how often state is checkpointed (processing time)."""

    dir: Path | None = None
    interval: Duration = Field(default="5s", validate_default=True)


class PipelineSpec(_Model):
    """A whole pipeline: source, reading format, event time, steps, sinks, checkpoints."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    source: SourceSettings
    readings: ReadingsSpec
    event_time: EventTimeSpec = EventTimeSpec()
    dedup: DedupSpec = DedupSpec()
    steps: list[StepSpec] = []
    sinks: list[SinkSettings] = []
    checkpoint: CheckpointSpec = CheckpointSpec()

    @field_validator("steps")
    @classmethod
    def _unique_steps(cls, steps: list[StepSpec]) -> list[StepSpec]:
        names = [s.name for s in steps]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            msg = f"step names must be unique; repeated: {', '.join(duplicated)}"
            raise ValueError(msg)
        return steps

    def check_steps(self) -> None:
        """The steps fit together and read columns their inputs have (StepError if not)."""
        self.to_plan()

    def to_plan(self) -> EnginePlan:
        """The engine-side plan, its step graph checked."""
        plan = EnginePlan(
            measurements=tuple(self.readings.measurements),
            steps=engine_steps(self.steps),
            event_time=EventTime(
                out_of_orderness=self.event_time.out_of_orderness,
                allowed_lateness=self.event_time.allowed_lateness,
                idle_timeout=self.event_time.idle_timeout,
            ),
            dedup=Dedup(enabled=self.dedup.enabled, by=self.dedup.by, horizon=self.dedup.horizon),
            columns=self.readings.to_format().canonical_schema(),
        )
        _ = plan.graph
        return plan

    def fingerprint(self) -> str:
        """A hash of what state depends on; a checkpoint only restores into the same one."""
        relevant = self.model_dump(
            mode="json", include={"readings", "event_time", "dedup", "steps"}
        )
        return hashlib.sha256(repr(sorted(relevant.items())).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        """The spec as YAML that :func:`load_spec` reads back to an equal spec."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        # The discriminators must survive even where they equal a default.
        data["source"] = {"type": self.source.type, **data.get("source", {})}
        if self.sinks:
            data["sinks"] = [
                {"type": sink.type, **dumped}
                for sink, dumped in zip(self.sinks, data["sinks"], strict=True)
            ]
        return yaml.safe_dump(data, sort_keys=False)


class YamlLoader(yaml.SafeLoader):
    """YAML read as YAML 1.2 reads it: only ``true`` and ``false`` are booleans.

    PyYAML follows YAML 1.1, where a bare ``on``, ``off``, ``yes`` or ``no`` is a boolean too,
    so a join's ``on: [device_id]`` would arrive keyed by True. Here they stay strings, and
    Pydantic still reads ``yes`` or ``on`` as true where a field is a boolean.

    >>> yaml.load("{on: [device_id], enabled: yes}", Loader=YamlLoader)
    {'on': ['device_id'], 'enabled': 'yes'}
    """


_BOOL = "tag:yaml.org,2002:bool"
YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_spec(text: str, origin: str = "pipeline") -> PipelineSpec:
    """Validate YAML text; errors name the field path and its line."""
    try:
        data = yaml.load(text, Loader=YamlLoader)  # a SafeLoader: no Python objects
        lines = _line_index(yaml.compose(text, Loader=YamlLoader))
    except yaml.YAMLError as error:
        msg = f"{origin}: not valid YAML: {error}"
        raise ConfigError(msg) from None
    if not isinstance(data, dict):
        msg = f"{origin}: expected a mapping with name, source, readings, steps, sinks"
        raise ConfigError(msg)
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_explain(error, lines, origin)) from None
    try:
        spec.to_plan()
    except StepError as error:
        location = step_location(spec.steps, error)
        raise ConfigError(_located(origin, location, lines, error.message)) from None
    return spec


def load_spec(path: Path) -> PipelineSpec:
    """Read and validate a pipeline YAML file."""
    try:
        text = path.read_text()
    except OSError as error:
        msg = f"cannot read pipeline file {path}: {error.strerror}"
        raise ConfigError(msg) from None
    return parse_spec(text, origin=str(path))


def _line_index(
    node: yaml.Node | None, path: tuple[str | int, ...] = ()
) -> dict[tuple[str | int, ...], int]:
    index: dict[tuple[str | int, ...], int] = {}
    if node is None:
        return index
    index[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            index[(*path, key.value)] = key.start_mark.line + 1
            index.update(_line_index(value, (*path, key.value)))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index.update(_line_index(item, (*path, i)))
    return index


def _yaml_location(
    location: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]
) -> tuple[str | int, ...]:
    """Drop the union tags Pydantic inserts (``source.simulator.devices``) from a location."""
    kept: tuple[str | int, ...] = ()
    for index, part in enumerate(location):
        if isinstance(part, str) and " " in part and (*kept, part) not in lines:
            continue  # a tag ("rule step", "range condition"): no YAML key has a space
        if (*kept, part) in lines or index == len(location) - 1:
            kept = (*kept, part)
        elif index + 1 < len(location) and (*kept, location[index + 1]) in lines:
            continue
        else:
            kept = (*kept, part)
    return kept


def _explain(error: ValidationError, lines: dict[Location, int], origin: str) -> str:
    messages = []
    for item in error.errors():
        location = _yaml_location(tuple(item["loc"]), lines)
        text = item["msg"].removeprefix("Value error, ")
        if item["type"] == "literal_error" or item["type"] == "union_tag_invalid":
            text = f"{text} (got {item.get('input')!r})"
        if item["type"] == "extra_forbidden":
            text = "unknown field (check its spelling)"
        if item["type"] in ("byte_size", "byte_size_unit"):
            text = (
                f"invalid size {item.get('input')!r}: write a number of bytes or a number "
                "and a unit, e.g. 4096, 64KiB, 1MiB"
            )
        messages.append(_located(origin, location, lines, text))
    return "\n".join(messages)


def _located(origin: str, location: Location, lines: dict[Location, int], text: str) -> str:
    """``pipeline.yaml line 9, steps[0].aggregates[1]: text``: the nearest line the YAML has."""
    known = location
    while known and known not in lines:
        known = known[:-1]
    line = lines.get(known)
    where = f"{origin} line {line}" if line else origin
    return f"{where}, {_field_path(location) or '(top)'}: {text}"


def _field_path(location: Location) -> str:
    """``("steps", 0, "window")`` as ``steps[0].window``."""
    return "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in location
    ).lstrip(".")
