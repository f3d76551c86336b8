from __future__ import annotations

import io
import os
import signal
from typing import cast

import pytest
from rich.console import Console

from sensorstream.cli.execute import EarlyWarning, Interrupts
from sensorstream.runtime.counters import Counters
from sensorstream.runtime.runner import Runner


class _Runner:
    def __init__(self) -> None:
        self.stops = 0

    def stop(self) -> None:
        self.stops += 1


class _Exited(Exception):
    pass


def test_the_first_ctrl_c_stops_the_runner_and_the_second_exits_130_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exits: list[int] = []

    def exit_now(code: int) -> None:
        exits.append(code)
        raise _Exited

    monkeypatch.setattr(os, "_exit", exit_now)
    runner = _Runner()
    with Interrupts() as interrupts:
        interrupts.runner = cast(Runner, runner)
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler)
        handler(signal.SIGINT, None)
        assert (runner.stops, exits) == (1, [])
        with pytest.raises(_Exited):
            handler(signal.SIGINT, None)
    assert exits == [130]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _early(counts: list[Counters]) -> str:
    recorded = io.StringIO()
    warn = EarlyWarning(Console(file=recorded, soft_wrap=True, color_system=None), after=1000)
    for counters in counts:
        warn(counters)
    return recorded.getvalue()


def _dead(lines: int) -> Counters:
    return Counters(lines=lines, dead_letters=lines, **{"dead_letters:no_measurements": lines})


def test_a_run_whose_first_thousand_lines_are_all_dead_letters_warns_once_early() -> None:
    text = _early([_dead(500), _dead(1200), _dead(5000)])
    assert text.count("warning:") == 1
    assert "the first 1,200 lines were all dead letters" in text
    assert "still running" in text


def test_no_early_warning_once_a_reading_was_accepted() -> None:
    mixed = Counters(lines=1200, accepted=1, dead_letters=1199)
    assert _early([mixed, _dead(5000)]) == ""
