"""Every scenario ships a pipeline that loads, runs at full speed and can be disturbed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sensorstream.cli import app
from sensorstream.errors import ConfigError
from sensorstream.pipeline.spec import load_spec
from sensorstream.scenarios import SCENARIOS, scenario
from sensorstream.sources import FeedSourceSettings

every_scenario = pytest.mark.parametrize("name", list(SCENARIOS))


@every_scenario
def test_its_yaml_is_a_pipeline_as_shipped(name: str) -> None:
    chosen = scenario(name)
    assert chosen.path().is_file()
    spec = load_spec(chosen.path())
    assert spec.name == name
    assert spec == chosen.spec()
    assert chosen.text().startswith("#"), "the YAML explains itself to whoever copies it"


@every_scenario
def test_its_feeds_can_be_run_at_full_speed_for_a_bounded_time(name: str) -> None:
    spec = scenario(name).spec(live=False, duration=timedelta(minutes=2))
    sources = [spec.source] if spec.source is not None else []
    sources += [stream.source for stream in spec.streams.values()]
    feeds = [s for s in sources if isinstance(s, FeedSourceSettings)]
    assert feeds
    for feed in feeds:
        assert feed.live is False
        assert feed.duration == timedelta(minutes=2)


@every_scenario
def test_its_sinks_and_checkpoint_can_be_pointed_elsewhere(name: str, tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    spec = scenario(name).spec(
        changes={
            "sinks": [{"type": "duckdb", "path": str(db)}],
            "checkpoint": {"dir": str(tmp_path / "checkpoints")},
        }
    )
    assert [getattr(s, "path", None) for s in spec.sinks] == [db]
    assert spec.checkpoint is not None
    assert spec.checkpoint.dir == tmp_path / "checkpoints"


def test_an_unknown_scenario_names_the_ones_there_are() -> None:
    with pytest.raises(ConfigError, match=r"there are: .*weather"):
        scenario("nope")


def test_a_scenario_without_an_injection_refuses_one() -> None:
    plain = [s for s in SCENARIOS.values() if s.injection is None]
    for item in plain:
        with pytest.raises(ConfigError, match="nothing to inject"):
            item.spec(inject="x")


def test_demo_list_names_every_scenario_and_its_document() -> None:
    result = CliRunner().invoke(app, ["demo", "--list"])
    assert result.exit_code == 0, result.output
    for item in SCENARIOS.values():
        assert item.name in result.output
        assert item.document in result.output
    assert "fleet" in result.output


def test_demo_of_an_unknown_scenario_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["demo", "nope"])
    assert result.exit_code != 0
    assert "no scenario 'nope'" in result.output
