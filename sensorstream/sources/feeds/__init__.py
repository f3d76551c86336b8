"""Scenario feeds: each reference design's simulated devices, one module per feed.

``FEEDS`` maps the ``kind`` a pipeline YAML names under ``source: {type: feed, feed: ...}``
to the feed's settings (each settings model builds its feed).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from sensorstream.sources.feeds.access import (
    AccessDevicesFeed,
    AccessDevicesSettings,
    AccessEventsFeed,
    AccessEventsSettings,
)
from sensorstream.sources.feeds.base import Feed
from sensorstream.sources.feeds.heartwatch import HeartwatchFeed, HeartwatchFeedSettings
from sensorstream.sources.feeds.rooms import RoomsFeed, RoomsFeedSettings
from sensorstream.sources.feeds.sensors import SensorFeed, SensorFeedSettings
from sensorstream.sources.feeds.weather import WeatherFeed, WeatherFeedSettings

FeedSettings = Annotated[
    RoomsFeedSettings
    | WeatherFeedSettings
    | AccessDevicesSettings
    | AccessEventsSettings
    | HeartwatchFeedSettings
    | SensorFeedSettings,
    Field(discriminator="kind"),
]

FEEDS: dict[str, type[Feed]] = {
    "rooms": RoomsFeed,
    "weather": WeatherFeed,
    "access_devices": AccessDevicesFeed,
    "access_events": AccessEventsFeed,
    "sensor": SensorFeed,
    "heartwatch": HeartwatchFeed,
}

__all__ = [
    "FEEDS",
    "AccessDevicesFeed",
    "AccessDevicesSettings",
    "AccessEventsFeed",
    "AccessEventsSettings",
    "Feed",
    "FeedSettings",
    "HeartwatchFeed",
    "HeartwatchFeedSettings",
    "RoomsFeed",
    "RoomsFeedSettings",
    "SensorFeed",
    "SensorFeedSettings",
    "WeatherFeed",
    "WeatherFeedSettings",
]
