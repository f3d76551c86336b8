"""The contract every sink in ``SINKS`` joins by being registered.

The batches are what a sink really receives: two partitions run through the engine, with
accepted, late and dead-lettered readings, corrected results, retracted sessions, null keys
and a rule's alert transitions, each partition's final results written at its last
position, as the runner does.
Following ``sinks/base.py`` (open, restore, write, flush, close):

- after a restart from any checkpoint, restoring the checkpointed positions and writing
  the batches after them again stores what one uninterrupted run stores: writes are
  idempotent, keyed by position;
- how often the sink is flushed changes nothing it stores;
- a batch written in two pieces at one position is stored as if written whole;
- the batches written are not mutated;
- the settings build the registered class and round-trip through JSON and the YAML spec.

A property that cannot apply to a sink is skipped for it, with the reason, in the
parametrization. A new sink joins by being added to ``SINKS``, and fails until it has a
sample here.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import NoReturn

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from rich.console import Console

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.rules import RuleStep
from sensorstream.engine.rules.conditions import Threshold
from sensorstream.engine.task import EnginePlan, EventTime, PartitionTask
from sensorstream.engine.windows import SessionWindow, TumblingWindow, WindowStep
from sensorstream.pipeline.spec import PipelineSpec, ReadingsSpec, SinkSettings
from sensorstream.readings import ReadingFormat, decode_json_lines
from sensorstream.sinks import (
    SINKS,
    ConsoleSink,
    ConsoleSinkSettings,
    DuckDBSink,
    DuckDBSinkSettings,
    MqttSinkSettings,
    PipelineInfo,
    Sink,
    SinkBatch,
    StepInfo,
    WebhookSinkSettings,
)
from sensorstream.sinks.base import FROM_START
from sensorstream.sinks.webhook_outbox import read_deliveries
from sensorstream.sources import SimulatorSourceSettings
from sensorstream.store import Store
from tests.contract.kafka_sample import kafka_settings, stored_in_kafka

PIPELINE = "contract"
DEAD_URL = "http://127.0.0.1:9/hook"  # the discard port: nothing answers on the loopback
NOW = datetime(2024, 6, 1, tzinfo=UTC)
START = datetime(2024, 1, 1, tzinfo=UTC)
FORMAT = ReadingFormat(measurements={"temperature": "float", "humidity": "float"}, tags=("site",))
PLAN = EnginePlan(
    tuple(FORMAT.measurements),
    (
        WindowStep(
            "per_device",
            TumblingWindow(timedelta(seconds=10)),
            ("device_id",),
            (Aggregate("count"), Aggregate("mean", "temperature"), Aggregate("max", "humidity")),
        ),
        # Updates re-emit a session on every change, so merges retract emitted sessions.
        WindowStep(
            "sessions",
            SessionWindow(timedelta(seconds=3)),
            ("device_id", "site"),
            (Aggregate("count"), Aggregate("p50", "temperature")),
            emit="updates",
        ),
        # Judged on each window's result, corrected ones too: transitions and corrections.
        RuleStep("warm", "per_device", Threshold("temperature_mean", (("warning", 21.0),))),
    ),
    EventTime(
        out_of_orderness=timedelta(seconds=1),
        allowed_lateness=timedelta(seconds=6),
        idle_timeout=None,
    ),
)
INFO = PipelineInfo(
    PIPELINE,
    (
        *(
            StepInfo(step.name, step.key, tuple(a.name for a in step.aggregates))
            for step in PLAN.windows
        ),
        StepInfo("warm", ("device_id",), (), kind="alerts"),
    ),
    FORMAT.canonical_schema(),
)

Stored = dict[str, pl.DataFrame]
"""What a sink keeps, table by table, in an order that does not depend on how it was written."""


# -- what a sink receives ------------------------------------------------------------------


def payload_batches(partition: int, seed: int) -> list[bytes]:
    """Batches of JSON lines of one partition's devices: out of order, late, repeated, broken."""
    rng = random.Random(seed)
    event_s = 0.0
    sent: list[str] = []
    batches = []
    for _ in range(7):
        lines = []
        for _ in range(rng.randint(2, 7)):
            roll = rng.random()
            if roll < 0.1 and sent:
                lines.append(rng.choice(sent))
                continue
            if roll < 0.18:
                lines.append(rng.choice(['{"device_id": "x", "ts": ', '{"temperature": 1}']))
                continue
            event_s += rng.uniform(0.0, 2.5)
            lag = rng.choice([0.0, 0.0, 0.5, 2.0, 5.0, 12.0, 40.0])
            reading: dict[str, object] = {
                "device_id": f"p{partition}-d{rng.randint(1, 3)}",
                "ts": (START + timedelta(seconds=max(event_s - lag, 0.0))).isoformat(),
                "temperature": round(rng.uniform(15.0, 25.0), 2),
                "humidity": rng.choice([None, round(rng.uniform(30.0, 60.0), 1)]),
            }
            site = rng.choice(["north", "south", None])
            if site is not None:
                reading["site"] = site
            lines.append(json.dumps(reading))
            sent.append(lines[-1])
        batches.append("\n".join(lines).encode())
    return batches


