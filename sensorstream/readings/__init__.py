"""What a reading is: decoding raw payloads into a columnar batch, validation, dead-letter reasons.

Every source funnels its payloads through :func:`decode_json_lines` (JSON text) or
:func:`decode_frame` (already tabular: CSV, Parquet), so there is one set of rules for what a
valid reading is. A batch of readings is a Polars frame with the canonical columns
``device_id`` (string), ``ts`` (UTC microsecond timestamp), one column per declared
measurement, one per tag and, if configured, ``message_id``. Anything that fails the rules
becomes a dead letter: the raw payload (as bytes), a stable reason code, the message and the
arrival time.

- :mod:`~sensorstream.readings.format`: the canonical columns, :class:`ReadingFormat`, dead letters;
- :mod:`~sensorstream.readings.reasons`: the dead-letter reason codes;
- :mod:`~sensorstream.readings.json_lines`: NDJSON decoding with poison lines isolated;
- :mod:`~sensorstream.readings.json_checks`: limits, duplicate keys, what is wrong with a line;
- :mod:`~sensorstream.readings.tables`: CSV and Parquet rows;
- :mod:`~sensorstream.readings.validation`: canonical columns and the validity rules.
"""

from __future__ import annotations

from sensorstream.readings.format import (
    DEAD_LETTER_SCHEMA,
    DEVICE,
    GEO_TYPE,
    MESSAGE_ID,
    RESERVED,
    TS,
    TS_TYPE,
    Decoded,
    Limits,
    MeasurementType,
    ReadingFormat,
    TimeUnit,
    Truncated,
    dead_letters,
    empty_dead_letters,
)
from sensorstream.readings.json_lines import decode_json_lines
from sensorstream.readings.reasons import REASONS
from sensorstream.readings.tables import decode_frame
from sensorstream.readings.validation import validate

__all__ = [
    "DEAD_LETTER_SCHEMA",
    "DEVICE",
    "GEO_TYPE",
    "MESSAGE_ID",
    "REASONS",
    "RESERVED",
    "TS",
    "TS_TYPE",
    "Decoded",
    "Limits",
    "MeasurementType",
    "ReadingFormat",
    "TimeUnit",
    "Truncated",
    "dead_letters",
    "decode_frame",
    "decode_json_lines",
    "empty_dead_letters",
    "validate",
]
