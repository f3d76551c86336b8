"""What the live dashboard shows: the ``dashboard:`` section, and the defaults it fills in.

A pipeline names its views; each left out gets a default drawn from the steps, so a
pipeline that says nothing still gets a useful page::

    dashboard:
      title: Rooms
      gauges:                      # a tile per key, coloured by the rule's levels
        - {step: per_room, measure: temperature_mean}
      heatmaps:                    # keys x windows
        - {step: in_out, measure: difference, diverging: true}
      map: {step: readings, lat: lat, lon: lon, color: alerts}
      series:                      # per key: window results, and raw readings beside
        - {step: per_room, measures: [temperature_mean], raw: [temperature]}

``gauges: []`` shows none; a section left out (or null) takes the default:

- **gauges**: every threshold rule that judges a window step's column gets a gauge of
  that column, coloured at the rule's levels; with no such rule, each window step's first
  mean (or first aggregate) without levels.
- **heatmaps** and **series**: that same column of each window step (series with the raw
  measurement it aggregates, when it aggregates readings).
- **map**: the devices' latest ``lat``/``lon`` (or ``latitude``/``longitude``) readings,
  coloured by their open alerts, of the first stream whose readings carry them.

:func:`views_of` resolves the section against the pipeline's steps, threshold rules and
step graph (unknown steps and columns are a ConfigError naming them) into :class:`Views`,
the JSON the page reads at ``GET /api/v1/dashboard``. A gauge's ``by`` and a heatmap's are
one key column (by default the step's first); a step keyed by more columns shows one tile
per distinct value of that column, the latest result winning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from sensorstream.engine.outputs import OutputKind, Shape, outputs_of
from sensorstream.engine.rules.conditions import Threshold
from sensorstream.engine.steps import READINGS
from sensorstream.errors import ConfigError
from sensorstream.pipeline.rules import RuleStepSpec, ThresholdSpec
from sensorstream.pipeline.steps import StepSpec, WindowStepSpec, parse_aggregate

__all__ = [
    "DashboardSpec",
    "GaugeView",
    "HeatmapView",
    "MapView",
    "SeriesView",
    "Views",
    "views_of",
]

LATITUDES, LONGITUDES = ("lat", "latitude"), ("lon", "lng", "longitude")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GaugeView(_Model):
    """A tile per key showing a step's latest value of one column, coloured by level."""

    step: str
    measure: str
    by: str | None = None  # a key column of the step; default its first
    levels: dict[str, float] | None = None  # default: a threshold rule's on this column
    direction: Literal["above", "below"] | None = None  # default: the rule's, else above
    min: float | None = None
    max: float | None = None
    title: str | None = None


class HeatmapView(_Model):
    """A step's column over keys (rows) and windows (columns)."""

    step: str
    measure: str
    by: str | None = None
    diverging: bool = False  # a colour scale centred on 0 (a difference, e.g. OUT - IN)
    title: str | None = None


class MapView(_Model):
    """Devices (or a step's keys) at their latest lat/lon, coloured by alerts or a column."""

    step: str = READINGS  # readings: each device's latest reading; else a step's results
    lat: str | None = None  # default: lat or latitude
    lon: str | None = None  # default: lon, lng or longitude
    by: str | None = None
    color: str = "alerts"  # "alerts": the worst open alert's severity; else a column
    title: str | None = None


class SeriesView(_Model):
    """A step's columns over time for one key, with raw readings beside them."""

    step: str
    measures: list[str] = Field(min_length=1)
    by: str | None = None
    raw: list[str] = []  # raw readings' measurements (of the readings stream)
    title: str | None = None


class DashboardSpec(_Model):
    """The ``dashboard:`` section; see the module."""

    title: str | None = None
    gauges: list[GaugeView] | None = None
    heatmaps: list[HeatmapView] | None = None
    map: MapView | Literal[False] | None = None
    series: list[SeriesView] | None = None


class Views(_Model):
    """The dashboard's views resolved against the pipeline: what the page reads."""

    pipeline: str
    title: str
    steps: list[dict[str, Any]]  # name, kind, key, columns: for the overview
    streams: list[str]
    gauges: list[GaugeView]
    heatmaps: list[HeatmapView]
    map: MapView | None
    series: list[SeriesView]
    rules: list[dict[str, Any]]  # name, input, levels, direction: the gauges' colours


