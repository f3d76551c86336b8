"""Zone-less times decode to the instant Python's zoneinfo gives them, around every DST change.

Each example draws local times near the daylight saving changes of a few zones (and some
anywhere in 2000..2030), writes them as zone-less ISO text (with a space or ``T``, with or
without a fraction) or with an explicit offset, and decodes them in the declared zone. The
per-event model is :mod:`zoneinfo`: a local time whose round trip through UTC comes back
different does not exist (a ``nonexistent_local_time`` dead letter); any other is
``replace(tzinfo=zone)`` with ``fold=0``, the earlier instant of a repeated hour. A time
with an offset is that instant, whatever the declared zone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from sensorstream.readings import ReadingFormat, decode_json_lines

ARRIVED = datetime(2031, 1, 1, tzinfo=UTC)
# Northern and southern summers, half-hour offsets and a half-hour DST shift (Lord Howe),
# and zones without DST.
ZONES = (
    "Europe/Zurich",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "Asia/Kolkata",
    "UTC",
)
FORMATS = {
    zone: ReadingFormat(measurements={"temperature": "float"}, time_zone=zone) for zone in ZONES
}


def _changes(zone: str, years: range) -> list[datetime]:
    """The local wall times just before and after each UTC offset change of ``zone``."""
    tz = ZoneInfo(zone)
    found: list[datetime] = []
    day = datetime(years.start, 1, 1, tzinfo=UTC)
    end = datetime(years.stop, 1, 1, tzinfo=UTC)
    while day < end:
        following = day + timedelta(days=1)
        if day.astimezone(tz).utcoffset() != following.astimezone(tz).utcoffset():
            minute = day
            while minute.astimezone(tz).utcoffset() == day.astimezone(tz).utcoffset():
                minute += timedelta(minutes=1)
            before = (minute - timedelta(minutes=1)).astimezone(tz).replace(tzinfo=None)
            after = minute.astimezone(tz).replace(tzinfo=None)
            found += [before, after]
        day = following
    return found


CHANGES = {zone: _changes(zone, range(2020, 2027)) for zone in ZONES}
ANYWHERE = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2030, 12, 30))  # noqa: DTZ001


@st.composite
def local_times(draw: st.DrawFn, zone: str) -> datetime:
    """A naive local time, mostly within 90 minutes of one of the zone's offset changes."""
    near = CHANGES[zone]
    if not near or draw(st.integers(0, 4)) == 0:
        return draw(ANYWHERE)
    moment = draw(st.sampled_from(near))
    shift = timedelta(
        minutes=draw(st.integers(-90, 90)),
        seconds=draw(st.integers(0, 59)),
        microseconds=draw(st.sampled_from([0, 0, 250_000, 1])),
    )
    return moment + shift


def expected_of(local: datetime, zone: str) -> datetime | None:
    """What zoneinfo makes of a zone-less local time: its instant, or None if it is skipped."""
    tz = ZoneInfo(zone)
    aware = local.replace(tzinfo=tz)  # fold=0: the earlier of a repeated hour
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != local:
        return None
    return aware.astimezone(UTC)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, list[tuple[str, datetime | None]]]:
    """A zone and lines of (time text, the instant it names or None for a skipped time)."""
    zone = draw(st.sampled_from(ZONES))
    rows: list[tuple[str, datetime | None]] = []
    for _ in range(draw(st.integers(1, 12))):
        local = draw(local_times(zone))
        if draw(st.integers(0, 3)) == 0:
            # With an explicit offset (another zone's): the declared zone plays no part.
            other = ZoneInfo(draw(st.sampled_from(ZONES)))
            aware = local.replace(tzinfo=UTC).astimezone(other)
            # Its instant in UTC: an aware time in a repeated hour (fold=1) never equals one
            # of another zone (PEP 495), so the expected instant is not compared in its zone.
            text = aware.isoformat(sep=draw(st.sampled_from(["T", " "])))
            rows.append((text, aware.astimezone(UTC)))
        else:
            text = local.isoformat(sep=draw(st.sampled_from(["T", " "])))
            rows.append((text, expected_of(local, zone)))
    return zone, rows


@given(cases())
def test_zone_less_times_decode_as_zoneinfo_reads_them(
    case: tuple[str, list[tuple[str, datetime | None]]],
) -> None:
    zone, rows = case
    chunk = "".join(
        json.dumps({"device_id": "a", "ts": text, "temperature": 1.0}) + "\n" for text, _ in rows
    ).encode()
    decoded = decode_json_lines(chunk, FORMATS[zone], arrived_at=ARRIVED, origin="in.ndjson")
    assert decoded.readings["ts"].to_list() == [
        instant for _, instant in rows if instant is not None
    ]
    skipped = [
        f"line {n} of in.ndjson" for n, (_, instant) in enumerate(rows, 1) if instant is None
    ]
    assert decoded.dead_letters["origin"].to_list() == skipped
    assert set(decoded.dead_letters["reason_code"]) <= {"nonexistent_local_time"}
