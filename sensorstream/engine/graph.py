"""The steps of a plan as a graph: checked once, then run in an order where inputs come first.

Each step reads an input stream (``readings`` unless the pipeline names others), another
step, or (a join) a table. The graph is checked when a pipeline loads:
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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sensorstream.engine.outputs import OutputKind, Shape
from sensorstream.engine.steps import READINGS, Step, StepError


@dataclass(frozen=True)
class Graph:
    """Steps in an order where every step comes after its inputs, with each one's shapes.

    ``sources`` are what no step makes: the pipeline's streams and reference tables.
    """

    order: tuple[Step, ...]
    inputs: dict[str, Shape]  # step name -> the shape of its main input
    outputs: dict[str, Shape]  # step and source names -> the shape of what they emit
    others: dict[str, tuple[Shape, ...]] = field(default_factory=dict)  # further inputs
    sources: tuple[str, ...] = (READINGS,)

    @staticmethod
    def of(steps: Sequence[Step], sources: Shape | Mapping[str, Shape]) -> Graph:
        """Check the steps and order them; StepError for the first one that does not fit.

        ``sources`` maps each stream and table name to its shape (a lone shape is the
        ``readings`` stream).
        """
        known = {READINGS: sources} if isinstance(sources, Shape) else dict(sources)
        by_name: dict[str, Step] = {}
        for step in steps:
            if step.name in known:
                what = "table" if known[step.name].kind is OutputKind.TABLE else "stream"
                raise StepError(step.name, "name", f"{step.name!r} names an input {what}")
            if step.name in by_name:
                raise StepError(step.name, "name", "another step has the same name")
            by_name[step.name] = step
        for step in steps:
            for name in step.inputs:
                if name not in known and name not in by_name:
                    names = [*known, *(s.name for s in steps if s is not step)]
                    why = f"no step is called {name!r}; a step reads one of: {', '.join(names)}"
                    raise StepError(step.name, "input", why)
        order: list[Step] = []
        placed: set[str] = set(known)
        outputs: dict[str, Shape] = dict(known)
        inputs: dict[str, Shape] = {}
        others: dict[str, tuple[Shape, ...]] = {}
        pending = list(steps)
        while pending:
            ready = [step for step in pending if all(name in placed for name in step.inputs)]
            if not ready:
                cycle = _cycle(pending)
                raise StepError(
                    cycle[0],
                    "input",
                    f"the steps read each other in a circle: {' -> '.join(cycle)}",
                )
            for step in ready:
                shapes = tuple(outputs[name] for name in step.inputs)
                if shapes[0].kind is OutputKind.TABLE:
                    why = (
                        f"{step.input!r} is a table, which only a join reads "
                        "(join: {table: ...}); read the stream it comes from instead"
                    )
                    raise StepError(step.name, "input", why)
                inputs[step.name] = shapes[0]
                if len(shapes) > 1:
                    others[step.name] = shapes[1:]
                outputs[step.name] = step.output_shape_of(shapes)
                order.append(step)
                placed.add(step.name)
                pending.remove(step)
        return Graph(tuple(order), inputs, outputs, others, tuple(known))

    def shapes_of(self, step: Step) -> tuple[Shape, ...]:
        """The shapes of every input of ``step``, main input first."""
        return (self.inputs[step.name], *self.others.get(step.name, ()))

    def streams_of(self, name: str) -> frozenset[str]:
        """The input streams whose watermarks reach ``name`` (a step or a source).

        A step's watermark is the minimum of theirs: a join waits for its slower side.
        Reference tables carry no event time of their own, so they hold nothing back.
        """
        if name in self.sources:
            table = self.outputs[name].kind is OutputKind.TABLE
            return frozenset() if table else frozenset({name})
        step = next(step for step in self.order if step.name == name)
        found: frozenset[str] = frozenset()
        for source in step.inputs:
            found |= self.streams_of(source)
        return found


def _cycle(pending: Sequence[Step]) -> list[str]:
    """One circle among steps none of which can run, as names ending where they start."""
    by_name = {step.name: step for step in pending}
    step = pending[0]
    seen: list[str] = []
    while step.name not in seen:
        seen.append(step.name)
        step = by_name[next(name for name in step.inputs if name in by_name)]
    start = seen.index(step.name)
    return [*seen[start:], step.name]
