"""Loading a reference table of 1M rows: from a CSV file, a Parquet file and a PostgreSQL query.

Each table has an id, a label, two floats, an int, a bool and a UTC timestamp per row (about
60 MB of CSV). The file figures are the best of three loads (read, hash, parse); the query
figures are one whole load and one incremental refresh that finds 1,000 changed rows.
Targets: the CSV loads in under 2 s; the query in under 5 s, and its refresh well under 1 s.

PostgreSQL is the throwaway one of scripts/postgres.sh (started if it is not running, in a
scratch database dropped afterwards), or the one --dsn names.

    python benchmarks/table_loads.py [--rows 1000000] [--dsn postgresql://...]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import psycopg
from psycopg import sql

from sensorstream.sources.tables import FileTableSource, PostgresTableSource

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "postgres.sh"
SCRATCH_DATABASE = "bench_table_loads"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def table(rows: int) -> pl.DataFrame:
    row = pl.int_range(0, rows, eager=True)
    return pl.DataFrame(
        {
            "user_id": pl.select(pl.format("user-{}", pl.lit(row))).to_series(),
            "site": pl.Series(["north", "south", "east"]).gather(row % 3),
            "low": (row % 997).cast(pl.Float64) / 10,
            "high": (row % 997).cast(pl.Float64) / 10 + 50,
            "floor": row % 50,
            "active": row % 7 != 0,
            "updated_at": pl.datetime_range(
                T0, T0 + timedelta(seconds=rows - 1), "1s", eager=True, time_zone="UTC"
            ),
        }
    )


def best_of_three(source: FileTableSource) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        source.load()
        times.append(time.perf_counter() - started)
    return min(times)


def file_loads(rows: int) -> None:
    frame = table(rows)
    with tempfile.TemporaryDirectory() as scratch:
        for suffix in ("csv", "parquet"):
            path = Path(scratch) / f"ranges.{suffix}"
            if suffix == "csv":
                frame.write_csv(path)
            else:
                frame.write_parquet(path)
            seconds = best_of_three(FileTableSource("ranges", path))
            target = " (target: under 2 s)" if suffix == "csv" else ""
            print(
                f"{suffix} file: {rows:,} rows, {path.stat().st_size / 1e6:.0f} MB, "
                f"loaded in {seconds:.2f} s = {rows / seconds / 1e6:.2f}M rows/s{target}"
            )
            if suffix == "csv":
                # Without a schema the timestamps stay text; declared, they are parsed.
                typed = FileTableSource("ranges", path, schema={"updated_at": "datetime"})
                seconds = best_of_three(typed)
                print(f"csv file, updated_at declared datetime: loaded in {seconds:.2f} s")


def postgres_script(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), command], capture_output=True, text=True, check=False
    )


def server_dsn(given: str | None) -> str | None:
    if given:
        return given
    started = postgres_script("start")
    if started.returncode != 0:
        print(f"postgres: skipped, scripts/postgres.sh start failed: {started.stderr.strip()}")
        return None
    return started.stdout.strip().splitlines()[-1]


def query_loads(rows: int, dsn: str) -> None:
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(SCRATCH_DATABASE)
    )
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(drop)
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SCRATCH_DATABASE)))
    scratch = urlsplit(dsn)._replace(path=f"/{SCRATCH_DATABASE}").geturl()
    try:
        with psycopg.connect(scratch, autocommit=True) as connection:
            connection.execute(
                "CREATE TABLE ranges AS SELECT 'user-' || i AS user_id,"
                " (ARRAY['north', 'south', 'east'])[i %% 3 + 1] AS site,"
                " (i %% 997) / 10.0::float8 AS low, (i %% 997) / 10.0::float8 + 50 AS high,"
                " i %% 50 AS floor, i %% 7 <> 0 AS active,"
                " TIMESTAMPTZ '2024-01-01Z' + i * INTERVAL '1 second' AS updated_at"
                " FROM generate_series(0, %s - 1) AS i",
                (rows,),
            )
        source = PostgresTableSource(
            "ranges",
            scratch,
            "SELECT * FROM ranges",
            change_column="updated_at",
            interval=timedelta(hours=1),
        )
        started = time.perf_counter()
        loaded = source.load()
        seconds = time.perf_counter() - started
        print(
            f"postgres query: {loaded.rows.height:,} rows loaded in {seconds:.2f} s = "
            f"{rows / seconds / 1e6:.2f}M rows/s (target: under 5 s)"
        )
        with psycopg.connect(scratch, autocommit=True) as connection:
            connection.execute(
                "UPDATE ranges SET high = high + 1, updated_at = now() + INTERVAL '100 years'"
                " WHERE user_id IN (SELECT 'user-' || i FROM generate_series(0, 999) AS i)"
            )
        started = time.perf_counter()
        changes = source.read_changes()
        seconds = time.perf_counter() - started
        found = changes.rows.height if changes else 0
        print(f"postgres incremental refresh: {found:,} changed rows in {seconds:.3f} s")
        source.close()
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(drop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dsn", help="a PostgreSQL to use instead of scripts/postgres.sh's")
    args = parser.parse_args()
    file_loads(args.rows)
    was_running = args.dsn is None and postgres_script("status").returncode == 0
    dsn = server_dsn(args.dsn)
    if dsn is None:
        return
    try:
        query_loads(args.rows, dsn)
    finally:
        if args.dsn is None and not was_running:
            postgres_script("stop")


if __name__ == "__main__":
    main()