def partition_writes(partition: int, seed: int) -> list[SinkBatch]:
    """What the runner writes for one partition: each batch's output, then the final results."""
    task = PartitionTask(PLAN)
    writes = []
    position = 0
    for index, data in enumerate(payload_batches(partition, seed)):
        decoded = decode_json_lines(data, FORMAT, arrived_at=NOW, origin=f"batch {index}")
        output = task.process(decoded.readings, now_us=0)
        position += len(data) + 1  # a byte offset, as a file source's
        dead_letters = decoded.dead_letters if decoded.dead_letters.height else None
        writes.append(
            SinkBatch(
                partition,
                position,
                output.accepted,
                dead_letters,
                output.late,
                output.results,
                alerts=output.events,
            )
        )
    last = task.finish()
    writes.append(SinkBatch(partition, position, results=last.results, alerts=last.events))
    return writes


@cache
def all_writes() -> tuple[SinkBatch, ...]:
    """Both partitions' writes, interleaved as a runner reading two partitions would."""
    first, second = partition_writes(0, seed=11), partition_writes(1, seed=12)
    interleaved = [batch for pair in zip(first, second, strict=True) for batch in pair]
    results = pl.concat(
        [frame for batch in interleaved for frame in batch.results.values()],
        how="diagonal_relaxed",
    )
    # Without these the contract would prove little.
    assert any(batch.late is not None for batch in interleaved), "no late readings"
    assert any(batch.dead_letters is not None for batch in interleaved), "no dead letters"
    assert (results["_op"] == "delete").any(), "no retracted results"
    assert (results["revision"] > 0).any(), "no corrected results"
    assert results["site"].is_null().any(), "no null key"
    transitions = pl.concat(
        [frame for batch in interleaved for frame in batch.alerts.values()], how="vertical"
    )
    assert set(transitions["kind"]) == {"transition", "correction"}, "no alert corrections"
    return tuple(interleaved)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint after ``written`` writes: the positions a restart restores."""

    written: int
    positions: dict[int, int]


def checkpoints(writes: Sequence[SinkBatch]) -> list[Checkpoint]:
    """Every point between writes where the runner could checkpoint, the very start included.

    The runner checkpoints between source batches, never between two writes of one
    partition at one position (a batch and the results the end of input closes after it).
    A restart names every partition it takes on: one not checkpointed yet at ``FROM_START``.
    """
    found = []
    for written in range(len(writes) + 1):
        positions = dict.fromkeys(sorted({batch.partition for batch in writes}), FROM_START)
        for batch in writes[:written]:
            positions[batch.partition] = batch.position
        if all(batch.position > positions[batch.partition] for batch in writes[written:]):
            found.append(Checkpoint(written, positions))
    return found


def some_checkpoints(writes: Sequence[SinkBatch]) -> list[Checkpoint]:
    """The very start (nothing kept), mid-stream, before the last batches, the end of input.

    Any checkpoint would do; these four cover the cases in a quarter of the time.
    """
    found = checkpoints(writes)
    return [found[0], found[len(found) // 2], found[-2], found[-1]]


# -- the samples ---------------------------------------------------------------------------


class Screen(io.StringIO):
    """What a console shows, kept in a file so that it outlives the sink that printed it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def write(self, text: str) -> int:
        with self.path.open("a", encoding="utf-8") as file:
            file.write(text)
        return len(text)


def duckdb_settings(folder: Path, **options: object) -> DuckDBSinkSettings:
    return DuckDBSinkSettings.model_validate({"path": folder / "store.duckdb", **options})


def opened_duckdb(settings: SinkSettings) -> Sink:
    assert isinstance(settings, DuckDBSinkSettings)
    # A fixed clock: updated_at would otherwise tell a replayed result from the original.
    return DuckDBSink(
        settings.path, settings.store_readings, flush_rows=settings.flush_rows, clock=lambda: NOW
    )


