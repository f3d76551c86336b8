from __future__ import annotations

import io

import pytest
from rich.console import Console

from sensorstream.display import safe_text, visible, visible_bytes, visible_lines


def _on_a_terminal(value: object) -> str:
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=200)
    console.print(safe_text(value))
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def test_printable_text_is_left_as_it_is() -> None:
    text = "dev-0001 Küche 温度 🌡 [not markup] a\\b"
    assert visible(text) == text


@pytest.mark.parametrize(
    ("char", "shown"),
    [
        ("\x1b", "\\x1b"),  # ESC: starts every ANSI sequence
        ("\x07", "\\x07"),  # BEL: ends OSC 8 hyperlinks
        ("\x7f", "\\x7f"),  # DEL
        ("\x9b", "\\x9b"),  # C1 CSI: an ANSI sequence in one character
        ("\t", "\\t"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\u202e", "\\u202e"),  # right-to-left override
        ("\u2066", "\\u2066"),  # left-to-right isolate
        ("\u200b", "\\u200b"),  # zero-width space
        ("\u2028", "\\u2028"),  # line separator
        ("\xa0", "\\xa0"),  # no-break space: looks like a space, is not one
        ("\ufeff", "\\ufeff"),  # byte order mark
        ("\U000e0001", "\\U000e0001"),  # language tag
        ("\ud800", "\\ud800"),  # a lone surrogate
    ],
)
def test_controls_and_invisible_characters_become_visible_escapes(char: str, shown: str) -> None:
    assert visible(f"a{char}b") == f"a{shown}b"


def test_invalid_utf8_bytes_show_as_hex_escapes() -> None:
    assert visible_bytes(b"ok\xff\xfe \x1b[31m") == "ok\\xff\\xfe \\x1b[31m"


def test_messages_keep_their_line_breaks_but_nothing_else() -> None:
    assert visible_lines("first\nsecond\x1b[2J") == "first\nsecond\\x1b[2J"


def test_markup_prints_literally_and_no_sequence_from_the_data_reaches_the_terminal() -> None:
    hostile = "[bold red]X[/bold red] [link=https://evil.example]click[/link] :smile: \x1b[2J"
    printed = _on_a_terminal(hostile)
    assert "[bold red]X[/bold red] [link=https://evil.example]click[/link] :smile:" in printed
    assert "\x1b[2J" not in printed
    assert "\x1b]8;" not in printed  # no hyperlink
    assert "\x1b[1" not in printed  # no bold


def test_bytes_are_decoded_not_shown_as_a_python_literal() -> None:
    assert safe_text(b"raw \x00").plain == "raw \\x00"
    assert safe_text(12.5).plain == "12.5"
