"""What drives a pipeline: the embedded runner, checkpoints and the processing clock."""

from __future__ import annotations

from sensorstream.runtime.counters import Counters, RunSummary
from sensorstream.runtime.runner import Runner, system_clock

__all__ = ["Counters", "RunSummary", "Runner", "system_clock"]
