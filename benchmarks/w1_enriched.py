"""W1 enriched: every reading joined with a 1,000,000-row reference table, against W1 alone.

The table (device id -> room, district, lat, lon) holds W1's 10,000 devices among a million
rows, in a Parquet file; each reading is looked up by its device (a lookup join) before
the 1-minute windows, which then carry the device's district. Each pipeline runs in
fresh processes, --repeat times, interleaved with the other, and the fastest run of each
counts; the figure is the ratio of their throughputs in the same run. It is measured
twice: the engine inside its process (raw readings not stored), and the whole
``sensorstream run`` command in the default configuration (raw readings stored too), which
also loads the table. Target: W1 enriched keeps >= 70% of W1's throughput.

    python benchmarks/w1_enriched.py [--readings 5000000] [--devices 10000] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).parent))

# A sibling script, not a package: mypy sees it as benchmarks.w1_tumbling.
from w1_tumbling import (  # type: ignore[import-not-found]
    DATA,
    dataset,
    report_pair,
    run_command,
    run_sensorstream,
)


def reference_table(path: Path, rows: int) -> Path:
    """W1's devices among ``rows`` rows of device facts, as Parquet, made once and cached."""
    target: Path = DATA / f"devices-{rows}-for-{path.stem}.parquet"
    if target.exists():
        return target
    devices = pl.scan_ndjson(path).select("device_id").unique().collect()["device_id"]
    others = pl.Series([f"other-{i:07d}" for i in range(max(0, rows - devices.len()))])
    ids = pl.concat([devices, others]).sample(fraction=1.0, shuffle=True, seed=7)
    index = pl.int_range(0, pl.len())
    table = pl.DataFrame({"device_id": ids}).with_columns(
        pl.format("room-{}", index % 5_000).alias("room"),
        pl.format("district-{}", index % 12).alias("district"),
        (47.3 + (index % 1000) / 10_000).alias("lat"),
        (8.5 + (index % 997) / 10_000).alias("lon"),
    )
    table.write_parquet(target)
    return target


def enrichment(table: Path) -> dict[str, Any]:
    """The join step and the table it reads, as w1_pipeline takes them."""
    return {
        "tables": {
            "devices": {
                "source": {"type": "file", "path": str(table)},
                "columns": {"room": "string", "district": "string", "lat": "float", "lon": "float"},
            }
        },
        "before_window": [
            {"name": "placed", "join": {"table": "devices", "columns": ["room", "district"]}}
        ],
    }


def child(path: Path, table: Path | None) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(path)]
    if table is not None:
        command += ["--table", str(table)]
    output = subprocess.run(command, check=True, capture_output=True, text=True)
    figures: dict[str, float] = json.loads(output.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=5_000_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--table", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        changes = enrichment(args.table) if args.table else {}
        print(json.dumps(run_sensorstream(args.child, **changes)))
        return
    path = dataset(args.readings, args.devices)
    table = reference_table(path, args.rows)
    repeat = max(1, args.repeat)
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "added": [], "whole": [], "whole+": []}
    for _ in range(repeat):
        runs["plain"].append(child(path, None))
        runs["added"].append(child(path, table))
        runs["whole"].append(run_command(path, store_readings=True, readings=args.readings))
        runs["whole+"].append(
            run_command(path, store_readings=True, readings=args.readings, **enrichment(table))
        )
    best = {name: min(found, key=lambda r: r["seconds"]) for name, found in runs.items()}
    title = (
        f"W1 enriched: {args.readings:,} readings joined with a {args.rows:,}-row table "
        f"(fastest of {repeat} runs each)"
    )
    report_pair(title, best, "W1 alone", "W1 enriched")


if __name__ == "__main__":
    main()
