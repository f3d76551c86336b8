"""``replay --dataset``: the weather pipeline over a packaged dataset, as a pipeline of its own."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sensorstream.cli import app
from sensorstream.cli.specs import dataset_replay_spec, load_pipeline
from sensorstream.errors import ConfigError
from sensorstream.readings.format import check_time_zone
from sensorstream.scenarios import scenario
from sensorstream.sources import FileSourceSettings
from sensorstream.sources.datasets import DATASETS

pytestmark = pytest.mark.skipif(
    os.environ.get("CI", "").lower() != "true" and not importlib.util.find_spec("vega_datasets"),
    reason="vega_datasets is not installed (pip install 'sensorstream[datasets]')",
)


def test_the_dataset_replaces_the_weather_pipelines_source_and_declares_its_zone(
    tmp_path: Path,
) -> None:
    spec = dataset_replay_spec(
        "seattle-temps", pipeline=None, pipeline_name=None, speed=60.0, folder=tmp_path
    )
    weather = scenario("weather").spec()
    assert spec.name == "weather_seattle_temps"
    assert isinstance(spec.source, FileSourceSettings)
    assert spec.source.path == tmp_path / "seattle-temps.ndjson"
    assert spec.source.path.is_file()
    assert spec.source.speed == 60.0
    assert spec.readings is not None
    assert weather.readings is not None
    assert spec.readings.time_zone == "America/Los_Angeles"
    assert spec.readings.measurements == weather.readings.measurements
    assert spec.steps == weather.steps, "the weather job itself, unchanged"
    assert spec.checkpoint.dir is None, "its own checkpoint, not the live scenario's"


def test_a_name_and_another_pipeline_may_be_given(tmp_path: Path) -> None:
    yaml = tmp_path / "mine.yaml"
    yaml.write_text(
        "name: mine\nsource: {type: feed, feed: {kind: weather}}\n"
        "readings: {device_field: client, measurements: {temperature: float}}\n"
        "steps: [{name: daily, window: {type: tumbling, size: 1d}, aggregates: [count]}]\n"
    )
    spec = dataset_replay_spec(
        "sf-temps", pipeline=yaml, pipeline_name="sf", speed=None, folder=tmp_path
    )
    assert (spec.name, [s.name for s in spec.steps]) == ("sf", ["daily"])
    assert isinstance(spec.source, FileSourceSettings)
    assert spec.source.speed is None


def test_a_pipeline_of_several_streams_is_refused(tmp_path: Path) -> None:
    yaml = tmp_path / "two.yaml"
    yaml.write_text(
        "name: two\nstreams:\n"
        "  a: {source: {type: feed, feed: {kind: weather}}, readings: {measurements: {t: float}}}\n"
        "steps: [{name: w, input: a, window: {type: tumbling, size: 1m}, aggregates: [count]}]\n"
    )
    with pytest.raises(ConfigError, match="a pipeline of one"):
        dataset_replay_spec("sf-temps", pipeline=yaml, pipeline_name=None, speed=None)


def test_pipeline_may_name_a_scenario() -> None:
    assert load_pipeline(Path("weather")) == scenario("weather").spec()


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_dataset_names_a_real_zone_and_scenario(name: str) -> None:
    assert check_time_zone(DATASETS[name].time_zone)
    scenario(DATASETS[name].scenario)


def test_replay_wants_a_file_or_a_dataset_not_both_nor_neither(tmp_path: Path) -> None:
    for args in (["replay"], ["replay", str(tmp_path / "x.ndjson"), "--dataset", "sf-temps"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "or --dataset NAME" in result.output


def test_an_unknown_dataset_is_one_error_line() -> None:
    result = CliRunner().invoke(app, ["replay", "--dataset", "nope"])
    assert result.exit_code == 2
    assert "no dataset 'nope'; there are: seattle-temps, sf-temps" in result.output