def stored_in_duckdb(settings: SinkSettings) -> Stored:
    assert isinstance(settings, DuckDBSinkSettings)
    with Store(settings.path) as store:
        stored = {
            "dead letters": store.dead_letters(PIPELINE, limit=None),
            "late readings": store.late_readings(PIPELINE, limit=None),
        }
        if store.pipeline(PIPELINE).stores_readings:
            stored["readings"] = store.sql("SELECT * FROM readings WHERE pipeline = ?", [PIPELINE])
        for step in INFO.steps:
            if step.kind == "results":
                stored[f"results of {step.name}"] = store.results(PIPELINE, step.name, limit=None)
        stored["alert transitions"] = store.alert_transitions(PIPELINE, limit=None)
    return {name: frame.sort(frame.columns, nulls_last=True) for name, frame in stored.items()}


def console_settings(folder: Path) -> ConsoleSinkSettings:
    del folder  # a console keeps nothing
    return ConsoleSinkSettings(results_only=False, max_rows=4)


def opened_console(settings: SinkSettings, folder: Path) -> Sink:
    assert isinstance(settings, ConsoleSinkSettings)
    console = Console(file=Screen(folder / "screen.txt"), width=120, color_system=None)
    return ConsoleSink(settings.results_only, settings.max_rows, console=console)


def shown_on_console(folder: Path) -> Stored:
    screen = folder / "screen.txt"
    lines = screen.read_text(encoding="utf-8").splitlines() if screen.exists() else []
    return {"printed lines": pl.DataFrame({"line": lines}, schema={"line": pl.String()})}


@dataclass(frozen=True)
class Sample:
    """A sink type at work in a folder: its settings, a sink built from them, what it kept."""

    label: str
    settings: Callable[[Path], SinkSettings]
    opened: Callable[[Path], Sink]  # built from the settings; not yet opened
    stored: Callable[[Path], Stored]


def webhook_settings(folder: Path) -> WebhookSinkSettings:
    # Nothing listens there: every transition stays queued, so the outbox is what it stored.
    return WebhookSinkSettings(url=DEAD_URL, outbox=folder / "outbox.sqlite", drain=timedelta(0))


def opened_webhook(settings: SinkSettings) -> Sink:
    assert isinstance(settings, WebhookSinkSettings)
    return settings.build()


def queued_in_outbox(folder: Path) -> Stored:
    rows = [
        (row.transition_id, row.alert_id, row.state, row.payload)
        for row in read_deliveries(folder / "outbox.sqlite")
    ]
    schema = {
        "transition_id": pl.String(),
        "alert_id": pl.String(),
        "state": pl.String(),
        "payload": pl.Binary(),
    }
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    return {"queued": frame.sort(frame.columns)}


def mqtt_settings(folder: Path) -> MqttSinkSettings:
    del folder  # a broker keeps what it is sent; nothing here
    return MqttSinkSettings(
        url="mqtt://127.0.0.1:9", retain=True, flush_timeout=timedelta(seconds=1)
    )


def not_here(folder: Path) -> NoReturn:
    pytest.fail(PUBLISHES)


def duckdb_sample(label: str, **options: object) -> Sample:
    return Sample(
        label,
        lambda folder: duckdb_settings(folder, **options),
        lambda folder: opened_duckdb(duckdb_settings(folder, **options)),
        lambda folder: stored_in_duckdb(duckdb_settings(folder, **options)),
    )


SAMPLES: dict[str, tuple[Sample, ...]] = {
    "duckdb": (
        duckdb_sample("buffered"),
        # Writes land whenever seven rows wait, between flushes too; no readings table.
        duckdb_sample("small-writes", flush_rows=7, store_readings=False),
    ),
    "console": (
        Sample(
            "captured",
            console_settings,
            lambda folder: opened_console(console_settings(folder), folder),
            shown_on_console,
        ),
    ),
    "kafka": (
        Sample(
            "a compacted reader",
            kafka_settings,
            lambda folder: kafka_settings(folder).build(),
            stored_in_kafka,
        ),
    ),
    "webhook": (
        Sample(
            "unreachable",
            webhook_settings,
            lambda folder: opened_webhook(webhook_settings(folder)),
            queued_in_outbox,
        ),
    ),
    # Only its settings are checked here (see PUBLISHES): built, never opened.
    "mqtt": (
        Sample("settings", mqtt_settings, lambda folder: mqtt_settings(folder).build(), not_here),
    ),
}
"""Samples by the name the sink is registered under in ``SINKS``."""


def missing_sample(name: str) -> Sample:
    def fail(folder: Path) -> NoReturn:
        pytest.fail(
            f"sink {name!r} is registered in SINKS but has no sample: add one to SAMPLES in "
            f"{Path(__file__).name} (settings, a sink writing into a folder, what it stored)"
        )

    return Sample("no sample", fail, fail, fail)


