"""How a command fails: its exit codes, and one ``error:`` line for every bad value or path.

A bad option, a missing file, an invalid pipeline or unreadable input is the user's to fix,
so it gets one line on stderr saying what is wrong, where, and how to fix it, and exit code
2, never a traceback. Only an unexpected exception (a bug) still shows one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.text import Text

from sensorstream.display import visible, visible_lines
from sensorstream.errors import SensorstreamError

if TYPE_CHECKING:
    from pydantic import ValidationError


class ExitCode(IntEnum):
    """What the shell sees; the ``--help`` epilog and the README list the same."""

    OK = 0
    NOTHING_ACCEPTED = 1  # the pipeline ran, but not one reading was accepted
    BAD_INPUT = 2  # bad usage, pipeline definition or input: the error line says which
    INTERRUPTED = 130  # Ctrl-C, as shells expect (128 + SIGINT)


EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 the pipeline ran but accepted no reading; "
    "2 bad usage, pipeline or input (one error: line says what to fix); 130 interrupted."
)

# Errors and warnings: never wrapped (an error is one line, even when piped), never markup.
errors = Console(stderr=True, soft_wrap=True, highlight=False)


@dataclass(frozen=True)
class Option:
    """A command-line option as the user gave it, to name it when a setting rejects it."""

    flag: str
    value: object


def error_line(message: str) -> Text:
    """``error: <message>``, the message shown literally with control characters escaped."""
    return Text.assemble(("error:", "bold red"), " ", visible_lines(message))


def fail(message: str, code: ExitCode = ExitCode.BAD_INPUT) -> typer.Exit:
    """Print the error line; returns the exit for the caller to raise."""
    errors.print(error_line(message))
    return typer.Exit(code)


@contextmanager
def friendly_errors(options: Mapping[str, Option] | None = None) -> Iterator[None]:
    """Turn what the user can fix into one ``error:`` line and exit 2; Ctrl-C into exit 130.

    ``options`` maps the name of a settings field (as Pydantic reports it) to the option
    it came from, so ``--speed 0`` fails as ``error: --speed 0: ...`` rather than as a
    Pydantic report about ``source.file.speed``.
    """
    try:
        yield
    except SensorstreamError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        errors.print(Text("interrupted", style="yellow"))
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except BrokenPipeError:
        raise  # the reader went away (`| head`): Typer exits quietly
    except OSError as error:
        raise fail(_os_problem(error)) from None
    except Exception as error:
        pydantic = sys.modules.get("pydantic")  # not loaded: cannot be a ValidationError
        if pydantic is None or not isinstance(error, pydantic.ValidationError):
            raise
        raise fail(explain_validation(error, options or {})) from None


def explain_validation(error: ValidationError, options: Mapping[str, Option]) -> str:
    """The first problem Pydantic found, named by the option it came from when known.

    >>> from pydantic import BaseModel, Field
    >>> class Settings(BaseModel):
    ...     speed: float = Field(gt=0)
    >>> try:
    ...     Settings(speed=0)
    ... except Exception as error:
    ...     print(explain_validation(error, {"speed": Option("--speed", "0")}))
    --speed 0: input should be greater than 0
    """
    first = error.errors()[0]
    location = tuple(first["loc"])
    message = _sentence_case(first["msg"].removeprefix("Value error, "))
    for part in reversed(location):
        if isinstance(part, str) and part in options:
            option = options[part]
            return f"{option.flag} {visible(str(option.value))}: {message}"
    where = ".".join(str(part) for part in location) or "settings"
    return f"{where}: {message} (got {first.get('input')!r})"


def _sentence_case(text: str) -> str:
    """Pydantic's "Input should be ..." reads as the rest of a sentence after a colon."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _os_problem(error: OSError) -> str:
    what = error.strerror or type(error).__name__
    if error.filename is not None:
        return f"{error.filename}: {what}"
    return what
