"""What a store holds, as the DuckDB sink recorded it: pipelines, their steps, row counts."""

from __future__ import annotations

from dataclasses import dataclass

from sensorstream.errors import StoreError


@dataclass(frozen=True)
class StoredStep:
    """A window step as the sink recorded it: where its results are, and their columns."""

    name: str
    table: str
    key: tuple[str, ...]
    outputs: tuple[str, ...]
    active: bool  # false once the pipeline was run without this step


@dataclass(frozen=True)
class StoredPipeline:
    """A pipeline as the sink recorded it."""

    name: str
    reading_columns: tuple[str, ...]
    stores_readings: bool
    steps: tuple[StoredStep, ...]

    def step(self, name: str) -> StoredStep:
        """The step called ``name``; the error lists the ones there are."""
        for step in self.steps:
            if step.name == name:
                return step
        known = ", ".join(repr(s.name) for s in self.steps if s.active) or "none"
        msg = f"pipeline {self.name!r} has no step {name!r}; its steps: {known}"
        raise StoreError(msg)


@dataclass(frozen=True)
class StoreCounts:
    """How many rows a pipeline has stored, per table."""

    readings: int
    dead_letters: int
    late_readings: int
    results: dict[str, int]  # step name -> result rows
