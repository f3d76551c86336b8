"""W1 with rules: the W1 pipeline plus five rules of different kinds, against W1 alone.

Two rules read the 5M readings (a threshold with levels and hysteresis, a SQL condition on
two measurements), three read the 1-minute window results (two windows in a row above a
level, a rate of change, a rolling z-score over the key's last ten minutes).
Each pipeline runs in fresh processes, --repeat times, interleaved with the other, and the
fastest run of each counts; the figure is the ratio of their throughputs, measured in the
same run. It is measured twice: the engine inside its process (the benchmark's pipeline,
raw readings not stored), and the whole ``sensorstream run`` command in the default
configuration (raw readings stored too). Target: W1 with rules keeps >= 70% of W1's.

    python benchmarks/w1_rules.py [--readings 5000000] [--devices 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

# A sibling script, not a package: mypy sees it as benchmarks.w1_tumbling.
from w1_tumbling import (  # type: ignore[import-not-found]
    dataset,
    report_pair,
    run_command,
    run_sensorstream,
)

RULES: list[dict[str, Any]] = [
    {
        "name": "hot_readings",
        "rule": {
            "threshold": "temperature",
            "above": {"warning": 28, "critical": 31},
            "clear": 0.5,
        },
    },
    {
        "name": "muggy_readings",
        "rule": {"when": "humidity > 68 AND temperature > 25", "severity": "notice"},
    },
    {
        "name": "two_warm_minutes",
        "input": "per_device_1m",
        "rule": {"threshold": "temperature_mean", "above": {"warning": 23.5}},
        "consecutive": 2,
    },
    {
        "name": "rising_minutes",
        "input": "per_device_1m",
        "rule": {"rate": "temperature_mean", "per": "1m", "rise": 3},
    },
    {
        "name": "odd_minutes",
        "input": "per_device_1m",
        "rule": {"zscore": "temperature_mean", "window": 10, "above": 3, "below": -3},
    },
]


def child(path: Path, *, rules: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(path), *(["--rules"] if rules else [])]
    output = subprocess.run(command, check=True, capture_output=True, text=True)
    figures: dict[str, float] = json.loads(output.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=5_000_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rules", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_sensorstream(args.child, extra_steps=RULES if args.rules else ())))
        return
    path = dataset(args.readings, args.devices)
    repeat = max(1, args.repeat)
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "added": [], "whole": [], "whole+": []}
    for _ in range(repeat):
        runs["plain"].append(child(path, rules=False))
        runs["added"].append(child(path, rules=True))
        runs["whole"].append(run_command(path, store_readings=True, readings=args.readings))
        runs["whole+"].append(
            run_command(path, store_readings=True, readings=args.readings, extra_steps=RULES)
        )
    best = {name: min(found, key=lambda r: r["seconds"]) for name, found in runs.items()}
    report_pair(
        f"W1 with rules: {args.readings:,} readings (fastest of {repeat} runs each), "
        f"{best['added']['transitions']:,.0f} alert transitions",
        best,
        "W1 alone",
        "W1 + 5 rules",
    )


if __name__ == "__main__":
    main()
