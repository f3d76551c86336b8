"""Running a pipeline from the command line: progress, Ctrl-C, and an early warning.

The first Ctrl-C asks the runner to stop after the current batch: it checkpoints, the
summary prints, and the command exits 130. A second Ctrl-C exits 130 at once, without the
summary; the last checkpoint stays valid (recovery is exact even after ``kill -9``), so
the next run resumes from it.

A live pipeline may run for hours, so it does not wait for its summary to say that its
input is all dead letters: if the first :data:`EARLY_CHECK_LINES` lines were, it warns
once, there and then.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import webbrowser
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.text import Text

from sensorstream.cli.failures import ExitCode
from sensorstream.cli.summary import Outcome, dead_letter_warning
from sensorstream.display import safe_text
from sensorstream.errors import ConfigError

if TYPE_CHECKING:
    from sensorstream.pipeline.spec import PipelineSpec
    from sensorstream.runtime.counters import Counters
    from sensorstream.runtime.runner import Runner
    from sensorstream.sources.base import Source, SourceBatch

# What signal.signal returns and takes back.
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
EARLY_CHECK_LINES = 1_000  # lines with content after which the early warning is decided


class EarlyWarning:
    """Warns once, as soon as the first lines with content turn out all dead letters."""

    def __init__(self, errors: Console, after: int = EARLY_CHECK_LINES) -> None:
        self.errors = errors
        self.after = after
        self.decided = False

    def __call__(self, counters: Counters) -> None:
        """Look at the counts so far; decide (and maybe warn) once enough lines came in."""
        if self.decided:
            return
        payloads = counters.get("lines") - counters.get("blank")
        if payloads < self.after:
            return
        self.decided = True
        if counters.get("dead_letters") == payloads:
            warning = dead_letter_warning(counters, early=True)
            if warning is not None:
                self.errors.print(warning)


class Stoppable(Protocol):
    """What a first Ctrl-C stops: a runner, or several (``demo all``)."""

    def stop(self) -> None:
        """Ask it to checkpoint and return after the current batch."""


class Interrupts:
    """While active: the first SIGINT stops the runner cleanly, the second exits 130 at once."""

    def __init__(self) -> None:
        self.runner: Stoppable | None = None
        self.count = 0
        self._previous: Handler = signal.SIG_DFL

    def __enter__(self) -> Interrupts:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self.count += 1
        if self.count == 1 and self.runner is not None:
            self.runner.stop()
            _say("\nstopping at the next checkpoint (Ctrl-C again to quit at once)\n")
            return
        # Not print(): the main thread may be inside a write to the same stream.
        _say("\ninterrupted: quitting now; the last checkpoint is kept\n")
        if sys.stdout.isatty():
            os.write(sys.stdout.fileno(), b"\x1b[?25h")  # a progress bar hid the cursor
        os._exit(ExitCode.INTERRUPTED)


def execute(
    spec: PipelineSpec,
    *,
    fresh: bool,
    progress: bool,
    console: Console,
    errors: Console,
    open_page: bool = False,
    sources: Mapping[str, Source] | None = None,
    beside: AbstractContextManager[object] | None = None,
) -> Outcome:
    """Run ``spec`` to the end of its source, or until Ctrl-C; returns how it went.

    The pipeline's API is served while it runs, as its ``api:`` section says, with the
    dashboard at its root (opened in a browser with ``open_page``). ``sources`` replace
    streams' sources by name; ``beside`` is entered once the runner is made, just before
    it runs, and left when it ends (what feeds it from outside: a scenario's publisher).
    """
    from sensorstream.runtime.runner import Runner
    from sensorstream.sinks import DuckDBSinkSettings

    warn_early = EarlyWarning(errors)
    with Interrupts() as interrupts:
        if not progress:
            runner = Runner(
                spec,
                sources=sources,
                fresh=fresh,
                on_batch=lambda _, counters: warn_early(counters),
            )
            interrupts.runner = runner
            with _serving(runner, errors, open_page), beside or contextlib.nullcontext():
                summary = runner.run()
        else:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            with Progress(
                TextColumn("{task.description}", style="bold", markup=False),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[readings]:>12,} readings"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            ) as bar:
                task_id = bar.add_task(spec.name, total=None, readings=0)

                def advance(item: SourceBatch, counters: Counters) -> None:
                    bar.update(
                        task_id,
                        # A compressed file's progress is in its stored bytes.
                        completed=item.done if item.done is not None else item.position,
                        total=item.total,
                        readings=counters.get("lines"),
                    )
                    warn_early(counters)

                runner = Runner(spec, sources=sources, fresh=fresh, on_batch=advance)
                interrupts.runner = runner
                with _serving(runner, errors, open_page), beside or contextlib.nullcontext():
                    summary = runner.run()
    return Outcome(
        summary=summary,
        pipeline=spec.name,
        steps=tuple(step.name for step in spec.steps),
        checkpoint_dir=runner.checkpoints.folder,
        stores=tuple(s.path for s in spec.sinks if isinstance(s, DuckDBSinkSettings)),
        interrupted=interrupts.count > 0,
        fresh=fresh,
    )


@contextlib.contextmanager
def _serving(runner: Runner, errors: Console, open_page: bool = False) -> Iterator[None]:
    """Serve the pipeline's API while the body runs.

    A busy port is a warning, unless a stream takes its posts there: then it is an error.
    """
    from sensorstream.runtime.serving import PipelineServer, check_served, ingest_paths

    api = runner.spec.api
    check_served(runner, api.serve)
    if not api.serve:
        yield
        return
    try:
        server = PipelineServer(runner).start()
    except OSError as error:
        why = f"cannot serve the API on {api.host}:{api.port} ({error.strerror or error})"
        if taking := ", ".join(ingest_paths(runner)):
            msg = f"{why}, where stream {taking} takes its posts: choose another --port"
            raise ConfigError(msg) from error
        errors.print(
            Text.assemble(
                ("warning: ", "bold yellow"),
                f"{why}; the pipeline runs without it (choose another --port, or --no-serve)",
            )
        )
        yield
        return
    errors.print(Text.assemble(("Dashboard: ", "bold green"), safe_text(server.url + "/")))
    errors.print(
        Text.assemble(("API: ", "bold"), safe_text(server.url), " (OpenAPI docs at /docs)")
    )
    if open_page and has_display():  # never a text browser taking over the terminal
        webbrowser.open(server.url + "/")
    for stream, path in server.ingest.items():
        errors.print(
            Text.assemble(
                ("Ingest: ", "bold"),
                "POST ",
                safe_text(server.url + path),
                " (",
                safe_text(stream),
                ")",
            )
        )
    try:
        yield
    finally:
        server.close()


def has_display() -> bool:
    """Whether a graphical browser can open here (macOS, Windows, or a Linux desktop)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _say(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # no real stderr (a test captures it)
        os.write(sys.stderr.fileno(), text.encode())
