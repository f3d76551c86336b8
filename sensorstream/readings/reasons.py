"""Why a payload became a dead letter: one stable code per kind of problem, with its meaning.

A dead letter carries a ``reason_code`` from :data:`REASONS` beside the human ``reason``,
which names the values involved. Group and alert on the code (``GROUP BY reason_code``
gives one row per kind of problem); read the message to fix the data. Codes are part of
the stored format: a code is never renamed or reused for another meaning.

>>> REASONS["invalid_json"]
'the payload is not valid JSON'
"""

from __future__ import annotations

from typing import Final

REASONS: Final[dict[str, str]] = {
    # The payload as a whole.
    "invalid_json": "the payload is not valid JSON",
    "invalid_utf8": "the payload is not valid UTF-8 text",
    "not_an_object": "the payload is valid JSON but not an object",
    "duplicate_key": "a field the pipeline reads appears twice in one object",
    "wrong_field_count": "a CSV row has more or fewer fields than the header",
    "invalid_csv": "a CSV row cannot be parsed: a quote where RFC 4180 allows none",
    "payload_too_large": "the payload is longer than readings.limits.max_payload_bytes",
    "too_many_fields": "the payload has more fields than readings.limits.max_fields",
    # Identity and time.
    "missing_device_id": "no device id, or an empty one",
    "id_too_long": "a device id, tag or message id is longer than readings.limits.max_id_bytes",
    "missing_timestamp": "no timestamp",
    "bad_timestamp": "the timestamp is neither an epoch number nor ISO 8601 text",
    "nonexistent_local_time": (
        "a timestamp without a zone names a local time that readings.time_zone skips "
        "(the gap when daylight saving time begins)"
    ),
    "time_in_future": "the timestamp is further ahead of its arrival than readings.max_future",
    "time_too_early": "the timestamp is before readings.min_time (often a wrong epoch unit)",
    # Values.
    "wrong_type": "a measurement, tag or id has the wrong type",
    "not_finite": "a float measurement is NaN or infinite",
    "out_of_range": (
        "a geo or latlon measurement lies outside -90..90 latitude or -180..180 longitude"
    ),
    "invalid_geo": 'a latlon measurement is not the text "lat,lon": two numbers and a comma',
    "no_measurements": "none of the declared measurements is present",
    # Refused by a step after intake (the record itself was valid).
    "missing_reference": "a join's table has no row for the record's key (missing: dead_letter)",
}
