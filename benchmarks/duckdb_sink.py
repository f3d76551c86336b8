"""The DuckDB sink alone: appending readings, and upserting window results.

Readings: 5M readings (device, time, two measurements) from 10k devices in 100k-row batches,
flushed every 10 batches as a checkpoint would. Results: 1M window results of 10k devices
(one window closing per batch, plus 10% corrections of the window before), flushed every
10 batches. Target: appending readings costs well under 1 s per million (W1 streams 5M
readings at >= 2M readings/s end to end).

    python benchmarks/duckdb_sink.py [--readings 5000000] [--results 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from sensorstream.readings import TS_TYPE, ReadingFormat
from sensorstream.sinks.base import PipelineInfo, SinkBatch, StepInfo
from sensorstream.sinks.duckdb import DuckDBSink

DEVICES = 10_000
BATCH = 100_000
FLUSH_EVERY = 10
T0 = datetime(2024, 1, 1, tzinfo=UTC)
FORMAT = ReadingFormat(measurements={"temperature": "float", "humidity": "float"})
STEP = StepInfo("per_device_1m", ("device_id",), ("count", "temperature_mean"))
INFO = PipelineInfo("bench", (STEP,), FORMAT.canonical_schema())
DEVICE_IDS = pl.Series("device_id", [f"device-{i:05d}" for i in range(DEVICES)])


def readings_batch(number: int) -> pl.DataFrame:
    row = pl.int_range(number * BATCH, (number + 1) * BATCH, eager=True)
    return pl.DataFrame(
        {
            "device_id": DEVICE_IDS.gather(row % DEVICES),
            "ts": (row * 1000 + 1_704_067_200_000_000).cast(TS_TYPE),
            "temperature": (row % 997).cast(pl.Float64) / 10,
            "humidity": (row % 101).cast(pl.Float64),
        }
    )


def results_batch(window: int) -> pl.DataFrame:
    def closing(minute: int, revision: int, devices: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "device_id": DEVICE_IDS.head(devices),
                "window_start": pl.repeat(T0 + timedelta(minutes=minute), devices, eager=True),
                "window_end": pl.repeat(T0 + timedelta(minutes=minute + 1), devices, eager=True),
                "count": pl.repeat(60, devices, dtype=pl.UInt32, eager=True),
                "temperature_mean": pl.repeat(21.5 + revision, devices, eager=True),
                "revision": pl.repeat(revision, devices, dtype=pl.Int64, eager=True),
                "final": pl.repeat(True, devices, eager=True),
                "_op": pl.repeat("upsert", devices, eager=True),
            }
        ).with_columns(pl.col("window_start", "window_end").cast(TS_TYPE))

    frames = [closing(window, 0, DEVICES)]
    if window:
        frames.append(closing(window - 1, 1, DEVICES // 10))
    return pl.concat(frames)


def append_readings(folder: Path, readings: int) -> tuple[float, float]:
    batches = [readings_batch(i) for i in range(min(readings // BATCH, 10))]
    sink = DuckDBSink(folder / "readings.duckdb")
    sink.open(INFO)
    started, cpu = time.perf_counter(), time.process_time()
    for number in range(readings // BATCH):
        sink.write(SinkBatch(0, number, readings=batches[number % len(batches)]))
        if number % FLUSH_EVERY == FLUSH_EVERY - 1:
            sink.flush()
    sink.close()
    return time.perf_counter() - started, time.process_time() - cpu


def upsert_results(folder: Path, results: int) -> tuple[float, float, int]:
    windows = max(1, results // (DEVICES + DEVICES // 10))
    batches = [results_batch(w) for w in range(windows)]
    sink = DuckDBSink(folder / "results.duckdb", store_readings=False)
    sink.open(INFO)
    started, cpu = time.perf_counter(), time.process_time()
    for window, batch in enumerate(batches):
        sink.write(SinkBatch(0, window, results={STEP.name: batch}))
        if window % FLUSH_EVERY == FLUSH_EVERY - 1:
            sink.flush()
    sink.close()
    return time.perf_counter() - started, time.process_time() - cpu, sum(b.height for b in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=5_000_000)
    parser.add_argument("--results", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        seconds, cpu = append_readings(Path(scratch), args.readings)
        print(
            f"append readings: {args.readings:,} in {seconds:.2f} s (cpu {cpu:.2f} s) = "
            f"{args.readings / seconds / 1e6:.2f}M rows/s, {seconds / args.readings * 1e6:.2f} "
            "s per million (target: well under 1)"
        )
        seconds, cpu, rows = upsert_results(Path(scratch), args.results)
        print(
            f"upsert results: {rows:,} in {seconds:.2f} s (cpu {cpu:.2f} s) = "
            f"{rows / seconds / 1e6:.2f}M rows/s"
        )


if __name__ == "__main__":
    main()
