"""What the command loads before answering: ``--help`` must not wait for the engine."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = (
    "polars",
    "duckdb",
    "numpy",
    "pyarrow",
    "numba",
    "pydantic",
    "yaml",
    "sensorstream.engine",
    "sensorstream.pipeline",
    "sensorstream.runtime",
    "sensorstream.sources",
    "sensorstream.sinks",
)


def _loaded_after(*args: str) -> list[str]:
    code = (
        "import sys\n"
        "from sensorstream.cli import app\n"
        "try:\n"
        f"    app({list(args)!r}, prog_name='sensorstream')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    [line] = [line for line in done.stdout.splitlines() if line.startswith("loaded:")]
    return line.split()[1:]


@pytest.mark.parametrize("args", [("--help",), ("--version",)])
def test_help_and_version_load_no_heavy_module(args: tuple[str, ...]) -> None:
    assert _loaded_after(*args) == []


@pytest.mark.parametrize(
    "args", [("replay", "--help"), ("query", "--help"), ("alerts", "silence", "--help"), ("bogus",)]
)
def test_a_command_s_help_and_a_usage_error_load_no_engine(args: tuple[str, ...]) -> None:
    # Typer itself converts parameters with Pydantic, so only Pydantic may come in here.
    assert _loaded_after(*args) in ([], ["pydantic"])
