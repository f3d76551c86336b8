"""Start-up: how long the command takes before it does any work, as a user times it.

Times whole processes: ``sensorstream --help``, ``sensorstream --version`` and a replay of
300 readings (``--fresh``, so every run does the same work), each as the median of
--repeat runs, interleaved, and as a ratio to ``python -c pass`` measured in the same
runs (the interpreter's own start-up, which no change here can remove). Also prints how
long importing ``sensorstream.cli`` takes inside a process. Target: ``--help`` <= 0.3 s.

    python benchmarks/startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command() -> list[str]:
    """The console script beside this interpreter, or ``python -m sensorstream``."""
    script = Path(sys.executable).with_name("sensorstream")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sensorstream"]


def timed(args: list[str], cwd: Path) -> float:
    """Wall seconds of one process, start to exit; it must succeed."""
    started = time.perf_counter()
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def import_seconds(cwd: Path) -> float:
    """Seconds to import the CLI inside a fresh process (what ``-X importtime`` sums up)."""
    code = (
        "import time; t = time.perf_counter(); import sensorstream.cli; "
        "print(time.perf_counter() - t)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, check=True, capture_output=True, text=True
    )
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    repeat = parser.parse_args().repeat
    cli = command()
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        subprocess.run(
            [*cli, "simulate", "r.ndjson", "--devices", "5", "--readings", "300"],
            cwd=cwd,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        contenders = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "sensorstream --help": [*cli, "--help"],
            "sensorstream --version": [*cli, "--version"],
            "replay of 300 readings": [*cli, "replay", "r.ndjson", "--fresh"],
        }
        runs: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(repeat):  # interleaved: a slow moment of the machine hits all alike
            for name, args in contenders.items():
                runs[name].append(timed(args, cwd))
        imports = statistics.median(import_seconds(cwd) for _ in range(repeat))
    medians = {name: statistics.median(seconds) for name, seconds in runs.items()}
    reference = medians["python -c pass"]
    print(f"start-up, median of {repeat} runs each ({' '.join(cli)}):")
    for name, seconds in medians.items():
        print(f"  {name:<24} {seconds:6.3f} s  {seconds / reference:6.1f}x python -c pass")
    print(f"  {'import sensorstream.cli':<24} {imports:6.3f} s  (in-process)")
    verdict = "met" if medians["sensorstream --help"] <= 0.3 else "MISSED"
    print(f"target --help <= 0.3 s: {verdict}")


if __name__ == "__main__":
    main()
