"""The dashboard section: defaults drawn from the steps, declared views, and their errors."""

from __future__ import annotations

import pytest

from sensorstream.cli.specs import demo_spec
from sensorstream.errors import ConfigError
from sensorstream.pipeline.dashboard import GaugeView, HeatmapView, MapView, SeriesView
from sensorstream.pipeline.spec import parse_spec

ROOMS = """\
name: rooms
source: {type: simulator, devices: 3}
readings:
  measurements: {temperature: float, humidity: float, lat: float, lon: float}
steps:
  - name: per_room
    window: {type: tumbling, size: 1m}
    aggregates: [count, mean(temperature), max(temperature), mean(humidity)]
  - name: hot_room
    input: per_room
    rule: {threshold: temperature_mean, above: {warning: 25, critical: 28}}
"""

NO_POSITIONS = """\
name: plain
source: {type: simulator, devices: 3}
readings:
  measurements: {temperature: float}
steps:
  - name: per_device
    window: {type: tumbling, size: 1m}
    aggregates: [count, mean(temperature)]
"""


def with_dashboard(section: str, base: str = ROOMS) -> str:
    return base + "dashboard:\n" + "".join(f"  {line}\n" for line in section.splitlines())


# -- defaults --------------------------------------------------------------------------------


def test_the_demo_gets_a_gauge_heatmap_series_and_map_by_default() -> None:
    views = demo_spec().views()

    assert views.pipeline == "demo"
    assert views.title == "demo"
    assert views.gauges == [
        GaugeView(
            step="per_device",
            measure="temperature_mean",
            by="device_id",
            levels={"warning": 25, "critical": 28},
            direction="above",
        )
    ]
    assert views.heatmaps == [
        HeatmapView(step="per_device", measure="temperature_mean", by="device_id")
    ]
    assert views.series == [
        SeriesView(
            step="per_device", measures=["temperature_mean"], by="device_id", raw=["temperature"]
        )
    ]
    assert views.map == MapView(step="readings", lat="lat", lon="lon", by="device_id")
    assert [rule["name"] for rule in views.rules] == ["warm_device", "temperature_jump"]
    assert {step["name"] for step in views.steps} >= {"readings", "per_device", "warm_device"}
    assert "readings" in views.streams


def test_the_default_map_takes_latitude_and_longitude_too() -> None:
    text = ROOMS.replace("lat: float, lon: float", "latitude: float, longitude: float")

    view = parse_spec(text).views().map

    assert view is not None
    assert (view.lat, view.lon) == ("latitude", "longitude")


def test_readings_without_positions_get_no_default_map() -> None:
    assert parse_spec(NO_POSITIONS).views().map is None


def test_without_a_rule_the_default_gauge_is_the_first_mean_without_levels() -> None:
    views = parse_spec(NO_POSITIONS).views()

    assert [(g.step, g.measure, g.levels) for g in views.gauges] == [
        ("per_device", "temperature_mean", None)
    ]


def test_the_views_are_json_for_the_page() -> None:
    dumped = demo_spec().views().model_dump(mode="json")

    assert dumped["gauges"][0]["levels"] == {"warning": 25, "critical": 28}
    assert dumped["map"]["step"] == "readings"


# -- declared sections -------------------------------------------------------------------------


def test_a_declared_section_overrides_the_defaults() -> None:
    text = with_dashboard(
        "title: Rooms\n"
        "gauges:\n"
        "  - {step: per_room, measure: temperature_max, min: 0, max: 40, title: Hottest}\n"
        "heatmaps:\n"
        "  - {step: per_room, measure: humidity_mean, diverging: true}\n"
        "map: {lat: lat, lon: lon, color: humidity}\n"
        "series:\n"
        "  - {step: per_room, measures: [temperature_mean, temperature_max], raw: [humidity]}\n"
    )

    views = parse_spec(text).views()

    assert views.title == "Rooms"
    assert views.gauges == [
        GaugeView(
            step="per_room",
            measure="temperature_max",
            by="device_id",
            direction="above",
            min=0,
            max=40,
            title="Hottest",
        )
    ]
    assert views.heatmaps == [
        HeatmapView(step="per_room", measure="humidity_mean", by="device_id", diverging=True)
    ]
    assert views.map == MapView(lat="lat", lon="lon", by="device_id", color="humidity")
    assert views.series == [
        SeriesView(
            step="per_room",
            measures=["temperature_mean", "temperature_max"],
            by="device_id",
            raw=["humidity"],
        )
    ]