def every_sink(**not_applicable: str) -> pytest.MarkDecorator:
    """Parametrize over every registered sink; skip the ones named, with the reason given."""
    unknown = sorted(set(not_applicable) - set(SINKS))
    if unknown:
        msg = f"no sink registered as {', '.join(unknown)}; registered: {', '.join(SINKS)}"
        raise ValueError(msg)
    params = []
    for name in SINKS:
        marks = [pytest.mark.skip(reason=not_applicable[name])] if name in not_applicable else []
        for sample in SAMPLES.get(name) or (missing_sample(name),):
            params.append(pytest.param(name, sample, id=f"{name}-{sample.label}", marks=marks))
    return pytest.mark.parametrize(("name", "sample"), params)


CANNOT_UNPRINT = (
    "a console cannot take back what it printed: restore has nothing to forget, so a replay "
    "shows the replayed batches a second time"
)
PRINTS_EACH_WRITE = "the console prints each write as it comes: how writes are cut is what it shows"
PUBLISHES = (
    "the mqtt sink keeps nothing here: what it publishes, replays after a restore included, is "
    "checked against a real Mosquitto in tests/integration/mqtt/test_mqtt_sink.py"
)


# -- driving a sink ------------------------------------------------------------------------


@contextmanager
def running(sample: Sample, folder: Path, positions: Mapping[int, int]) -> Iterator[Sink]:
    """A sink of the sample, opened and restored to ``positions`` as a (re)started run does."""
    folder.mkdir(parents=True, exist_ok=True)
    sink = sample.opened(folder)
    sink.open(INFO)
    try:
        sink.restore(positions)
        yield sink
    finally:
        sink.close()


def write_uninterrupted(sample: Sample, folder: Path, writes: Sequence[SinkBatch]) -> Stored:
    with running(sample, folder, {}) as sink:
        for batch in writes:
            sink.write(batch)
        sink.flush()
    return sample.stored(folder)


def assert_same_stored(actual: Stored, expected: Stored, where: str) -> None:
    assert actual.keys() == expected.keys(), where
    for table, frame in expected.items():
        try:
            assert_frame_equal(actual[table], frame, check_exact=True)
        except AssertionError as error:
            raise AssertionError(f"{where}: {table}: {error}") from None


def in_two_pieces(batch: SinkBatch) -> list[SinkBatch]:
    """The batch as two writes at its position: each frame's first rows, then the rest."""

    def piece(first: bool) -> SinkBatch:
        def cut(frame: pl.DataFrame) -> pl.DataFrame:
            half = frame.height // 2
            return frame.head(half) if first else frame.slice(half)

        def cut_if_any(frame: pl.DataFrame | None) -> pl.DataFrame | None:
            return None if frame is None else cut(frame)

        return replace(
            batch,
            readings=cut_if_any(batch.readings),
            dead_letters=cut_if_any(batch.dead_letters),
            late=cut_if_any(batch.late),
            results={step: cut(frame) for step, frame in batch.results.items()},
            alerts={step: cut(frame) for step, frame in batch.alerts.items()},
        )

    return [piece(first=True), piece(first=False)]


def clones(writes: Sequence[SinkBatch]) -> list[SinkBatch]:
    def clone(frame: pl.DataFrame | None) -> pl.DataFrame | None:
        return None if frame is None else frame.clone()

    return [
        replace(
            batch,
            readings=clone(batch.readings),
            dead_letters=clone(batch.dead_letters),
            late=clone(batch.late),
            results={step: frame.clone() for step, frame in batch.results.items()},
            alerts={step: frame.clone() for step, frame in batch.alerts.items()},
        )
        for batch in writes
    ]


# -- the contract -------------------------------------------------------------------------


@every_sink(console=CANNOT_UNPRINT, mqtt=PUBLISHES)
def test_replaying_after_a_restore_stores_what_one_uninterrupted_run_stores(
    name: str, sample: Sample, tmp_path: Path
) -> None:
    writes = all_writes()
    expected = write_uninterrupted(sample, tmp_path / "uninterrupted", writes)

    for checkpoint in some_checkpoints(writes):
        # The crash comes right after the checkpoint, or once everything was written.
        for crashed_after in sorted({checkpoint.written, len(writes)}):
            folder = tmp_path / f"checkpoint-{checkpoint.written}-crash-{crashed_after}"
            with running(sample, folder, {}) as sink:
                for written, batch in enumerate(writes[:crashed_after]):
                    if written == checkpoint.written:
                        sink.flush()
                    sink.write(batch)
            with running(sample, folder, checkpoint.positions) as sink:
                for batch in writes[checkpoint.written :]:
                    sink.write(batch)
                sink.flush()

            where = (
                f"restored to {checkpoint.positions} after {crashed_after} of {len(writes)} writes"
            )
            assert_same_stored(sample.stored(folder), expected, where)


