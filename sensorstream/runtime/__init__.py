"""What drives a pipeline: the embedded runner, checkpoints and the processing clock."""

from __future__ import annotations

from sensorstream.runtime.runner import Runner, RunSummary, system_clock

__all__ = ["RunSummary", "Runner", "system_clock"]