def views_of(
    name: str,
    declared: DashboardSpec,
    steps: Sequence[StepSpec],
    outputs: dict[str, Shape],
) -> Views:
    """The views of pipeline ``name``, defaults filled in, checked against its steps.

    ``outputs`` are the step graph's shapes by name (streams too).
    """
    rules = _threshold_rules(steps)
    named = {step.name for step in steps}
    sources = [s for s, shape in outputs.items() if shape.kind is OutputKind.STREAM]
    sources = [s for s in sources if s not in named]  # the input streams, not derived ones
    raw_of = _aggregated(steps, sources)
    windowed = [s for s, shape in outputs.items() if shape.kind is OutputKind.RESULTS]
    gauges = declared.gauges
    if gauges is None:
        gauges = _default_gauges(windowed, outputs, rules)
    gauges = [_with_levels(_keyed(g, outputs, "gauges"), rules) for g in gauges]
    for gauge in gauges:
        _check_column(gauge.step, gauge.measure, outputs, "gauges")
    firsts = [(step, _first_measure(outputs[step])) for step in windowed]
    heatmaps = declared.heatmaps
    if heatmaps is None:
        heatmaps = [HeatmapView(step=s, measure=m) for s, m in firsts if m is not None]
    heatmaps = [_keyed(h, outputs, "heatmaps") for h in heatmaps]
    for heatmap in heatmaps:
        _check_column(heatmap.step, heatmap.measure, outputs, "heatmaps")
    series = declared.series
    if series is None:
        series = [
            SeriesView(step=s, measures=[m], raw=[raw_of[m]] if m in raw_of else [])
            for s, m in firsts
            if m is not None
        ]
    series = [_keyed(s, outputs, "series") for s in series]
    for view in series:
        for measure in view.measures:
            _check_column(view.step, measure, outputs, "series")
        for measure in view.raw:
            _check_raw(measure, sources, outputs)
    return Views(
        pipeline=name,
        title=declared.title or name,
        steps=[_described(step, shape) for step, shape in outputs.items()],
        streams=[s for s, shape in outputs.items() if shape.kind is OutputKind.STREAM],
        gauges=gauges,
        heatmaps=heatmaps,
        map=_map(declared.map, outputs),
        series=series,
        rules=rules,
    )


def _threshold_rules(steps: Sequence[StepSpec]) -> list[dict[str, Any]]:
    """Each threshold rule's name, input, measure, levels and direction: gauges' colours."""
    rules: list[dict[str, Any]] = []
    for step in steps:
        if isinstance(step, RuleStepSpec) and isinstance(step.rule, ThresholdSpec):
            condition = step.rule.to_condition()
            assert isinstance(condition, Threshold)
            rules.append(
                {
                    "name": step.name,
                    "input": step.input,
                    "measure": condition.column,
                    "levels": dict(condition.bounds),
                    "direction": condition.direction,
                }
            )
    return rules


def _aggregated(steps: Sequence[StepSpec], sources: Sequence[str]) -> dict[str, str]:
    """Each input stream's window column and the raw measurement it aggregates."""
    raw_of: dict[str, str] = {}
    for step in steps:
        if isinstance(step, WindowStepSpec) and step.input in sources:
            for text in step.aggregates:
                aggregate = parse_aggregate(text)
                if aggregate.measurement is not None:
                    raw_of.setdefault(aggregate.name, aggregate.measurement)
    return raw_of


def _described(name: str, shape: Shape) -> dict[str, Any]:
    return {
        "name": name,
        "kind": shape.kind.value,
        "key": list(shape.key),
        "columns": list(outputs_of(shape)) if shape.kind is OutputKind.RESULTS else [],
    }


def _first_measure(shape: Shape) -> str | None:
    columns = [c for c in outputs_of(shape) if c != "count"]
    means = [c for c in columns if c.endswith("_mean")]
    found = means or columns
    return found[0] if found else None


