"""The access scenario's pipeline: what --disrupt changes, and what its dashboard shows."""

from __future__ import annotations

from typer.testing import CliRunner

from sensorstream.cli import app
from sensorstream.scenarios import scenario
from sensorstream.sources import FeedSourceSettings
from sensorstream.sources.feeds import AccessEventsSettings


def events_feed(inject: str | None) -> AccessEventsSettings:
    source = scenario("access").spec(inject=inject).streams["events"].source
    assert isinstance(source, FeedSourceSettings)
    assert isinstance(source.feed, AccessEventsSettings)
    return source.feed


def test_disrupt_names_the_district_of_the_events_feed() -> None:
    assert events_feed(None).disrupt is None
    assert events_feed("Wiedikon").disrupt == "Wiedikon"


def test_the_dashboard_maps_the_doors_by_rejections_and_charts_each_district() -> None:
    views = scenario("access").spec().views()
    assert views.map is not None
    assert (views.map.step, views.map.color, views.map.by) == ("per_door", "rejected", "device_id")
    assert [(g.step, g.measure, g.by) for g in views.gauges] == [
        ("district_share", "rejected_share", "district")
    ]
    assert views.gauges[0].levels == {"warning": 0.2, "critical": 0.5}  # the rule's
    assert {s.by for s in views.series} == {"district"}


def test_disrupting_an_unknown_district_lists_the_districts() -> None:
    result = CliRunner().invoke(app, ["demo", "access", "--disrupt", "Atlantis"])
    assert result.exit_code != 0
    assert "no district 'Atlantis'" in result.output
    assert "Wiedikon" in result.output
