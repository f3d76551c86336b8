"""POST /compute/metrics over 10,000,000 stored readings: p50 and p99 latency of the API.

Stores W1-like readings (--readings, default 10M, from --devices devices) through a real
pipeline into a DuckDB store once (cached under benchmarks/data/), then sends the
reference design's request for a random one-minute range, and for a random hour,
--requests times each through the app (httpx over ASGI, in this process), and prints the
p50 and p99 of each. Beside it, the same query as bare DuckDB SQL on the same store in
the same run: the ratio says what the API adds. Target: p99 <= 100 ms.

    python benchmarks/compute_metrics.py [--readings 10000000] [--requests 200]
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

sys.path.insert(0, str(Path(__file__).parent))

from w1_tumbling import DATA, dataset, w1_pipeline  # type: ignore[import-not-found]


def stored(readings: int, devices: int) -> Path:
    """A store holding the W1 file's readings, made once."""
    from sensorstream.pipeline.spec import PipelineSpec
    from sensorstream.runtime.runner import Runner

    store: Path = DATA / f"metrics-{readings}-{devices}.duckdb"
    if store.exists():
        return store
    path = dataset(readings, devices)
    scratch = DATA / f"metrics-{readings}-{devices}.scratch"
    pipeline = w1_pipeline(path, scratch, store_readings=True)
    pipeline["sinks"] = [{"type": "duckdb", "path": str(store), "store_readings": True}]
    Runner(PipelineSpec.model_validate(pipeline), fresh=True).run()
    return store


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
    args = parser.parse_args()
    import httpx

    from sensorstream.api.app import Serving, create_app
    from sensorstream.store import Store

    store_path = stored(args.readings, args.devices)
    with Store(store_path) as store:
        first, last = store.sql("SELECT min(ts) AS a, max(ts) AS b FROM readings").row(0)

    shared = Store(store_path)

    @contextmanager
    def open_store() -> Iterator[Store]:
        yield Store(store_path, shared._connection.cursor())

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
            for _ in range(args.requests):
                request = body(span)
                started = time.perf_counter()
                answer = await client.post("/compute/metrics", json=request)
                times.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
        return times

    def bare(span: timedelta) -> list[float]:
        times = []
        for _ in range(args.requests):
            request = body(span)
            started = time.perf_counter()
            shared.sql(
                "SELECT count(temperature), min(temperature), max(temperature), avg(humidity), "
                "max(humidity) FROM readings WHERE pipeline = ? AND ts BETWEEN ? AND ?",
                [
                    "w1",
                    datetime.strptime(str(request["from"]), "%Y-%m-%d %H:%M:%S").replace(
                        tzinfo=UTC
                    ),
                    datetime.strptime(str(request["to"]), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC),
                ],
            )
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
            f"p99 ratio {p99 / d99:.2f}; mean {statistics.mean(through_api) * 1000:.1f} ms"
        )
    print("(target: p99 <= 100 ms)")


if __name__ == "__main__":
    main()
