"""The reference jobs as ready scenarios: one folder each, its pipeline an example to copy.

Each scenario is a pipeline YAML (``scenarios/NAME/pipeline.yaml``) whose streams read
the scenario's feeds (:mod:`sensorstream.sources.feeds`): simulated devices sending the
reference design's payloads, field names and rates. ``sensorstream demo NAME`` runs one,
``sensorstream run`` runs its YAML as it stands. :data:`SCENARIOS` lists them with the
document each reproduces (in the project's ``seeds``), and what ``--inject`` disturbs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from sensorstream.errors import ConfigError
from sensorstream.pipeline.spec import PipelineSpec, YamlLoader, parse_spec
from sensorstream.scenarios.tables import FeedTable, place_tables
from sensorstream.sources.feeds import FeedSettings, HeartwatchFeedSettings
from sensorstream.sources.feeds.heartwatch import historical_ranges

__all__ = ["SCENARIOS", "Injection", "Scenario", "scenario"]


@dataclass(frozen=True)
class Injection:
    """The condition a scenario's alerts watch for, set in one feed's settings.

    ``--inject VALUE`` sets ``field`` of the feed reading ``stream`` to ``VALUE`` (the
    feed's settings model reads it: a district's name, a room's).
    """

    stream: str
    field: str
    help: str


@dataclass(frozen=True)
class Scenario:
    """One reference job: its name, what it reproduces, and its pipeline."""

    name: str
    title: str
    document: str  # the reference design it reproduces, in seeds/
    job: str  # what it does, in a line
    injection: Injection | None = None
    # Reference tables its feeds make (heartwatch's historical ranges), by table name.
    tables: Mapping[str, FeedTable] = field(default_factory=dict, hash=False)

    def path(self) -> Path:
        """The scenario's pipeline YAML, inside the installed package."""
        return Path(str(resources.files(__name__).joinpath(self.name, "pipeline.yaml")))

    def text(self) -> str:
        """The pipeline YAML as shipped."""
        return self.path().read_text(encoding="utf-8")

    def spec(
        self,
        *,
        live: bool | None = None,
        duration: timedelta | None = None,
        inject: str | None = None,
        changes: Mapping[str, Any] | None = None,
        start: datetime | None = None,
        via: str | None = None,
        tables_at: str | None = None,
    ) -> PipelineSpec:
        """The scenario's pipeline, its feeds paced or not, bounded, and disturbed as asked.

        ``changes`` replaces top-level sections of the YAML (``sinks``, ``checkpoint``);
        ``start`` is the feeds' first report (a live feed started in the past sends what
        it would have sent since then at once, then keeps pace: a dashboard with history);
        ``via`` (``mqtt://HOST:PORT/TOPIC``, ``kafka://HOST:PORT/TOPIC``) reads each feed's
        stream from that broker instead (:mod:`sensorstream.scenarios.brokers`).

        The reference tables the scenario's feeds make are put in place first
        (:mod:`sensorstream.scenarios.tables`): written to the file the YAML names, or with
        ``tables_at`` (a PostgreSQL DSN) loaded into that database and read from there.
        """
        unchanged = inject is None and live is None and duration is None and not changes
        if tables_at is not None and not self.tables:
            msg = f"scenario {self.name!r} has no reference table to put in PostgreSQL"
            raise ConfigError(msg)
        if unchanged and start is None and not via and not self.tables:
            return parse_spec(self.text(), str(self.path()))
        data = yaml.load(self.text(), Loader=YamlLoader)  # YAML 1.2: a join's on: stays "on"
        for stream, source in _feed_sources(data).items():
            if live is not None:
                source["live"] = live
                if not live:  # a live batch's length: at full speed, batches fit the rate
                    source.pop("interval", None)
            if duration is not None:
                source["duration"] = f"{duration.total_seconds()}s"
            if start is not None:
                source["start"] = start.isoformat()
            if inject is not None and self.injection and stream == self.injection.stream:
                source["feed"][self.injection.field] = inject
        if inject is not None and self.injection is None:
            msg = f"scenario {self.name!r} has nothing to inject"
            raise ConfigError(msg)
        data.update(changes or {})
        if self.tables:  # made from the feeds as configured, before a broker replaces them
            feeds = _feed_sources(data)
            made = {name: table.make(feeds) for name, table in self.tables.items()}
            data["tables"] = place_tables(data.get("tables") or {}, made, tables_at)
        if unchanged and start is None and not via and tables_at is None:
            return parse_spec(self.text(), str(self.path()))
        if via is not None:
            from sensorstream.scenarios.brokers import Route, routed

            data = routed(data, Route.parse(via), datetime.now(UTC))
        origin = f"{self.path()} (as changed for this run)"
        return parse_spec(yaml.safe_dump(data, sort_keys=False), origin)


def _historical(feed: FeedSettings, seed: int) -> pl.DataFrame:
    """Heartwatch's historical table: each of the feed's users' heart-rate range."""
    if not isinstance(feed, HeartwatchFeedSettings):
        msg = f"the historical ranges are the heartwatch feed's, not the {feed.kind} feed's"
        raise ConfigError(msg)
    return historical_ranges(feed.users, seed)


def _feed_sources(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each stream's source mapping in a pipeline's YAML data, if it is a feed."""
    found: dict[str, dict[str, Any]] = {}
    if isinstance(data.get("source"), dict):
        found["readings"] = data["source"]
    for name, stream in (data.get("streams") or {}).items():
        found[name] = stream["source"]
    return {name: source for name, source in found.items() if source.get("type") == "feed"}


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "rooms",
            "Rooms IN/OUT",
            "heatmap-alert.md",
            "5 rooms x IN/OUT at 5 readings/s; 5 s averages, their relation as a heatmap, "
            "gauges at 10/20/30, an alert on two consecutive warnings",
            injection=Injection(
                "readings",
                "overheat",
                "a room (room1..room5) whose IN sensor overheats 30 s of every 2 minutes",
            ),
        ),
        Scenario(
            "weather",
            "Weather stations",
            "pyflink-weather.md",
            "device1/2/3 every 2/5/10 s; 1-minute tumbling averages per device, as gauges",
        ),
        Scenario(
            "access",
            "Connected doors in Zurich",
            "iot-streaming-analytics.md",
            "1,000 doors; events joined with their district; an alert when a district's "
            "rejected share spikes; a map of the doors",
            injection=Injection(
                "events",
                "disrupt",
                "a district whose doors reject access for 3 minutes, 2 minutes in "
                "(e.g. --disrupt Wiedikon)",
            ),
        ),
        Scenario(
            "sensors",
            "IoT sensors",
            "iot-kafka-spark.md",
            "temperature/humidity/pressure, a topic each at 1 Hz; live count/mean/min/max "
            "per minute, repeats dropped, late readings handled; POST /compute/metrics",
        ),
        Scenario(
            "heartwatch",
            "HeartWatch",
            "heartwatch.md",
            "20,000 users' location + heart rate at 16,000 messages/s joined with their "
            "historical ranges (a file, or PostgreSQL with --table); an alert for users out "
            "of range who have not moved for 30 s",
            injection=Injection(
                "readings",
                "collapse",
                "user ids (1..20000, comma-separated) whose heart rate falls below their "
                "range while they stop moving, 75 s of every 2 minutes",
            ),
            tables={"historical": FeedTable("readings", _historical)},
        ),
    )
}


def scenario(name: str) -> Scenario:
    """A scenario by name; ConfigError listing the ones there are."""
    if name not in SCENARIOS:
        msg = f"no scenario {name!r}; there are: {', '.join(SCENARIOS)}"
        raise ConfigError(msg)
    return SCENARIOS[name]
