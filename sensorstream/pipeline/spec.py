"""The pipeline definition as data: Pydantic models that a YAML file and the Python builder share.

Validation errors name the field's path and, for YAML files, its line::

    pipeline.yaml line 12, steps[0].window.size: invalid duration 'abc': write a number
    and a unit, e.g. 500ms, 5s, 2m, 1h, 1d
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sensorstream import sinks, sources
from sensorstream.durations import Duration
from sensorstream.engine.plan import Dedup, EnginePlan, EventTime, StreamDecl
from sensorstream.engine.steps import READINGS, StepError
from sensorstream.errors import ConfigError
from sensorstream.pipeline.api import ApiSpec
from sensorstream.pipeline.dashboard import DashboardSpec, Views, views_of
from sensorstream.pipeline.readings import LimitsSpec, MeasurementSpec, ReadingsSpec
from sensorstream.pipeline.steps import (
    DeriveStepSpec,
    StepSpec,
    WindowSpec,
    WindowStepSpec,
    engine_steps,
    parse_aggregate,
    step_location,
)
from sensorstream.pipeline.tables import TableSpec

SourceSettings = Annotated[
    sources.FileSourceSettings
    | sources.SimulatorSourceSettings
    | sources.FeedSourceSettings
    | sources.HttpSourceSettings
    | sources.MqttSourceSettings
    | sources.KafkaSourceSettings,
    Field(discriminator="type"),
]
SinkSettings = Annotated[
    sinks.DuckDBSinkSettings
    | sinks.ConsoleSinkSettings
    | sinks.WebhookSinkSettings
    | sinks.MqttSinkSettings
    | sinks.KafkaSinkSettings,
    Field(discriminator="type"),
]
# Where a value sits in the YAML: ("steps", 0, "window", "size").
Location = tuple[str | int, ...]

__all__ = [
    "DeriveStepSpec",
    "LimitsSpec",
    "MeasurementSpec",
    "PipelineSpec",
    "ReadingsSpec",
    "StepSpec",
    "StreamSpec",
    "TableSpec",
    "WindowSpec",
    "WindowStepSpec",
    "YamlLoader",
    "load_spec",
    "parse_aggregate",
    "parse_spec",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventTimeSpec(_Model):
    """How event time is judged."""

    out_of_orderness: Duration = Field(default="5s", validate_default=True)
    allowed_lateness: Duration = Field(default="0s", validate_default=True)
    idle_timeout: Duration | None = Field(default="30s", validate_default=True)

    def to_event_time(self) -> EventTime:
        """The engine-side policy."""
        return EventTime(
            out_of_orderness=self.out_of_orderness,
            allowed_lateness=self.allowed_lateness,
            idle_timeout=self.idle_timeout,
        )


class DedupSpec(_Model):
    """Which repeats to drop."""

    enabled: bool = True
    by: Literal["exact", "message_id"] = "exact"
    horizon: Duration | None = None

    def to_dedup(self) -> Dedup:
        """The engine-side policy."""
        return Dedup(enabled=self.enabled, by=self.by, horizon=self.horizon)


class CheckpointSpec(_Model):
    """Where and how often state is checkpointed (processing time)."""

    dir: Path | None = None
    interval: Duration = Field(default="5s", validate_default=True)


class StreamSpec(_Model):
    """One named input stream: its source and record format, and its own event-time policy.

    ``event_time`` and ``dedup`` default to the pipeline's.
    """

    source: SourceSettings
    readings: ReadingsSpec
    event_time: EventTimeSpec | None = None
    dedup: DedupSpec | None = None


class PipelineSpec(_Model):
    """A whole pipeline: streams, tables, event time, steps, sinks, checkpoints, its API.

    ``source`` and ``readings`` declare the ``readings`` stream; ``streams`` declares
    further named ones (``devices``, ``events``), each read by the steps that name it.
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    source: SourceSettings | None = None
    readings: ReadingsSpec | None = None
    streams: dict[str, StreamSpec] = {}
    tables: dict[str, TableSpec] = {}
    event_time: EventTimeSpec = EventTimeSpec()
    dedup: DedupSpec = DedupSpec()
    steps: list[StepSpec] = []
    sinks: list[SinkSettings] = []
    checkpoint: CheckpointSpec = CheckpointSpec()
    api: ApiSpec = ApiSpec()
    dashboard: DashboardSpec = DashboardSpec()

    @model_validator(mode="after")
    def _some_stream(self) -> PipelineSpec:
        if (self.source is None) != (self.readings is None):
            missing = "readings" if self.readings is None else "source"
            msg = (
                f"source and readings declare the readings stream together: add {missing}, "
                "or declare every stream under streams:"
            )
            raise ValueError(msg)
        if self.source is None and not self.streams:
            msg = "a pipeline reads at least one stream: give source and readings, or streams"
            raise ValueError(msg)
        for name in [*self.streams, *self.tables]:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                msg = f"name {name!r}: use letters, digits and _, not starting with a digit"
                raise ValueError(msg)
        if READINGS in self.streams and self.source is not None:
            msg = (
                "a stream named readings clashes with source/readings, which declare it; "
                "rename the stream"
            )
            raise ValueError(msg)
        clash = sorted(set(self.tables) & (set(self.streams) | {READINGS}))
        if clash:
            msg = f"a table and a stream share the name {clash[0]!r}: rename one"
            raise ValueError(msg)
        return self

    def stream(self, name: str = READINGS) -> StreamSpec:
        """One input stream's declaration; ConfigError naming the streams there are."""
        streams = self.stream_specs()
        if name not in streams:
            msg = f"pipeline {self.name!r} has no stream {name!r}; it has: {', '.join(streams)}"
            raise ConfigError(msg)
        return streams[name]

    def stream_specs(self) -> dict[str, StreamSpec]:
        """Every input stream by name, ``readings`` first when the pipeline has it."""
        streams: dict[str, StreamSpec] = {}
        if self.source is not None and self.readings is not None:
            streams[READINGS] = StreamSpec(source=self.source, readings=self.readings)
        streams.update(self.streams)
        return streams

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
        streams = tuple(
            StreamDecl(
                name,
                tuple(stream.readings.measurements),
                stream.readings.to_format().canonical_schema(),
                event_time=stream.event_time.to_event_time() if stream.event_time else None,
                dedup=stream.dedup.to_dedup() if stream.dedup else None,
            )
            for name, stream in self.streams.items()
        )
        plan = EnginePlan(
            measurements=tuple(self.readings.measurements) if self.readings else (),
            steps=engine_steps(self.steps),
            event_time=self.event_time.to_event_time(),
            dedup=self.dedup.to_dedup(),
            columns=self.readings.to_format().canonical_schema() if self.readings else None,
            streams=streams,
            tables=tuple(table.decl(name) for name, table in self.tables.items()),
        )
        _ = plan.graph
        return plan

    def views(self) -> Views:
        """The live dashboard's views, defaults filled in (see :mod:`.dashboard`)."""
        outputs = dict(self.to_plan().graph.outputs)
        return views_of(self.name, self.dashboard, self.steps, outputs)

    def fingerprint(self) -> str:
        """A hash of what state depends on; a checkpoint only restores into the same one."""
        relevant = self.model_dump(
            mode="json", include={"readings", "event_time", "dedup", "steps"}
        )
        relevant["readings"] = _without_default_zone(relevant["readings"])
        if self.tables:  # what a table holds shapes state; where it comes from does not
            relevant["tables"] = {
                name: table.model_dump(mode="json", include={"key", "columns", "valid_from"})
                for name, table in self.tables.items()
            }
        if self.streams:  # only then, so that a one-stream pipeline keeps its checkpoints
            relevant["streams"] = {
                name: stream.model_dump(mode="json", include={"readings", "event_time", "dedup"})
                for name, stream in self.streams.items()
            }
            for stream in relevant["streams"].values():
                stream["readings"] = _without_default_zone(stream["readings"])
        return hashlib.sha256(repr(sorted(relevant.items())).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        """The spec as YAML that :func:`load_spec` reads back to an equal spec."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        _keep_tags(self, data)  # the discriminators must survive where they equal a default
        return yaml.safe_dump(data, sort_keys=False)


_TAGS = ("type", "kind")  # the fields that say which model of a union a mapping is


def _keep_tags(model: BaseModel, data: dict[str, Any]) -> None:
    """Put back in ``data`` (``model`` dumped without defaults) every tag that was dropped.

    A source's ``type``, a sink's, a feed's ``kind``: each is its model's default, so a dump
    without defaults drops it, and the union could no longer tell which model to read.
    """
    for name in type(model).model_fields:
        value = getattr(model, name)
        if name in _TAGS and isinstance(value, str):
            data[name] = value
            continue
        dumped = data.get(name)
        if isinstance(value, BaseModel) and isinstance(dumped, dict):
            _keep_tags(value, dumped)
        elif isinstance(value, list | tuple) and isinstance(dumped, list):
            for item, part in zip(value, dumped, strict=False):
                if isinstance(item, BaseModel) and isinstance(part, dict):
                    _keep_tags(item, part)
        elif isinstance(value, dict) and isinstance(dumped, dict):
            for key, item in value.items():
                part = dumped.get(key)
                if isinstance(item, BaseModel) and isinstance(part, dict):
                    _keep_tags(item, part)
    tags = {name: data.pop(name) for name in _TAGS if name in data}
    rest = dict(data)
    data.clear()
    data.update(tags | rest)


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
            inner = _line_index(value, (*path, key.value))
            # A block mapping or list starts on the line after its key: the key's line is
            # where a reader looks for it.
            inner[(*path, key.value)] = key.start_mark.line + 1
            index.update(inner)
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


def _without_default_zone(readings: object) -> object:
    """A dumped readings section, less ``time_zone`` where it is the default, UTC.

    Before ``time_zone`` existed every time was read as UTC: leaving the default out of the
    fingerprint keeps the checkpoints of pipelines written then.
    """
    if isinstance(readings, dict) and readings.get("time_zone") == "UTC":
        return {key: value for key, value in readings.items() if key != "time_zone"}
    return readings
