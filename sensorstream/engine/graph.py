"""The steps of a plan as a graph: checked once, then run in an order where inputs come first.

Each step reads ``readings`` or another step. The graph is checked when a pipeline loads:
an unknown input, a cycle, a step reading an output it cannot read (a window over alert
events, say) or a column its input lacks is a :class:`~sensorstream.engine.steps.StepError`
naming the step and the field, which the YAML layer turns into a line number.

>>> from sensorstream.engine.derive import DeriveStep
>>> from sensorstream.engine.outputs import OutputKind, Shape
>>> readings = Shape(OutputKind.STREAM, None, ("device_id",))
>>> graph = Graph.of(
...     [
...         DeriveStep("f", "c", columns=(("f", "c * 1.8 + 32"),)),
...         DeriveStep("c", "readings", columns=(("c", "temperature"),)),
...     ],
...     readings,
... )
>>> [step.name for step in graph.order]
['c', 'f']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sensorstream.engine.outputs import Shape
from sensorstream.engine.steps import READINGS, Step, StepError


@dataclass(frozen=True)
class Graph:
    """Steps in an order where every step comes after its input, with each one's shapes."""

    order: tuple[Step, ...]
    inputs: dict[str, Shape]  # step name -> the shape of what it reads
    outputs: dict[str, Shape]  # step name (and ``readings``) -> the shape of what it emits

    @staticmethod
    def of(steps: Sequence[Step], readings: Shape) -> Graph:
        """Check the steps and order them; StepError for the first one that does not fit."""
        by_name: dict[str, Step] = {}
        for step in steps:
            if step.name == READINGS:
                raise StepError(step.name, "name", f"{READINGS!r} names the input stream")
            if step.name in by_name:
                raise StepError(step.name, "name", "another step has the same name")
            by_name[step.name] = step
        for step in steps:
            if step.input != READINGS and step.input not in by_name:
                known = ", ".join([READINGS, *(s.name for s in steps if s is not step)])
                why = f"no step is called {step.input!r}; a step reads one of: {known}"
                raise StepError(step.name, "input", why)
        order: list[Step] = []
        placed: set[str] = {READINGS}
        outputs: dict[str, Shape] = {READINGS: readings}
        inputs: dict[str, Shape] = {}
        pending = list(steps)
        while pending:
            ready = [step for step in pending if step.input in placed]
            if not ready:
                cycle = _cycle(pending)
                raise StepError(
                    cycle[0],
                    "input",
                    f"the steps read each other in a circle: {' -> '.join(cycle)}",
                )
            for step in ready:
                inputs[step.name] = outputs[step.input]
                outputs[step.name] = step.output_shape(outputs[step.input])
                order.append(step)
                placed.add(step.name)
                pending.remove(step)
        return Graph(tuple(order), inputs, outputs)


def _cycle(pending: Sequence[Step]) -> list[str]:
    """One circle among steps none of which can run, as names ending where they start."""
    by_name = {step.name: step for step in pending}
    step = pending[0]
    seen: list[str] = []
    while step.name not in seen:
        seen.append(step.name)
        step = by_name[step.input]
    start = seen.index(step.name)
    return [*seen[start:], step.name]
