"""W1 with rules: the W1 pipeline plus five rules of different kinds, against W1 alone.

Two rules read the 5M readings (a threshold with levels and hysteresis, a SQL condition on
two measurements), three read the 1-minute window results (two windows in a row above a
level, a rate of change, a rolling z-score). Both pipelines run in fresh processes, --repeat
times, interleaved, and the fastest run of each counts; the figure is the ratio of their
throughputs, measured in the same run. Target: W1 with rules keeps >= 70% of W1's.

    python benchmarks/w1_rules.py [--readings 5000000] [--devices 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

# A sibling script, not a package: mypy sees it as benchmarks.w1_tumbling.
from w1_tumbling import dataset, w1_pipeline  # type: ignore[import-not-found]

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
        "name": "wide_minutes",
        "input": "per_device_1m",
        "rule": {"when": "temperature_max - temperature_min > 12", "severity": "warning"},
    },
    {
        "name": "cold_minutes",
        "input": "per_device_1m",
        "rule": {"threshold": "temperature_min", "below": {"warning": 12, "critical": 10}},
        "for": "1m",
    },
]


def run(path: Path, *, rules: bool) -> dict[str, float]:
    """One run in this process: W1, with or without the rules."""
    from sensorstream.pipeline.spec import PipelineSpec
    from sensorstream.runtime.runner import Runner

    with tempfile.TemporaryDirectory() as scratch:
        pipeline = w1_pipeline(path, Path(scratch))
        if rules:
            pipeline["steps"] = [*pipeline["steps"], *RULES]
        spec = PipelineSpec.model_validate(pipeline)
        started = time.perf_counter()
        summary = Runner(spec).run()
        seconds = time.perf_counter() - started
    return {
        "readings": summary.counters.get("lines"),
        "seconds": seconds,
        "readings_per_s": summary.counters.get("lines") / seconds,
        "transitions": summary.counters.get("alert_transitions"),
    }


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
        print(json.dumps(run(args.child, rules=args.rules)))
        return
    path = dataset(args.readings, args.devices)
    plain: list[dict[str, float]] = []
    ruled: list[dict[str, float]] = []
    for _ in range(max(1, args.repeat)):
        plain.append(child(path, rules=False))
        ruled.append(child(path, rules=True))
    best_plain = min(plain, key=lambda r: r["seconds"])
    best_ruled = min(ruled, key=lambda r: r["seconds"])
    ratio = best_ruled["readings_per_s"] / best_plain["readings_per_s"]
    print(f"W1 with rules: {args.readings:,} readings (fastest of {max(1, args.repeat)} runs each)")
    print(f"  W1 alone:          {best_plain['readings_per_s']:>12,.0f} readings/s")
    print(
        f"  W1 + 5 rules:      {best_ruled['readings_per_s']:>12,.0f} readings/s, "
        f"{best_ruled['transitions']:,.0f} alert transitions"
    )
    print(f"ratio W1 + rules / W1: {ratio:.2f} (target >= 0.70)")


if __name__ == "__main__":
    main()
