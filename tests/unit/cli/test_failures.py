from __future__ import annotations

import io

import pytest
import typer
from pydantic import BaseModel, Field, ValidationError
from rich.console import Console

from sensorstream.cli import failures
from sensorstream.cli.failures import ExitCode, Option, friendly_errors
from sensorstream.errors import SourceError


class _Settings(BaseModel):
    speed: float = Field(gt=0)


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    recorded = io.StringIO()
    console = Console(file=recorded, width=40, soft_wrap=True, color_system=None)
    monkeypatch.setattr(failures, "errors", console)
    return recorded


def _exit_code(error: BaseException, options: dict[str, Option] | None = None) -> int:
    with pytest.raises(typer.Exit) as exited, friendly_errors(options):
        raise error
    return exited.value.exit_code


def test_a_sensorstream_error_is_one_unwrapped_line_and_exit_2(stderr: io.StringIO) -> None:
    message = "cannot read a/very/long/path/that/goes/on/and/on/readings.ndjson: no such file"
    assert _exit_code(SourceError(message)) == ExitCode.BAD_INPUT
    assert stderr.getvalue() == f"error: {message}\n"


def test_the_error_line_shows_data_in_it_literally(stderr: io.StringIO) -> None:
    _exit_code(SourceError("cannot read [red]x\x1b[2J.ndjson"))
    assert stderr.getvalue() == "error: cannot read [red]x\\x1b[2J.ndjson\n"


def _validation_error(speed: float) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        _Settings(speed=speed)
    return raised.value


def test_a_settings_error_names_the_option_it_came_from(stderr: io.StringIO) -> None:
    error = _validation_error(0)
    assert _exit_code(error, {"speed": Option("--speed", "0")}) == ExitCode.BAD_INPUT
    assert stderr.getvalue() == "error: --speed 0: input should be greater than 0\n"


def test_a_settings_error_from_no_option_names_the_field(stderr: io.StringIO) -> None:
    _exit_code(_validation_error(-1))
    assert stderr.getvalue() == "error: speed: input should be greater than 0 (got -1)\n"


def test_a_missing_path_is_an_error_line_not_a_traceback(stderr: io.StringIO) -> None:
    assert _exit_code(FileNotFoundError(2, "No such file or directory", "x.yaml")) == 2
    assert stderr.getvalue() == "error: x.yaml: No such file or directory\n"


def test_ctrl_c_exits_130(stderr: io.StringIO) -> None:
    assert _exit_code(KeyboardInterrupt()) == ExitCode.INTERRUPTED


def test_a_bug_still_shows_its_traceback() -> None:
    with pytest.raises(ZeroDivisionError), friendly_errors():
        _ = 1 / 0