@every_sink(console=CANNOT_UNPRINT, mqtt=PUBLISHES)
def test_a_partition_started_over_leaves_the_other_partitions_untouched(
    name: str, sample: Sample, tmp_path: Path
) -> None:
    """A worker taking partition 0 on from its start must not wipe partition 1's output.

    Everything is written, then partition 0 alone is restored ``FROM_START`` and written
    again: the store must be as one uninterrupted run left it, so partition 1's rows were
    kept (or they would be missing) and partition 0's forgotten (or they would be twice).
    """
    writes = all_writes()
    partitions = {batch.partition for batch in writes}
    assert len(partitions) > 1, "the sample writes must span partitions"
    expected = write_uninterrupted(sample, tmp_path / "uninterrupted", writes)
    folder = tmp_path / "restarted"
    with running(sample, folder, {}) as sink:
        for batch in writes:
            sink.write(batch)
    first = min(partitions)
    with running(sample, folder, {first: FROM_START}) as sink:
        for batch in writes:
            if batch.partition == first:
                sink.write(batch)
        sink.flush()
    assert_same_stored(sample.stored(folder), expected, f"partition {first} started over")


@every_sink(mqtt=PUBLISHES)
def test_flushing_more_or_less_often_changes_nothing_stored(
    name: str, sample: Sample, tmp_path: Path
) -> None:
    writes = all_writes()
    expected = write_uninterrupted(sample, tmp_path / "flushed-once", writes)

    folder = tmp_path / "flushed-after-every-write"
    with running(sample, folder, {}) as sink:
        for batch in writes:
            sink.write(batch)
            sink.flush()

    assert_same_stored(sample.stored(folder), expected, "flushed after every write")


@every_sink(console=PRINTS_EACH_WRITE, mqtt=PUBLISHES)
def test_a_batch_written_in_pieces_is_stored_as_if_written_whole(
    name: str, sample: Sample, tmp_path: Path
) -> None:
    writes = all_writes()
    expected = write_uninterrupted(sample, tmp_path / "whole", writes)

    pieces = [piece for batch in writes for piece in in_two_pieces(batch)]
    stored = write_uninterrupted(sample, tmp_path / "in-pieces", pieces)

    assert_same_stored(stored, expected, "each batch written in two pieces")


@every_sink(mqtt=PUBLISHES)
def test_the_batches_written_are_not_mutated(name: str, sample: Sample, tmp_path: Path) -> None:
    writes = clones(all_writes())
    copies = clones(writes)
    middle = some_checkpoints(writes)[1]

    write_uninterrupted(sample, tmp_path, writes)
    with running(sample, tmp_path, middle.positions) as sink:
        for batch in writes[middle.written :]:
            sink.write(batch)

    for index, (after, before) in enumerate(zip(writes, copies, strict=True)):
        assert after.results.keys() == before.results.keys(), f"write {index}"
        assert after.alerts.keys() == before.alerts.keys(), f"write {index}"
        for what, got, want in (
            ("readings", after.readings, before.readings),
            ("dead letters", after.dead_letters, before.dead_letters),
            ("late readings", after.late, before.late),
            *((f"results of {s}", after.results[s], before.results[s]) for s in before.results),
            *((f"alerts of {s}", after.alerts[s], before.alerts[s]) for s in before.alerts),
        ):
            assert (got is None) == (want is None), f"write {index}: {what}"
            if got is not None and want is not None:
                assert got.schema == want.schema, f"write {index}: {what} changed its schema"
                assert got.equals(want), f"write {index}: {what} changed"


@every_sink()
def test_the_settings_build_the_registered_sink_and_round_trip_through_yaml(
    name: str,
    sample: Sample,
    tmp_path: Path,
    spec_round_trip: Callable[[PipelineSpec], PipelineSpec],
) -> None:
    settings = sample.settings(tmp_path)
    spec = PipelineSpec(
        name=PIPELINE,
        source=SimulatorSourceSettings(),
        readings=ReadingsSpec(measurements=dict(FORMAT.measurements), tags=list(FORMAT.tags)),
        sinks=[settings],
    )

    assert settings.type == name
    assert isinstance(settings.build(), SINKS[name])
    assert isinstance(sample.opened(tmp_path), SINKS[name])
    assert type(settings).model_validate_json(settings.model_dump_json()) == settings
    assert spec_round_trip(spec).sinks == [settings]
