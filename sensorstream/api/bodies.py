r"""Request bodies as JSON lines: gzip undone within a size limit, an array or object one line each.

The ingest endpoint takes three forms, told by the body itself and then by ``Content-Type``
(leniently: a client that mislabels NDJSON as ``application/json`` is still understood):

- a body whose first character (after white space) is ``[`` is a **JSON array**: each
  element becomes one line, its own text kept (a pretty-printed element's newlines become
  spaces, which JSON allows between tokens and forbids inside strings), so "line" ``n`` of
  the answer is the ``n``-th element;
- otherwise, unless the type says NDJSON (``application/x-ndjson``, ``application/jsonl``
  and the like), a body that is one **JSON object** is one line, however it is laid out;
- anything else is **NDJSON**, taken byte for byte: line ``n`` is the ``n``-th line.

A UTF-8 byte-order mark at the start is dropped.

>>> json_lines(b'[{"a": 1},\n {"a":\n 2}]', "application/json")
b'{"a": 1}\n{"a":  2}'
>>> json_lines(b'{\n  "a": 1\n}\n', None)
b'{   "a": 1 }'
>>> json_lines(b'{"a": 1}\n{"a": 2}\n', "application/json")
b'{"a": 1}\n{"a": 2}\n'
"""

from __future__ import annotations

import json
import zlib

__all__ = ["BodyError", "decompressed", "json_lines"]

BOM = b"\xef\xbb\xbf"
NDJSON_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
        "application/json-lines",
        "application/json-seq",
    }
)
_SPACE = " \t\r\n"
_DECODER = json.JSONDecoder()


class BodyError(Exception):
    """A body the endpoint cannot take: the HTTP status to answer and a message saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decompressed(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body with its ``Content-Encoding`` undone; at most ``limit`` bytes come out.

    Only ``gzip`` (and ``identity``) are understood. Decompression stops as soon as the
    output passes ``limit``, so a small body that inflates enormously (a zip bomb) costs no
    more than ``limit`` of memory before it is refused (413).
    """
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        return body
    if name not in ("gzip", "x-gzip"):
        msg = f"Content-Encoding {encoding!r} is not understood: send gzip or nothing"
        raise BodyError(415, msg)
    parts: list[bytes] = []
    size = 0
    rest = body
    try:
        while rest:  # a gzip stream may hold several members back to back
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            chunk = inflater.decompress(rest, limit - size + 1)
            parts.append(chunk)
            size += len(chunk)
            if size > limit or inflater.unconsumed_tail:
                raise _too_large(limit)
            if not inflater.eof:
                msg = "the gzip body ends before its end: was it cut short?"
                raise BodyError(400, msg)
            rest = inflater.unused_data
    except zlib.error as error:
        msg = f"the body is not valid gzip (Content-Encoding: gzip): {error}"
        raise BodyError(400, msg) from None
    return b"".join(parts)


def _too_large(limit: int) -> BodyError:
    return BodyError(413, f"the body decompresses to more than {limit} bytes: send less at once")


def json_lines(body: bytes, content_type: str | None) -> bytes:
    """The body as JSON lines, one reading per line; see the module for the forms."""
    body = body.removeprefix(BOM)
    start = len(body) - len(body.lstrip(_SPACE.encode()))
    first = body[start : start + 1]
    media = (content_type or "").split(";")[0].strip().lower()
    if first == b"[":
        return _array_lines(_text(body))
    if first == b"{" and media not in NDJSON_TYPES:
        whole = _one_object(body)
        if whole is not None:
            return whole
    return body


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        msg = f"the JSON array is not valid UTF-8 text (at byte {error.start})"
        raise BodyError(400, msg) from None


def _array_lines(text: str) -> bytes:
    """Each element's text, on a line of its own."""
    elements: list[str] = []
    at = _skip(text, text.index("[") + 1)
    try:
        if text.startswith("]", at):
            at += 1
        else:
            while True:
                _, end = _DECODER.raw_decode(text, at)
                elements.append(_one_line(text[at:end]))
                at = _skip(text, end)
                if text.startswith(",", at):
                    at = _skip(text, at + 1)
                elif text.startswith("]", at):
                    at += 1
                    break
                else:
                    msg = "expected ',' or ']'"
                    raise json.JSONDecodeError(msg, text, at)
    except json.JSONDecodeError as error:
        msg = (
            f"the body is not a valid JSON array: {error.msg} at line {error.lineno} column "
            f"{error.colno} (element {len(elements) + 1})"
        )
        raise BodyError(400, msg) from None
    if _skip(text, at) != len(text):
        msg = "the body holds more after its JSON array: send one array, or NDJSON"
        raise BodyError(400, msg)
    return "\n".join(elements).encode()


def _one_object(body: bytes) -> bytes | None:
    """A body that is exactly one JSON object, on one line; None if it is something else."""
    try:
        text = body.decode("utf-8")
        at = _skip(text, 0)
        _, end = _DECODER.raw_decode(text, at)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # each line will be judged on its own
    if _skip(text, end) != len(text):
        return None  # more after it: NDJSON sent as application/json
    return _one_line(text[at:end]).encode()


def _one_line(element: str) -> str:
    # A raw newline can only lie between tokens (strings must escape theirs), where a
    # space means the same.
    return element.replace("\r", " ").replace("\n", " ")


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _SPACE:
        at += 1
    return at
