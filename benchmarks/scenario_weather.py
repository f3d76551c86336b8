"""The weather scenario: readings/s of its pipeline on the feed and on the real-data replay.

Three figures in one run: the shipped weather pipeline over its feed at full speed
(``--hours`` of event time from the document's three stations, in this process), the same
pipeline replaying vega_datasets' ``seattle-temps`` and ``sf-temps`` (``replay --dataset``:
the CSV turned into payloads, then the file replay), and a whole-file DuckDB GROUP BY
over the feed's very payloads written as NDJSON (the same 1-minute means per client), as
the batch upper bound; the pipeline's figure is also given as a ratio to it. The PyFlink
document gives no throughput figure to set beside them. Each runs --repeat times; the
fastest counts.

    python benchmarks/scenario_weather.py [--hours 240] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path


def run_feed(hours: float, scratch: Path) -> dict[str, float]:
    """The weather pipeline over ``hours`` of its feed at full speed."""
    from sensorstream.runtime.runner import Runner
    from sensorstream.scenarios import scenario

    spec = scenario("weather").spec(
        live=False,
        duration=timedelta(hours=hours),
        changes={
            "sinks": [{"type": "duckdb", "path": str(scratch / "feed.duckdb")}],
            "checkpoint": {"dir": str(scratch / "feed-ckpt"), "interval": "10s"},
        },
    )
    started = time.perf_counter()
    summary = Runner(spec, fresh=True).run()
    seconds = time.perf_counter() - started
    lines = summary.counters.get("lines")
    return {"readings": lines, "seconds": seconds, "readings_per_s": lines / seconds}


def run_replay(name: str, scratch: Path) -> dict[str, float]:
    """``replay --dataset NAME`` at full speed: writing the payloads, then the replay."""
    from sensorstream.cli.specs import dataset_replay_spec
    from sensorstream.runtime.runner import Runner

    started = time.perf_counter()
    spec = dataset_replay_spec(
        name, pipeline=None, pipeline_name=None, speed=None, folder=scratch / "datasets"
    )
    spec = spec.model_copy(
        update={
            "sinks": [{"type": "duckdb", "path": str(scratch / f"{name}.duckdb")}],
        }
    )
    spec = type(spec).model_validate(dict(spec))
    summary = Runner(spec, checkpoint_dir=scratch / f"{name}-ckpt", fresh=True).run()
    seconds = time.perf_counter() - started
    lines = summary.counters.get("lines")
    return {"readings": lines, "seconds": seconds, "readings_per_s": lines / seconds}


def run_duckdb(hours: float, scratch: Path) -> dict[str, float]:
    """The same feed's payloads as NDJSON, averaged per client and minute by DuckDB."""
    import duckdb

    from sensorstream.sources.feed import payload_lines
    from sensorstream.sources.feeds import WeatherFeedSettings
    from sensorstream.sources.feeds.base import epoch_us
    from sensorstream.sources.synthetic import DEFAULT_START

    path = scratch / "weather.ndjson"
    if not path.exists():
        low = epoch_us(DEFAULT_START)
        reports = WeatherFeedSettings().build().reports(low, low + int(hours * 3600e6), 0)
        path.write_bytes(payload_lines(reports))
    query = f"""
        SELECT client, time_bucket(INTERVAL 1 MINUTE, ts::TIMESTAMP) AS minute,
               avg(temperature) AS avg_temp, avg(humidity) AS avg_hum, count(*) AS n
        FROM read_json('{path}', format = 'newline_delimited',
             columns = {{client: 'VARCHAR', ts: 'VARCHAR', temperature: 'DOUBLE',
                         humidity: 'DOUBLE'}})
        GROUP BY ALL
    """
    started = time.perf_counter()
    with duckdb.connect() as connection:
        rows = connection.execute(f"SELECT count(*), sum(n) FROM ({query})").fetchone()
    seconds = time.perf_counter() - started
    assert rows is not None
    return {"readings": rows[1], "seconds": seconds, "readings_per_s": rows[1] / seconds}


def fastest(runs: list[dict[str, float]]) -> dict[str, float]:
    return max(runs, key=lambda run: run["readings_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=240.0, help="event time of the feed")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        feed: list[dict[str, float]] = []
        reference: list[dict[str, float]] = []
        replays: dict[str, list[dict[str, float]]] = {"seattle-temps": [], "sf-temps": []}
        for _ in range(args.repeat):  # interleaved, so a drift of the machine hits all alike
            feed.append(run_feed(args.hours, scratch))
            for name, runs in replays.items():
                runs.append(run_replay(name, scratch))
            reference.append(run_duckdb(args.hours, scratch))
    best = fastest(feed)
    duck = fastest(reference)
    replay = {name: fastest(runs) for name, runs in replays.items()}
    figures = {
        "feed": best,
        "replay": replay,
        "duckdb_group_by": duck,
        "feed_over_duckdb": best["readings_per_s"] / duck["readings_per_s"],
        "document": "the PyFlink document reports no throughput figure",
    }
    print(
        f"weather pipeline, feed at full speed: {best['readings_per_s']:,.0f} readings/s "
        f"({best['readings']:,.0f} readings in {best['seconds']:.2f} s)"
    )
    for name, run in replay.items():
        print(
            f"replay --dataset {name}: {run['readings_per_s']:,.0f} readings/s "
            f"({run['readings']:,.0f} readings in {run['seconds']:.2f} s, writing included)"
        )
    print(
        f"DuckDB GROUP BY over the same payloads: {duck['readings_per_s']:,.0f} readings/s; "
        f"the pipeline runs at {best['readings_per_s'] / duck['readings_per_s']:.2f} of it"
    )
    print("the document: no throughput figure")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
