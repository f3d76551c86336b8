from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from sensorstream import HoppingWindow, Pipeline, SessionWindow, TumblingWindow
from sensorstream.durations import format_duration, parse_duration
from sensorstream.errors import ConfigError
from sensorstream.pipeline.spec import YamlLoader, load_spec, parse_aggregate, parse_spec
from sensorstream.sinks import DuckDBSinkSettings
from sensorstream.sources import SimulatorSourceSettings

GOOD = """\
name: weather
source: {type: simulator, devices: 3}
readings:
  measurements: {temperature: float, humidity: float}
event_time: {out_of_orderness: 5s, allowed_lateness: 1m}
steps:
  - name: avg_1m
    window: {type: tumbling, size: 1m}
    aggregates: [count, mean(temperature), p99(humidity) as h99]
sinks:
  - {type: duckdb, path: weather.duckdb}
"""


def test_a_valid_yaml_pipeline_becomes_an_engine_plan() -> None:
    spec = parse_spec(GOOD)
    plan = spec.to_plan()
    assert plan.event_time.allowed_lateness == timedelta(minutes=1)
    step = plan.windows[0]
    assert step.window == TumblingWindow(size=timedelta(minutes=1))
    assert [a.name for a in step.aggregates] == ["count", "temperature_mean", "h99"]


def test_yaml_round_trips_through_to_yaml() -> None:
    spec = parse_spec(GOOD)
    assert parse_spec(spec.to_yaml()) == spec


@pytest.mark.parametrize(
    "readings",
    [
        "measurements: {temperature: float, humidity: float}\n  tags: [site]",
        "measurements: {temperature: {type: float, path: data.t}, humidity: float}",
        "measurements: {temperature: float, humidity: float, at: {type: latlon, path: p.loc}}\n"
        "  tags: {site: p.site, room: room}",
        "measurements: {temperature: float, humidity: float}\n"
        "  device_field: meta.device\n  time_field: meta.ts\n  message_id_field: meta.id",
    ],
)
def test_readings_by_name_and_by_path_round_trip_through_to_yaml(readings: str) -> None:
    text = GOOD.replace("measurements: {temperature: float, humidity: float}", readings)
    spec = parse_spec(text)
    again = parse_spec(spec.to_yaml())
    assert again == spec
    assert again.fingerprint() == spec.fingerprint()
    assert again.stream().readings.to_format() == spec.stream().readings.to_format()


def test_python_builder_and_yaml_give_the_same_spec() -> None:
    built = (
        Pipeline(
            "weather",
            source=SimulatorSourceSettings.model_validate({"type": "simulator", "devices": 3}),
            measurements={"temperature": "float", "humidity": "float"},
        )
        .event_time(allowed_lateness=timedelta(minutes=1))
        .window(
            "avg_1m",
            TumblingWindow(timedelta(minutes=1)),
            ["count", "mean(temperature)", "p99(humidity) as h99"],
        )
        .sink(DuckDBSinkSettings(type="duckdb", path=Path("weather.duckdb")))
    )
    assert built.spec() == parse_spec(GOOD)
    assert parse_spec(built.to_yaml()) == built.spec()


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (
            "{type: hopping, size: 5m, slide: 1m}",
            HoppingWindow(timedelta(minutes=5), timedelta(minutes=1)),
        ),
        ("{type: session, gap: 30s}", SessionWindow(timedelta(seconds=30))),
    ],
)
def test_every_window_type_is_declared_in_yaml(window: str, expected: object) -> None:
    text = GOOD.replace("{type: tumbling, size: 1m}", window)
    assert parse_spec(text).to_plan().windows[0].window == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("size: 1m}", "size: soon}"), "line 8, steps[0].window.size: invalid duration 'soon'"),
        (("type: tumbling", "type: rolling"), "line 8, steps[0].window.type"),
        (("mean(temperature)", "median(temperature)"), "unknown aggregate 'median'"),
        (
            ("mean(temperature)", "mean(pressure)"),
            "line 9, steps[0].aggregates[1]: 'mean(pressure)' reads 'pressure', which readings",
        ),
        (
            ("    aggregates:", "    key: [site]\n    aggregates:"),
            "line 9, steps[0].key[0]: its key reads 'site', which readings do not have",
        ),
        (("devices: 3", "devices: 3, colour: red"), "line 2, source.colour: unknown field"),
        (
            ("temperature: float,", "temperature: decimal,"),
            "line 4, readings.measurements.temperature",
        ),
        (("size: 1m}", "}"), "a tumbling window needs 'size'"),
    ],
)
def test_config_errors_name_the_field_and_its_line(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_spec(GOOD.replace(*change), origin="pipeline.yaml")
    assert message in str(error.value)


def test_load_spec_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read pipeline file"):
        load_spec(tmp_path / "nope.yaml")


def test_not_yaml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_spec("name: [unclosed")


def test_step_names_must_be_unique() -> None:
    text = GOOD.replace(
        "sinks:",
        "  - {name: avg_1m, window: {type: session, gap: 1s}, aggregates: [count]}\nsinks:",
    )
    with pytest.raises(ConfigError, match="repeated: avg_1m"):
        parse_spec(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("5s", timedelta(seconds=5)),
        ("1.5m", timedelta(seconds=90)),
        ("2h", timedelta(hours=2)),
        (3, timedelta(seconds=3)),
    ],
)
def test_durations_are_read_as_people_write_them(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


def test_aggregates_are_read_as_function_of_measurement() -> None:
    aggregate = parse_aggregate("p99.9(latency) as tail")
    assert (aggregate.function, aggregate.measurement, aggregate.name) == (
        "p99.9",
        "latency",
        "tail",
    )
    assert aggregate.quantile == pytest.approx(0.999)


def test_on_and_yes_are_words_not_booleans_but_boolean_fields_still_read_yes() -> None:
    # YAML 1.1 reads a bare `on` as true: a join's `on: [device_id]` must stay a key.
    spec = parse_spec(GOOD.replace("sinks:", "dedup: {enabled: no}\nsinks:"))
    assert spec.dedup.enabled is False
    assert parse_spec(GOOD.replace("name: weather", "name: 'on'")).name == "on"
    assert yaml.load("{on: [device_id], off: true}", Loader=YamlLoader) == {
        "on": ["device_id"],
        "off": True,
    }
