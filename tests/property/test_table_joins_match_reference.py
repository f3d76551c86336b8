"""Stream x table joins against per-event reference logic, on random out-of-order streams.

Two streams, announcements of device rows (some deletions) and events, arrive interleaved
in random batches, out of order within a bound, with a snapshot and restore at a random
point. The temporal join (``as_of`` a table kept from the announcements) must give every
event the value of its key's latest announcement at or before the event's time, among
the announcements that were not late, whatever the batching and the restore point: that
is what makes it exact. An event itself later than its watermark by more than the allowed
lateness is late for the join (counted, not enriched). The lookup join against a
reference table updated mid-stream must give each event its key's row as of the last
update before the event's batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorstream.engine.joins.tables import TableJoinStep, TableStep
from sensorstream.engine.plan import Dedup, EnginePlan, EventTime, StreamDecl
from sensorstream.engine.tables import TableDecl
from sensorstream.engine.task import PartitionTask
from sensorstream.testing import recorded, restored_task

SECOND = timedelta(seconds=1)
START = datetime(2024, 1, 1, tzinfo=UTC)
KEYS = ("a", "b", "c")
ANNOUNCE = {
    "device_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "room": pl.String(),
    "op": pl.String(),
}
EVENT = {"device_id": pl.String(), "ts": pl.Datetime("us", "UTC"), "n": pl.Int64()}


@dataclass(frozen=True)
class Row:
    key: str
    second: int
    value: str | None  # None: a deletion (announcements only)
    n: int = 0


def _frame(rows: list[Row], announcements: bool) -> pl.DataFrame:
    if announcements:
        return pl.DataFrame(
            [
                (
                    r.key,
                    START + r.second * SECOND,
                    r.value or "",
                    "del" if r.value is None else "up",
                )
                for r in rows
            ],
            schema=ANNOUNCE,
            orient="row",
        )
    return pl.DataFrame(
        [(r.key, START + r.second * SECOND, r.n) for r in rows], schema=EVENT, orient="row"
    )


def disordered(draw: st.DrawFn, count: int, *, announcements: bool) -> list[Row]:
    rows = []
    clock = 0
    for n in range(count):
        clock += draw(st.integers(0, 3))
        second = max(0, clock - draw(st.integers(0, 4)))  # late by up to 4 s: some too late
        key = draw(st.sampled_from(KEYS))
        value = draw(st.sampled_from(["kitchen", "hall", "attic", None])) if announcements else ""
        rows.append(Row(key, second, value, n))
    return rows


@st.composite
def event_rows(draw: st.DrawFn, count: int) -> list[Row]:
    return disordered(draw, count, announcements=False)


@st.composite
def feeds(draw: st.DrawFn) -> tuple[list[tuple[str, list[Row]]], int]:
    """Batches of both streams in a random interleaving, and a restore point."""
    streams = {
        "devices": disordered(draw, draw(st.integers(0, 12)), announcements=True),
        "events": disordered(draw, draw(st.integers(1, 16)), announcements=False),
    }
    batches: list[tuple[str, list[Row]]] = []
    cursors = dict.fromkeys(streams, 0)
    while any(cursors[name] < len(rows) for name, rows in streams.items()):
        name = draw(st.sampled_from([n for n, r in streams.items() if cursors[n] < len(r)]))
        size = draw(st.integers(1, 4))
        batches.append((name, streams[name][cursors[name] : cursors[name] + size]))
        cursors[name] += size
    return batches, draw(st.integers(0, len(batches)))


OOO = 2 * SECOND


def temporal_plan(lateness: timedelta) -> EnginePlan:
    return EnginePlan(
        (),
        (
            TableStep("rooms", "devices", columns=("room",), delete_when="op = 'del'"),
            TableJoinStep("placed", "events", table="rooms", mode="as_of"),
        ),
        EventTime(out_of_orderness=OOO, allowed_lateness=lateness, idle_timeout=None),
        Dedup(enabled=False),
        streams=(
            StreamDecl("devices", ("room", "op"), ANNOUNCE),
            StreamDecl("events", ("n",), EVENT),
        ),
    )


def expected_temporal(
    batches: list[tuple[str, list[Row]]], lateness: timedelta
) -> dict[int, str | None]:
    """Per event: its key's latest timely announcement at or before it (None if deleted)."""
    announcements = [row for name, rows in batches if name == "devices" for row in rows]
    timely: list[Row] = []
    top: int | None = None
    for row in announcements:  # arrival order: the watermark before each row
        watermark = None if top is None else top - OOO.seconds
        if watermark is None or row.second >= watermark - lateness.seconds:
            timely.append(row)
        top = row.second if top is None else max(top, row.second)
    out: dict[int, str | None] = {}
    top = None
    for name, rows in batches:
        if name != "events":
            continue
        for event in rows:
            watermark = None if top is None else top - OOO.seconds
            top = event.second if top is None else max(top, event.second)
            if watermark is not None and event.second < watermark - lateness.seconds:
                continue  # late for the join: the version valid then may be evicted
            before = [r for r in timely if r.key == event.key and r.second <= event.second]
            # The last of those at the latest time wins (arrival order breaks ties).
            latest = max(before, key=lambda r: r.second, default=None)
            ties = [r for r in before if latest is not None and r.second == latest.second]
            out[event.n] = ties[-1].value if ties else None
    return out