def _default_gauges(
    windowed: list[str], outputs: dict[str, Shape], rules: list[dict[str, Any]]
) -> list[GaugeView]:
    judged = [
        GaugeView(step=rule["input"], measure=rule["measure"])
        for rule in rules
        if rule["input"] in windowed and rule["measure"] in (outputs[rule["input"]].columns or {})
    ]
    if judged:
        return list({(g.step, g.measure): g for g in judged}.values())
    return [
        GaugeView(step=step, measure=measure)
        for step in windowed
        if (measure := _first_measure(outputs[step])) is not None
    ]


def _with_levels(gauge: GaugeView, rules: list[dict[str, Any]]) -> GaugeView:
    if gauge.levels is None:
        for rule in rules:
            if rule["input"] == gauge.step and rule["measure"] == gauge.measure:
                direction = gauge.direction or rule["direction"]
                return gauge.model_copy(update={"levels": rule["levels"], "direction": direction})
    return gauge if gauge.direction else gauge.model_copy(update={"direction": "above"})


_View = TypeVar("_View", GaugeView, HeatmapView, SeriesView, MapView)


def _keyed(view: _View, outputs: dict[str, Shape], section: str) -> _View:
    if view.step not in outputs:
        msg = (
            f"dashboard.{section}: no step or stream is called {view.step!r}; "
            f"the pipeline has: {', '.join(outputs)}"
        )
        raise ConfigError(msg)
    key = outputs[view.step].key or ("device_id",)
    if view.by is None:
        return view.model_copy(update={"by": key[0]})
    if view.by not in key:
        msg = (
            f"dashboard.{section}: {view.by!r} is not a key column of {view.step!r} "
            f"(its key: {', '.join(key)})"
        )
        raise ConfigError(msg)
    return view


def _check_raw(measure: str, sources: Sequence[str], outputs: dict[str, Shape]) -> None:
    """A raw measurement must be one of an input stream's (raw readings are stored per stream)."""
    for stream in sources:
        columns = outputs[stream].columns
        if columns is None or measure in columns:
            return
    if not sources:
        _check_column(READINGS, measure, outputs, "series.raw")
    known = ", ".join(sorted({c for s in sources for c in outputs[s].columns or {}}))
    which = repr(sources[0]) if len(sources) == 1 else f"no input stream ({', '.join(sources)})"
    verb = "has no column" if len(sources) == 1 else "has a column"
    msg = f"dashboard.series.raw: {which} {verb} {measure!r}; there are: {known}"
    raise ConfigError(msg)


def _check_column(step: str, column: str, outputs: dict[str, Shape], section: str) -> None:
    shape = outputs.get(step)
    if shape is None:
        msg = f"dashboard.{section}: no step or stream is called {step!r}"
        raise ConfigError(msg)
    if shape.columns is not None and column not in shape.columns:
        known = ", ".join(outputs_of(shape) if shape.kind is OutputKind.RESULTS else shape.columns)
        msg = f"dashboard.{section}: {step!r} has no column {column!r}; it has: {known}"
        raise ConfigError(msg)


def _map(declared: MapView | Literal[False] | None, outputs: dict[str, Shape]) -> MapView | None:
    if declared is False:
        return None
    if declared is None:  # the default: the first stream whose readings carry positions
        for name, shape in outputs.items():
            columns = shape.columns or {}
            positioned = any(c in columns for c in LATITUDES) and any(
                c in columns for c in LONGITUDES
            )
            if shape.kind is OutputKind.STREAM and positioned:
                return _map(MapView(step=name), outputs)
        return None
    view = declared
    if view.step not in outputs:
        msg = f"dashboard.map: no step or stream is called {view.step!r}"
        raise ConfigError(msg)
    columns = outputs[view.step].columns or {}
    lat = view.lat or next((c for c in LATITUDES if c in columns), None)
    lon = view.lon or next((c for c in LONGITUDES if c in columns), None)
    if lat is None or lon is None:
        msg = (
            f"dashboard.map: {view.step!r} has no latitude and longitude columns (lat/lon, "
            "latitude/longitude): name them with lat: and lon:"
        )
        raise ConfigError(msg)
    for column in (lat, lon):
        _check_column(view.step, column, outputs, "map")
    if view.color != "alerts":
        _check_column(view.step, view.color, outputs, "map.color")
    return _keyed(view.model_copy(update={"lat": lat, "lon": lon}), outputs, "map")
