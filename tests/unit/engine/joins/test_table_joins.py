"""Stream x table joins in a partition task: lookups, temporal joins, missing keys, tombstones."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from sensorstream.engine.joins.tables import TableJoinStep, TableStep
from sensorstream.engine.operator import OperatorState
from sensorstream.engine.plan import Dedup, EnginePlan, EventTime, StreamDecl
from sensorstream.engine.steps import StepError
from sensorstream.engine.tables import TableDecl
from sensorstream.engine.task import PartitionTask
from sensorstream.testing import Recorder, recorded

SECOND = timedelta(seconds=1)
DOORS = TableDecl("doors", ("device_id",), {"district": pl.String()}, {"device_id": pl.String()})
EVENT_COLUMNS = {"device_id": pl.String(), "ts": pl.Datetime("us", "UTC"), "kind": pl.String()}
DEVICE_COLUMNS = {
    "device_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "district": pl.String(),
    "status": pl.String(),
}


def _ts(second: float) -> datetime:
    return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=second)


def _us(second: float) -> int:
    return int(_ts(second).timestamp() * 1_000_000)


def events(*rows: tuple[str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": [d for d, _ in rows],
            "ts": [_ts(s) for _, s in rows],
            "kind": ["accessRejected"] * len(rows),
        },
        schema=EVENT_COLUMNS,
    )


def devices(*rows: tuple[str, float, str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        [(d, _ts(s), district, status) for d, s, district, status in rows],
        schema=DEVICE_COLUMNS,
        orient="row",
    )


def plan(join: TableJoinStep, *extra: TableStep, lateness: timedelta = timedelta(0)) -> EnginePlan:
    return EnginePlan(
        (),
        (*extra, join),
        EventTime(out_of_orderness=SECOND, allowed_lateness=lateness, idle_timeout=None),
        Dedup(enabled=False),
        streams=(
            StreamDecl("events", ("kind",), EVENT_COLUMNS),
            StreamDecl("devices", ("district", "status"), DEVICE_COLUMNS),
        ),
        tables=(DOORS,),
    )


def taken(recorder: Recorder) -> list[tuple[object, ...]]:
    """The (device, district) pairs the join emitted since the last look."""
    rows = recorder.emitted()
    return rows.select("device_id", "district").rows() if rows.height else []


def emitted(task: PartitionTask, frame: pl.DataFrame, stream: str = "events") -> pl.DataFrame:
    """Run one batch and return what the join emitted for it."""
    recorder = task.operators["enriched"]
    if not isinstance(recorder, Recorder):
        recorder = recorded(task, "enriched")
    task.process(frame, now_us=0, stream=stream)
    return recorder.emitted()


def test_a_lookup_join_adds_the_tables_latest_row_and_passes_unknown_keys_with_nulls() -> None:
    task = PartitionTask(plan(TableJoinStep("enriched", "events", table="doors")))
    task.apply_table(
        "doors", pl.DataFrame({"device_id": ["a", "b"], "district": ["x", "y"]}), full=True, at_us=0
    )
    rows = emitted(task, events(("b", 1), ("q", 2), ("a", 3)))
    assert rows.select("device_id", "district").rows() == [("b", "y"), ("q", None), ("a", "x")]


def test_missing_keys_become_dead_letters_with_their_reason() -> None:
    step = TableJoinStep("enriched", "events", table="doors", missing="dead_letter")
    task = PartitionTask(plan(step))
    task.apply_table(
        "doors", pl.DataFrame({"device_id": ["a"], "district": ["x"]}), full=True, at_us=0
    )
    output = task.process(events(("a", 1), ("q", 2)), now_us=0, stream="events")
    refused = output.rejected["enriched"]
    assert refused["device_id"].to_list() == ["q"]
    assert refused["reason_code"].to_list() == ["missing_reference"]
    assert "no row for device_id in table 'doors'" in refused["reason"][0]
    assert output.accepted is not None
    assert output.accepted.height == 2


def test_held_records_wait_for_their_key_then_fall_back() -> None:
    step = TableJoinStep(
        "enriched", "events", table="doors", missing="hold", hold_for=5 * SECOND, then="dead_letter"
    )
    task = PartitionTask(plan(step))
    first = emitted(task, events(("a", 1), ("q", 1)))
    assert first.height == 0  # both held: the table is empty
    task.apply_table(
        "doors", pl.DataFrame({"device_id": ["a"], "district": ["x"]}), full=True, at_us=0
    )
    second = emitted(task, events(("z", 3)))
    assert second.select("device_id", "district").rows() == [("a", "x")]
    output = task.process(events(("z", 10)), now_us=0, stream="events")  # watermark 9 s
    assert sorted(output.rejected["enriched"]["device_id"].to_list()) == ["q", "z"]


def test_held_records_survive_a_snapshot_and_restore() -> None:
    step = TableJoinStep("enriched", "events", table="doors", missing="hold", hold_for=60 * SECOND)
    task = PartitionTask(plan(step))
    task.process(events(("a", 1)), now_us=0, stream="events")
    state = task.snapshot()
    restored = PartitionTask(plan(step))
    restored.restore(OperatorState(frames=dict(state.frames), meta=dict(state.meta)))
    restored.apply_table(
        "doors", pl.DataFrame({"device_id": ["a"], "district": ["x"]}), full=True, at_us=0
    )
    rows = emitted(restored, events(("b", 2)))
    assert rows.select("device_id", "district").rows() == [("a", "x")]


def test_a_temporal_join_uses_the_version_valid_at_each_records_time() -> None:
    step = TableJoinStep("enriched", "events", table="door_table", mode="as_of")
    table = TableStep("door_table", "devices", columns=("district",), delete_when="status = 'gone'")
    task = PartitionTask(plan(step, table))
    recorder = recorded(task, "enriched")
    task.process(
        devices(("a", 0, "x", "ok"), ("a", 10, "y", "ok"), ("a", 20, "", "gone")),
        now_us=0,
        stream="devices",
    )
    task.process(events(("a", -1), ("a", 5), ("a", 15), ("a", 25)), now_us=0, stream="events")
    # The devices stream's watermark (19 s) decides what may go: 25 s waits.
    assert sorted(taken(recorder), key=str) == [("a", "x"), ("a", "y"), ("a", None)]
    task.close_stream("devices")
    task.finish()
    assert taken(recorder) == [("a", None)]  # deleted at 20 s


def test_a_temporal_join_waits_for_an_announcement_that_comes_late_in_arrival() -> None:
    step = TableJoinStep("enriched", "events", table="door_table", mode="as_of")
    table = TableStep("door_table", "devices", columns=("district",))
    task = PartitionTask(plan(step, table))
    recorder = recorded(task, "enriched")
    task.process(events(("a", 5)), now_us=0, stream="events")
    assert taken(recorder) == []
    task.process(devices(("a", 1, "x", "ok"), ("b", 9, "y", "ok")), now_us=0, stream="devices")
    assert taken(recorder) == []  # the events' own watermark (4 s) holds the step too
    task.process(events(("b", 10)), now_us=0, stream="events")
    assert taken(recorder) == [("a", "x")]


def test_a_table_record_later_than_the_allowed_lateness_is_counted_late() -> None:
    table = TableStep("door_table", "devices", columns=("district",))
    step = TableJoinStep("enriched", "events", table="door_table", mode="as_of")
    task = PartitionTask(plan(step, table))
    task.process(devices(("a", 10, "x", "ok")), now_us=0, stream="devices")
    output = task.process(devices(("a", 2, "y", "ok")), now_us=0, stream="devices")
    assert output.late_by_step == {"door_table": 1}
    assert output.late_count == 1  # too late for the only step that judges time


def test_a_join_declaring_a_column_the_records_have_is_refused() -> None:
    step = TableJoinStep("enriched", "events", table="doors", columns=("kind",))
    with pytest.raises(StepError, match="kind"):
        _ = plan(step).graph


def test_a_record_later_than_the_allowed_lateness_is_late_for_a_temporal_join() -> None:
    step = TableJoinStep("enriched", "events", table="door_table", mode="as_of")
    table = TableStep("door_table", "devices", columns=("district",), delete_when="status = 'gone'")
    task = PartitionTask(plan(step, table))
    recorder = recorded(task, "enriched")
    task.process(devices(("a", 0, "x", "ok"), ("a", 30, "y", "ok")), now_us=0, stream="devices")
    output = task.process(events(("a", 31), ("a", 2)), now_us=0, stream="events")
    # 2 s is far behind the watermark 31 s left: the version valid then may be evicted.
    assert output.late_count == 1
    assert output.late is not None
    assert output.late["ts"].to_list() == [_ts(2)]
    task.close_stream("devices")
    task.finish()
    assert taken(recorder) == [("a", "y")]
