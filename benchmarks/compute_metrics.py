"""POST /compute/metrics over 10,000,000 stored readings: p50 and p99 latency of the API.

What it measures: the latency of the reference design's request (count, min and max of
temperature, average and max of humidity, between ``from`` and ``to``) sent through the
whole app (FastAPI, httpx over ASGI, in this process; the network is not included), over
a store of --readings W1 readings from --devices devices that a real pipeline wrote once
(cached under benchmarks/data/, named by its settings). The app reads as a running
pipeline's API does: stores kept between requests over cursors of one DuckDB connection
(:class:`sensorstream.store.readers.StoreReaders`). Two ranges, --requests times each
after 5 untimed: a random minute (W1 has 10,000 readings a second: 600,000 rows), and a
random hour, which holds the whole store (10M readings at 1 Hz per device span 1,000 s).

The reference, in the same run on the same store: the same SQL statement on the same
view, with nothing around it; the ratio of the p99s says what the API adds. Target: API
p99 <= 100 ms. It prints how many segments the pipeline left (and their rows): a live
pipeline flushes far smaller ones than a replay, which --segment-readings imitates;
--no-compaction stores them as the sink did before it merged segments; --compact merges
what is due before timing (as the pipeline's later flushes would).

    python benchmarks/compute_metrics.py [--readings 10000000] [--requests 200]
        [--segment-readings 10000] [--no-compaction] [--compact]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))

from w1_tumbling import DATA, dataset, w1_pipeline  # type: ignore[import-not-found]

WARM_UP = 5
QUERY = (
    "SELECT count(temperature), min(temperature), max(temperature), avg(humidity), "
    "max(humidity) FROM readings WHERE pipeline = ? AND ts BETWEEN ? AND ?"
)


def stored(readings: int, devices: int, segment_readings: int | None, compaction: bool) -> Path:
    """A store holding the W1 file's readings, written once by a real pipeline.

    ``segment_readings`` makes the file source read chunks of about that many readings
    and the sink flush a segment each (a live pipeline's flushes are that small); None
    keeps both defaults (16 MiB chunks, about 200,000 readings, a segment each).
    ``compaction`` False writes as the sink did before it merged segments.
    """
    from sensorstream.pipeline.spec import PipelineSpec
    from sensorstream.runtime.runner import Runner
    from sensorstream.sinks.duckdb import DuckDBSink

    name = f"metrics-{readings}-{devices}-{segment_readings or 'default'}"
    name += "" if compaction else "-uncompacted"
    store: Path = DATA / f"{name}.duckdb"
    if store.exists():
        return store
    path = dataset(readings, devices)
    scratch = DATA / f"{name}.scratch"
    pipeline = w1_pipeline(path, scratch, store_readings=True)
    sink: dict[str, object] = {"type": "duckdb", "path": str(store), "store_readings": True}
    if segment_readings is not None:
        line_bytes = path.stat().st_size / readings
        source = dict(pipeline["source"])
        source["chunk_bytes"] = max(1, int(segment_readings * line_bytes))
        pipeline["source"] = source
        sink["flush_rows"] = segment_readings
    pipeline["sinks"] = [sink]
    runner = Runner(PipelineSpec.model_validate(pipeline), fresh=True)
    if not compaction:
        for each in runner.sinks:
            if isinstance(each, DuckDBSink):
                each.compaction = None
    runner.run()
    return store


def describe_segments(store: Path) -> str:
    """How many segments the store reads, and their rows (smallest, median, largest)."""
    from sensorstream.sinks.segments import segment_files

    rows = sorted(pq.read_metadata(path).num_rows for path in segment_files(store))
    if not rows:
        return "no segments"
    return (
        f"{len(rows)} segments, rows each: smallest {rows[0]:,}, median "
        f"{rows[len(rows) // 2]:,}, largest {rows[-1]:,}"
    )


def compact(store: Path) -> int:
    """Merge every run of segments due now, as the pipeline's later flushes would."""
    from sensorstream.sinks.segment_writer import ReadingSegments

    segments = ReadingSegments(store, "w1")
    segments.open()
    try:
        return segments.compact()
    finally:
        segments.close()


def _instant(text: object) -> datetime:
    return datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=10_000_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--segment-readings",
        type=int,
        default=None,
        help="readings a segment (as small as a live pipeline's); default: as a replay's",
    )
    parser.add_argument(
        "--no-compaction", action="store_true", help="store as before segments were merged"
    )
    parser.add_argument("--compact", action="store_true", help="merge what is due first")
    args = parser.parse_args()
    import httpx

    from sensorstream.api.app import Serving, create_app
    from sensorstream.store import Store
    from sensorstream.store.readers import StoreReaders

    store_path = stored(
        args.readings, args.devices, args.segment_readings, compaction=not args.no_compaction
    )
    print(f"store: {store_path.name}, {describe_segments(store_path)}")
    if args.compact:
        merges = compact(store_path)
        print(f"  compacted ({merges} merges): {describe_segments(store_path)}")
    connection = duckdb.connect(str(store_path), read_only=True)
    bare_store = Store(store_path, connection.cursor())
    first, last = bare_store.sql("SELECT min(ts) AS a, max(ts) AS b FROM readings").row(0)
    readers = StoreReaders(store_path, connection.cursor)

    @contextmanager
    def open_store() -> Iterator[Store]:
        with readers.open() as opened:
            yield opened

    app = create_app(Serving("w1", open_store))
    rng = random.Random(1)

    def body(span: timedelta) -> dict[str, object]:
        room = (last - first - span).total_seconds()
        start = first + timedelta(seconds=rng.uniform(0, max(0.0, room)))
        text = "%Y-%m-%d %H:%M:%S"
        return {
            "temperature": ["count", "min", "max"],
            "humidity": ["average", "max"],
            "from": start.astimezone(UTC).strftime(text),
            "to": (start + span).astimezone(UTC).strftime(text),
        }

    async def api(span: timedelta) -> list[float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            times = []
            for number in range(WARM_UP + args.requests):
                request = body(span)
                started = time.perf_counter()
                answer = await client.post("/compute/metrics", json=request)
                if number >= WARM_UP:
                    times.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
        return times

    def bare(span: timedelta) -> list[float]:
        times = []
        for number in range(WARM_UP + args.requests):
            request = body(span)
            parameters = ["w1", _instant(request["from"]), _instant(request["to"])]
            started = time.perf_counter()
            bare_store.sql(QUERY, parameters)
            if number >= WARM_UP:
                times.append(time.perf_counter() - started)
        return times

    print(f"/compute/metrics over {args.readings:,} stored readings, {args.requests} requests each")
    for label, span in (("one minute", timedelta(minutes=1)), ("one hour", timedelta(hours=1))):
        through_api = asyncio.run(api(span))
        direct = bare(span)
        p50, p99 = percentile(through_api, 0.5), percentile(through_api, 0.99)
        d50, d99 = percentile(direct, 0.5), percentile(direct, 0.99)
        print(
            f"  {label:>10}: API p50 {p50 * 1000:6.1f} ms, p99 {p99 * 1000:6.1f} ms; "
            f"bare SQL p50 {d50 * 1000:6.1f} ms, p99 {d99 * 1000:6.1f} ms; "
            f"ratio p50 {p50 / d50:.2f}, p99 {p99 / d99:.2f}; "
            f"API mean {statistics.mean(through_api) * 1000:.1f} ms"
        )
    print("(target: API p99 <= 100 ms)")
    readers.close()
    bare_store.close()
    connection.close()


if __name__ == "__main__":
    main()