def test_a_declared_gauge_on_a_judged_column_takes_the_rules_levels() -> None:
    text = with_dashboard("gauges:\n  - {step: per_room, measure: temperature_mean}\n")

    (gauge,) = parse_spec(text).views().gauges

    assert gauge.levels == {"warning": 25, "critical": 28}


def test_declared_levels_win_over_the_rules() -> None:
    text = with_dashboard(
        "gauges:\n  - {step: per_room, measure: temperature_mean, levels: {warning: 20}}\n"
    )

    (gauge,) = parse_spec(text).views().gauges

    assert gauge.levels == {"warning": 20}


def test_empty_gauges_show_none() -> None:
    views = parse_spec(with_dashboard("gauges: []\n")).views()

    assert views.gauges == []
    assert views.heatmaps  # the other views keep their defaults


def test_map_false_shows_none() -> None:
    views = parse_spec(with_dashboard("map: false\n")).views()

    assert views.map is None
    assert views.gauges


def test_a_null_section_takes_the_default() -> None:
    default = parse_spec(ROOMS).views()

    views = parse_spec(with_dashboard("gauges: null\nmap: null\n")).views()

    assert views.gauges == default.gauges
    assert views.map == default.map


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ("gauges:\n  - {step: per_rom, measure: temperature_mean}\n", "'per_rom'"),
        ("heatmaps:\n  - {step: nowhere, measure: temperature_mean}\n", "'nowhere'"),
        ("series:\n  - {step: nowhere, measures: [temperature_mean]}\n", "'nowhere'"),
        ("map: {step: nowhere}\n", "'nowhere'"),
    ],
)
def test_an_unknown_step_is_a_config_error_naming_it(section: str, named: str) -> None:
    spec = parse_spec(with_dashboard(section))

    with pytest.raises(ConfigError, match="no step or stream is called") as error:
        spec.views()

    assert named in str(error.value)


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ("gauges:\n  - {step: per_room, measure: temprature_mean}\n", "'temprature_mean'"),
        ("heatmaps:\n  - {step: per_room, measure: pressure_mean}\n", "'pressure_mean'"),
        ("series:\n  - {step: per_room, measures: [humidity_max]}\n", "'humidity_max'"),
        (
            "series:\n  - {step: per_room, measures: [temperature_mean], raw: [pressure]}\n",
            "'pressure'",
        ),
        ("map: {lat: lat, lon: lon, color: pressure}\n", "'pressure'"),
    ],
)
def test_an_unknown_column_is_a_config_error_naming_it(section: str, named: str) -> None:
    spec = parse_spec(with_dashboard(section))

    with pytest.raises(ConfigError, match="has no column") as error:
        spec.views()

    assert named in str(error.value)


def test_an_unknown_column_error_lists_the_columns_there_are() -> None:
    spec = parse_spec(with_dashboard("gauges:\n  - {step: per_room, measure: nope}\n"))

    with pytest.raises(ConfigError, match="temperature_mean"):
        spec.views()


@pytest.mark.parametrize("view", ["gauges", "heatmaps"])
def test_by_must_be_a_key_column(view: str) -> None:
    section = f"{view}:\n  - {{step: per_room, measure: temperature_mean, by: site}}\n"
    spec = parse_spec(with_dashboard(section))

    with pytest.raises(ConfigError, match="'site' is not a key column of 'per_room'"):
        spec.views()


