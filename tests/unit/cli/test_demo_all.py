"""``sensorstream demo all`` and ``--history`` as the command line sees them."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from sensorstream.cli import app
from sensorstream.scenarios import SCENARIOS
from sensorstream.sources.feed import FeedSourceSettings


def test_demo_list_offers_all_beside_the_scenarios() -> None:
    result = CliRunner().invoke(app, ["demo", "--list"])

    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    assert any(row[:1] == ["all"] for row in rows), result.output
    words = " ".join(result.output.split())  # the job column wraps in a narrow terminal
    assert "every scenario" in words


def test_demo_all_refuses_an_injection_naming_demo_name() -> None:
    result = CliRunner().invoke(app, ["demo", "all", "--inject", "Wiedikon"])

    assert result.exit_code == 2
    assert "--inject disturbs one scenario: run demo NAME --inject VALUE" in result.output


def test_demo_all_on_a_taken_port_says_to_choose_another() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = CliRunner().invoke(app, ["demo", "all", "--port", str(port)])

    assert result.exit_code == 2
    assert f"cannot serve the scenarios' index on 127.0.0.1:{port}" in result.output
    assert "choose another --port" in result.output


def test_a_bad_history_names_the_option() -> None:
    result = CliRunner().invoke(app, ["demo", "weather", "--history", "soon"])

    assert result.exit_code == 2
    assert "--history soon" in result.output


def test_a_scenario_started_in_the_past_starts_every_feed_then() -> None:
    then = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for item in SCENARIOS.values():
        spec = item.spec(start=then, duration=timedelta(minutes=3))
        feeds = [
            stream.source
            for stream in spec.stream_specs().values()
            if isinstance(stream.source, FeedSourceSettings)
        ]
        assert feeds, item.name
        for feed in feeds:
            assert feed.start == then
            assert feed.duration == timedelta(minutes=3)