def run(
    plan: EnginePlan, batches: list[tuple[str, list[Row]]], restart: int
) -> tuple[dict[int, object], int]:
    """Each joined event's room, and how many events were late."""
    kept: list[pl.DataFrame] = []
    task = PartitionTask(plan)
    recorded(task, "placed", kept)
    late = 0
    for index, (name, rows) in enumerate(batches):
        if index == restart:
            task = restored_task(plan, task.snapshot())
            recorded(task, "placed", kept)
        output = task.process(_frame(rows, name == "devices"), now_us=0, stream=name)
        late += output.late_count if name == "events" else 0
    task.finish()
    emitted = pl.concat(kept) if kept else pl.DataFrame({"n": [], "room": []})
    pairs = emitted.select("n", "room").rows()
    assert len(pairs) == len({n for n, _ in pairs})  # every event once
    return {n: (room or None) for n, room in pairs}, late


@settings(max_examples=150)
@given(feed=feeds(), lateness=st.sampled_from([timedelta(0), 3 * SECOND]))
def test_a_temporal_join_gives_each_event_the_version_valid_at_its_time(
    feed: tuple[list[tuple[str, list[Row]]], int], lateness: timedelta
) -> None:
    batches, restart = feed
    got, late = run(temporal_plan(lateness), batches, restart)
    events = sum(len(rows) for name, rows in batches if name == "events")
    assert len(got) + late == events, "every event joined once or counted late"
    assert got == expected_temporal(batches, lateness)


ROOMS = TableDecl("rooms", ("device_id",), {"room": pl.String()}, {"device_id": pl.String()})


@settings(max_examples=100)
@given(data=st.data())
def test_a_lookup_join_sees_the_reference_table_as_last_updated(data: st.DataObject) -> None:
    events = data.draw(st.integers(1, 20))
    rows = data.draw(event_rows(events))
    cuts = sorted(data.draw(st.lists(st.integers(0, events), max_size=4)))
    updates = [
        data.draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(["x", "y", "z"])))
        for _ in cuts
    ]
    restart = data.draw(st.integers(0, events))
    plan = EnginePlan(
        (),
        (TableJoinStep("placed", "events", table="rooms"),),
        EventTime(out_of_orderness=OOO, idle_timeout=None),
        Dedup(enabled=False),
        streams=(StreamDecl("events", ("n",), EVENT),),
        tables=(ROOMS,),
    )
    kept: list[pl.DataFrame] = []
    task = PartitionTask(plan)
    recorded(task, "placed", kept)
    current: dict[str, str] = {}
    expected: dict[int, str | None] = {}
    for index, row in enumerate(rows):
        for cut, update in zip(cuts, updates, strict=True):
            if cut == index:
                current = dict(update)  # a full reload: keys not in it are gone
                frame = pl.DataFrame(
                    {"device_id": list(update), "room": list(update.values())},
                    schema={"device_id": pl.String(), "room": pl.String()},
                )
                task.apply_table("rooms", frame, full=True, at_us=index)
        if index == restart:
            task = restored_task(plan, task.snapshot())
            recorded(task, "placed", kept)
        task.process(_frame([row], announcements=False), now_us=0, stream="events")
        expected[row.n] = current.get(row.key)
    emitted = pl.concat(kept).select("n", "room").rows() if kept else []
    assert {n: room for n, room in emitted} == expected