def test_a_declared_map_on_a_step_without_positions_is_a_config_error() -> None:
    spec = parse_spec(with_dashboard("map: {step: per_room}\n"))

    with pytest.raises(ConfigError, match="'per_room' has no latitude and longitude columns"):
        spec.views()


def test_a_declared_map_on_readings_without_positions_is_a_config_error() -> None:
    spec = parse_spec(with_dashboard("map: {step: readings}\n", base=NO_POSITIONS))

    with pytest.raises(ConfigError, match="'readings' has no latitude and longitude"):
        spec.views()


def test_an_unknown_field_in_the_section_is_refused() -> None:
    with pytest.raises(ConfigError, match="gauge"):
        parse_spec(with_dashboard("gauge: []\n"))


# -- YAML --------------------------------------------------------------------------------------


def test_the_dashboard_section_survives_a_yaml_round_trip() -> None:
    text = with_dashboard(
        "title: Rooms\n"
        "gauges: []\n"
        "heatmaps:\n"
        "  - {step: per_room, measure: humidity_mean, diverging: true}\n"
        "map: false\n"
        "series:\n"
        "  - {step: per_room, measures: [temperature_max], raw: [temperature]}\n"
    )
    spec = parse_spec(text)

    again = parse_spec(spec.to_yaml())

    assert again == spec
    assert again.dashboard == spec.dashboard
    assert again.views() == spec.views()
    assert again.dashboard.map is False
    assert again.dashboard.gauges == []


def test_the_demo_survives_a_yaml_round_trip() -> None:
    spec = demo_spec()

    again = parse_spec(spec.to_yaml())

    assert again.dashboard == spec.dashboard
    assert again.views() == spec.views()


def test_a_pipeline_of_named_streams_gets_its_views_and_a_map_of_the_positioned_one() -> None:
    text = """
name: fleet
streams:
  events:
    source: {type: simulator}
    readings: {measurements: {temperature: float}}
  doors:
    source: {type: simulator}
    readings: {measurements: {lat: float, lon: float}}
steps:
  - name: per_device
    input: events
    window: {type: tumbling, size: 1m}
    aggregates: [mean(temperature)]
"""
    views = parse_spec(text).views()

    assert [g.measure for g in views.gauges] == ["temperature_mean"]
    assert views.map == MapView(step="doors", lat="lat", lon="lon", by="device_id")


def test_a_gauge_keeps_the_direction_it_declares() -> None:
    text = with_dashboard(
        "gauges:\n  - {step: per_room, measure: temperature_mean, direction: below}\n"
    )

    (gauge,) = parse_spec(text).views().gauges

    assert gauge.direction == "below"


SEVERAL_STREAMS = """\
name: sensors
streams:
  temperature:
    source: {type: simulator, devices: 2}
    readings: {measurements: {temperature: float}}
  humidity:
    source: {type: simulator, devices: 2}
    readings: {measurements: {humidity: float}}
steps:
  - name: temperature_1m
    input: temperature
    window: {type: tumbling, size: 1m}
    aggregates: [mean(temperature)]
  - name: humidity_1m
    input: humidity
    window: {type: tumbling, size: 1m}
    aggregates: [mean(humidity)]
"""


def test_raw_readings_beside_a_series_come_from_whichever_input_stream_has_them() -> None:
    views = parse_spec(SEVERAL_STREAMS).views()
    assert [(v.step, v.raw) for v in views.series] == [
        ("temperature_1m", ["temperature"]),
        ("humidity_1m", ["humidity"]),
    ]
    declared = with_dashboard(
        "series:\n  - {step: humidity_1m, measures: [humidity_mean], raw: [pressure]}\n",
        SEVERAL_STREAMS,
    )
    with pytest.raises(ConfigError, match=r"no input stream \(temperature, humidity\)"):
        parse_spec(declared).views()
