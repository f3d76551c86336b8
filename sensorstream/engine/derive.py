"""Derive and filter: new columns and a row filter from SQL expressions, over any stream.

``DeriveStep("hot", "readings", columns=(("temperature_f", "temperature * 1.8 + 32"),),
where="temperature > 30")`` adds a column and keeps the rows the condition holds for.
Expressions are parsed by Polars' SQL expression parser (``pl.sql_expr``): arithmetic,
comparisons, ``AND``/``OR``/``NOT``, ``CASE WHEN``, ``IS NULL`` and the usual functions
(``abs``, ``sqrt``, ``round``, ``coalesce``, string functions); a null in the condition
drops the row. Over another step's results, a result the condition no longer holds for
is retracted (``_op = delete``), so a consumer never keeps a row the filter would drop.

The step keeps no state and is never late: it passes each row's watermark on unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from sensorstream.engine.operator import Operator, OperatorOutput
from sensorstream.engine.outputs import DELETE, OP, UPSERT, WATERMARK, OutputKind, Shape
from sensorstream.engine.steps import Step, StepError
from sensorstream.readings import TS

if TYPE_CHECKING:
    from sensorstream.engine.time import EventTime


def parse_expression(text: str, *, step: str, field: str) -> pl.Expr:
    """An SQL expression as a Polars expression; StepError naming the field if it is not one."""
    try:
        return pl.sql_expr(text)
    except (pl.exceptions.PolarsError, ValueError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        why = f"cannot read {text!r} as an SQL expression ({detail})"
        raise StepError(step, field, why) from None


@dataclass(frozen=True)
class DeriveStep(Step):
    """New columns computed from each row, and an optional condition that keeps rows.

    >>> DeriveStep("f", "readings", columns=(("temperature_f", "temperature * 1.8 + 32"),)).key
    ()
    """

    name: str
    input: str
    columns: tuple[tuple[str, str], ...] = ()
    where: str | None = None
    key: tuple[str, ...] = field(default=(), init=False, repr=False)  # it groups nothing

    def __post_init__(self) -> None:
        if not self.columns and self.where is None:
            raise StepError(self.name, "derive", "declare new columns, a where condition, or both")
        for column, text in self.columns:
            parse_expression(text, step=self.name, field=f"derive.{column}")
        if self.where is not None:
            parse_expression(self.where, step=self.name, field="where")

    def expressions(self) -> list[pl.Expr]:
        """The new columns, named."""
        return [
            parse_expression(text, step=self.name, field=f"derive.{column}").alias(column)
            for column, text in self.columns
        ]

    def condition(self) -> pl.Expr | None:
        """Which rows to keep (a null counts as false)."""
        if self.where is None:
            return None
        return parse_expression(self.where, step=self.name, field="where").fill_null(False)

    def output_shape(self, source: Shape) -> Shape:
        """The input's shape with the new columns.

        StepError if an expression names a column the input lacks, or the input is alerts.
        """
        if source.kind is OutputKind.EVENTS:
            raise StepError(
                self.name, "input", "a derive step reads readings or results, not alerts"
            )
        named = [
            (f"derive.{column}", expr)
            for column, expr in zip((c for c, _ in self.columns), self.expressions(), strict=True)
        ]
        where = self.condition()
        if where is not None:
            named.append(("where", where))
        for where_named, expr in named:
            problem = source.missing(
                expr.meta.root_names(), what=f"the expression of {where_named}", source=self.input
            )
            if problem is not None:
                raise StepError(self.name, where_named, problem)
        if source.columns is None:
            return source
        empty = pl.DataFrame(schema=source.columns)
        try:
            typed = empty.with_columns(self.expressions()).schema
            if where is not None:
                empty.select(where)
        except pl.exceptions.PolarsError as error:
            raise StepError(self.name, "derive", str(error).splitlines()[0]) from None
        return Shape(source.kind, dict(typed), source.key, source.window)

    def build(self, source: Shape, event_time: EventTime) -> Operator:
        """The (stateless) operator."""
        del event_time
        return DeriveOperator(self, results=source.kind is OutputKind.RESULTS)


class DeriveOperator(Operator):
    """Adds the columns, then keeps (or, over results, retracts) rows by the condition."""

    def __init__(self, step: DeriveStep, *, results: bool) -> None:
        self.name = step.name
        self.expressions = step.expressions()
        self.condition = step.condition()
        self.results = results

    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Compute the columns of every row and apply the condition."""
        del watermark_after
        derived = batch.with_columns(self.expressions) if self.expressions else batch
        if self.results:
            # The observation time and watermark the task gave the results are its own.
            derived = derived.drop(TS, WATERMARK, strict=False)
        if self.condition is None:
            return OperatorOutput(rows=derived)
        if not self.results:
            return OperatorOutput(rows=derived.filter(self.condition))
        # A result the condition drops may have passed before: retract it.
        kept = pl.when(self.condition).then(pl.col(OP)).otherwise(pl.lit(DELETE))
        op = pl.when(pl.col(OP) == UPSERT).then(kept).otherwise(pl.col(OP))
        return OperatorOutput(rows=derived.with_columns(op.alias(OP)))
