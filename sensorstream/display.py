r"""Printing what came from data on a terminal, safely: no markup, no control characters.

Device ids, tags, reasons, raw payloads, file names and query cells are data: a device
that calls itself ``[link=https://evil]x[/link]`` or ``\x1b[2J`` must print as exactly
that, not as a link or a cleared screen. So data is never given to Rich as a string (Rich
parses strings as markup and emoji codes), only as a :class:`~rich.text.Text`, and every
character a terminal would act on or not show is replaced by a visible escape in Python's
notation: C0 and C1 controls (``\x1b``, ``\x9b``), DEL, the bidirectional overrides
(``\u202e``), zero-width and other format characters, line and paragraph separators,
non-breaking and other unusual spaces, private-use, unassigned and surrogate code points:
everything :meth:`str.isprintable` calls unprintable except the plain space.

A backslash is left as it is, so text that already reads ``\x1b`` looks like an escaped
ESC: this is for reading, not a reversible encoding.

>>> visible("dev-1\x1b[2J")
'dev-1\\x1b[2J'
>>> safe_text("[bold red]x[/bold red]").plain
'[bold red]x[/bold red]'
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text


def visible(text: str) -> str:
    r"""``text`` with every unprintable character but the space as a visible escape.

    >>> visible("a\tb\u202ec")
    'a\\tb\\u202ec'
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def visible_bytes(data: bytes) -> str:
    r"""Bytes as UTF-8 text, with invalid bytes as ``\xNN`` and unprintable characters escaped.

    >>> visible_bytes(b"ok \xff\x07")
    'ok \\xff\\x07'
    """
    return visible(data.decode("utf-8", "backslashreplace"))


def visible_lines(text: str) -> str:
    """Like :func:`visible`, but line breaks stay: for messages of several lines."""
    return "\n".join(visible(line) for line in text.split("\n"))


def safe_text(value: object, style: str | Style | None = None) -> Text:
    """A Rich text of ``value`` that prints literally: no markup, controls escaped.

    Bytes are decoded as by :func:`visible_bytes`; anything else is shown as ``str(value)``.
    """
    shown = visible_bytes(value) if isinstance(value, bytes) else visible(str(value))
    return Text(shown, style=style or "")


def _escape(char: str) -> str:
    code = ord(char)
    if char in _SHORT:
        return _SHORT[char]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
