"""Interval join memory: peak buffered rows and peak RSS at 1M and 10M records, flat.

Two generated streams (keys over 10k devices, each reading up to 5 s behind its place in
time) joined by device within 5 s, by the operator alone: batches go in through
``process_from``, each stream's watermark is its latest time less 5 s, and the join's the
smaller of the two (:func:`sensorstream.testing.drive_join`). Each size runs in a fresh
process, so its peak RSS is its own. The join holds what the last ``within +
out_of_orderness`` seconds brought, so both figures should not grow with the length of
the streams: the target is a 10M/1M ratio of about 1 for both.

    python benchmarks/interval_join_memory.py [--records 1000000 10000000] [--devices 10000]
        [--batch 2000] [--rate 2000] [--how left]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import timedelta

WITHIN = timedelta(seconds=5)
DISORDER = timedelta(seconds=5)


def measure(records: int, devices: int, batch: int, rate: float, how: str) -> dict[str, float]:
    """One run in this process: peak buffered rows, peak RSS (MB), rows out, seconds."""
    import psutil

    from sensorstream.engine.joins.streams import StreamJoinOperator, StreamJoinStep
    from sensorstream.testing import drive_join, two_streams

    process = psutil.Process()
    peak_rss = process.memory_info().rss

    def sample() -> None:
        nonlocal peak_rss
        peak_rss = max(peak_rss, process.memory_info().rss)

    step = StreamJoinStep("join", "a", "b", ("device_id",), WITHIN, how)  # type: ignore[arg-type]
    started = time.perf_counter()
    run = drive_join(
        StreamJoinOperator(step, timedelta(0)),
        two_streams(records, devices=devices, batch=batch, rate_per_s=rate, disorder=DISORDER),
        out_of_orderness=DISORDER,
        after_batch=sample,
    )
    return {
        "records": run.rows_in,
        "peak_buffered": run.peak_buffered,
        "final_buffered": run.final_buffered,
        "peak_rss_mb": peak_rss / 2**20,
        "rows_out": run.rows_out,
        "late": run.late,
        "seconds": time.perf_counter() - started,
    }


def in_fresh_process(records: int, arguments: argparse.Namespace) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--one",
        str(records),
        "--devices",
        str(arguments.devices),
        "--batch",
        str(arguments.batch),
        "--rate",
        str(arguments.rate),
        "--how",
        arguments.how,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=2_000, help="readings per batch")
    parser.add_argument("--rate", type=float, default=2_000.0, help="readings/s of event time")
    parser.add_argument("--how", choices=["inner", "left"], default="left")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child run
    arguments = parser.parse_args()
    if arguments.one is not None:
        figures = measure(
            arguments.one, arguments.devices, arguments.batch, arguments.rate, arguments.how
        )
        print(json.dumps(figures))
        return
    runs = [in_fresh_process(records, arguments) for records in arguments.records]
    print(
        f"interval join within {WITHIN.total_seconds():g}s, {arguments.devices} devices, "
        f"disorder {DISORDER.total_seconds():g}s, {arguments.rate:g} readings/s, "
        f"batches of {arguments.batch}, how={arguments.how}"
    )
    for figures in runs:
        print(
            f"  {int(figures['records']):>11,} records: peak buffered "
            f"{int(figures['peak_buffered']):>8,} rows, peak RSS {figures['peak_rss_mb']:7.1f} MB, "
            f"{int(figures['rows_out']):,} rows out, {int(figures['late'])} late, "
            f"{figures['records'] / figures['seconds']:,.0f} records/s"
        )
    first, last = runs[0], runs[-1]
    print(
        f"  ratio {int(last['records']):,}/{int(first['records']):,}: buffered rows "
        f"{last['peak_buffered'] / first['peak_buffered']:.2f}, peak RSS "
        f"{last['peak_rss_mb'] / first['peak_rss_mb']:.2f} (target: about 1, flat)"
    )


if __name__ == "__main__":
    main()
