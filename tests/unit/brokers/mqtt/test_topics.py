"""Topic filters, device ids read from topics, and topics built so values cannot add levels."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensorstream.brokers.mqtt.topics import (
    NULL_LEVEL,
    TopicPattern,
    check_filter,
    check_template,
    escape_level,
    fill_template,
    key_levels,
)


@pytest.mark.parametrize(
    "topic_filter", ["devices/+/telemetry", "#", "a/#", "+", "a//b", "$share/g/devices/+"]
)
def test_valid_filters_pass(topic_filter: str) -> None:
    assert check_filter(topic_filter) == topic_filter


@pytest.mark.parametrize(
    ("topic_filter", "why"),
    [
        ("", "at least one character"),
        ("a/#/b", "'#' may only be the last level"),
        ("a#", "'#' may only be the last level"),
        ("dev+/x", "'+' must be a whole level"),
        ("a\0b", "NUL"),
    ],
)
def test_invalid_filters_say_why(topic_filter: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        check_filter(topic_filter)


def test_a_pattern_reads_the_device_level_of_a_matching_topic() -> None:
    pattern = TopicPattern.parse("devices/{device_id}/telemetry")

    assert pattern.filter == "devices/+/telemetry"
    assert pattern.device_id("devices/d-17/telemetry") == "d-17"
    assert pattern.device_id("devices/d-17/status") is None
    assert pattern.device_id("devices/d-17/telemetry/extra") is None
    assert pattern.device_id("devices/d-17") is None
    assert pattern.device_id("devices//telemetry") is None  # an empty level names no device


def test_a_pattern_with_wildcards_matches_as_its_filter_does() -> None:
    pattern = TopicPattern.parse("+/{device_id}/#")

    assert pattern.device_id("site-1/d9") == "d9"  # '#' matches the parent level too
    assert pattern.device_id("site-1/d9/a/b") == "d9"
    assert pattern.device_id("site-1") is None


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("devices/+/telemetry", "one whole level must be {device_id}"),
        ("{device_id}/{device_id}", "one whole level must be {device_id}"),
        ("devices/dev-{device_id}", "one whole level must be {device_id}"),
        ("{device_id}/{site}", "must be a level of its own, and the only placeholder"),
        ("{device_id}/#/x", "'#' may only be the last level"),
    ],
)
def test_invalid_patterns_say_why(pattern: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        TopicPattern.parse(pattern)


def test_escaping_keeps_a_hostile_device_id_within_one_level() -> None:
    topic = fill_template(
        "sensorstream/{pipeline}/{step}/{key}",
        {"pipeline": "p", "step": "w", "key": key_levels(["site/1", "d+#/x", None])},
    )

    assert topic == "sensorstream/p/w/site%2F1/d%2B%23%2Fx/%null"
    assert "+" not in topic
    assert "#" not in topic
    assert len(topic.split("/")) == 6


def test_a_value_that_reads_like_the_null_level_stays_apart_from_null() -> None:
    assert escape_level("%null") != escape_level(None) == NULL_LEVEL


@given(st.lists(st.text(), min_size=1, max_size=4))
def test_escaped_keys_have_one_level_per_value_and_unescape_back(values: list[str]) -> None:
    levels = key_levels(values).split("/")

    assert len(levels) == len(values)
    assert not any(char in level for level in levels for char in "+#\0$")
    assert [unquote(level, errors="surrogatepass") for level in levels] == values


def test_templates_name_known_placeholders_and_no_wildcards() -> None:
    assert check_template("plant/{step}/{key}") == "plant/{step}/{key}"
    with pytest.raises(ValueError, match=r"unknown placeholder \{device\}"):
        check_template("plant/{device}")
    with pytest.raises(ValueError, match="holds no '\\+', '#' or NUL"):
        check_template("plant/+/{key}")
    with pytest.raises(ValueError, match="literal brace"):
        check_template("plant/{key")
