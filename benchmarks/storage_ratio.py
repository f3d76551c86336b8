"""What storing raw readings costs: ``sensorstream run`` on W1 with and without them.

The whole command as a user runs it (imports, start-up, the final flush and the summary
included), on the 5M-reading W1 file, once with ``store_readings: true`` (the default) and
once with ``store_readings: false``, interleaved A B A B so a slow spell of the shared
machine hits both alike; the fastest run of each counts. Target: the default keeps >= 85%
of the throughput without readings.

    python benchmarks/storage_ratio.py [--readings 5000000] [--devices 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# A sibling script, not a package: mypy sees it as benchmarks.w1_tumbling.
from w1_tumbling import dataset, run_command  # type: ignore[import-not-found]

TARGET = 0.85


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=5_000_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each, interleaved; the fastest counts"
    )
    args = parser.parse_args()
    path = dataset(args.readings, args.devices)
    print(
        f"W1: {args.readings:,} readings, {args.devices:,} devices, `sensorstream run` "
        f"(fastest of {max(1, args.repeat)} runs each, interleaved)"
    )
    runs: dict[bool, list[float]] = {True: [], False: []}
    for number in range(max(1, args.repeat)):
        for store_readings in (True, False):
            figures = run_command(path, store_readings=store_readings, readings=args.readings)
            runs[store_readings].append(figures["readings_per_s"])
            label = "readings stored" if store_readings else "readings not stored"
            print(f"  run {number + 1}, {label + ':':<21}{figures['readings_per_s']:>12,.0f}/s")
    stored, alone = max(runs[True]), max(runs[False])
    print(f"store_readings: true   {stored:>12,.0f} readings/s")
    print(f"store_readings: false  {alone:>12,.0f} readings/s")
    print(f"ratio stored / not stored: {stored / alone:.2f} (target >= {TARGET:.2f})")


if __name__ == "__main__":
    main()
