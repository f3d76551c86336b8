"""What the commands that run a pipeline share: the console, running it, and its ending.

:func:`execute_spec` runs a pipeline spec with progress and Ctrl-C handling
(:mod:`~sensorstream.cli.execute`); :func:`finish` prints the summary, says where the
results are and exits with the outcome's code; :func:`duration_option` reads a duration
option, failing with the option's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.text import Text

from sensorstream.cli.failures import ExitCode, errors
from sensorstream.cli.paths import DEFAULT_DB
from sensorstream.display import safe_text
from sensorstream.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from contextlib import AbstractContextManager
    from datetime import timedelta

    from sensorstream.cli.summary import Outcome
    from sensorstream.pipeline.spec import PipelineSpec
    from sensorstream.sources.base import Source

__all__ = ["console", "duration_option", "execute_spec", "finish"]

console = Console(highlight=False, soft_wrap=True)


def execute_spec(
    spec: PipelineSpec,
    *,
    fresh: bool,
    progress: bool,
    open_page: bool = False,
    sources: Mapping[str, Source] | None = None,
    beside: AbstractContextManager[object] | None = None,
) -> Outcome:
    """Run a pipeline to its end (or Ctrl-C), with progress if asked, and say how it went.

    ``sources`` and ``beside`` are :func:`~sensorstream.cli.execute.execute`'s.
    """
    from sensorstream.cli.execute import execute

    return execute(
        spec,
        fresh=fresh,
        progress=progress,
        console=console,
        errors=errors,
        open_page=open_page,
        sources=sources,
        beside=beside,
    )


def finish(outcome: Outcome) -> None:
    """Report the outcome, say where its results are, and exit with its code."""
    from sensorstream.cli.summary import report

    code = report(outcome, console, errors)
    where = Text.assemble(
        "pipeline ",
        safe_text(outcome.pipeline, "bold"),
        ": checkpoint in ",
        safe_text(outcome.checkpoint_dir),
    )
    if outcome.stores:
        store = outcome.stores[0]
        db = "" if store == DEFAULT_DB else f" --db {store}"
        where.append("; its results: ")
        where.append(safe_text(f"sensorstream query --pipeline {outcome.pipeline}{db}"))
    console.print(where)
    if code != ExitCode.OK:
        raise typer.Exit(code)


def duration_option(flag: str, text: str) -> timedelta:
    """A duration option's value; a bad one fails naming the option."""
    from sensorstream.durations import parse_duration

    try:
        return parse_duration(text)
    except ConfigError as error:
        msg = f"{flag} {text}: {error}"
        raise ConfigError(msg) from None
