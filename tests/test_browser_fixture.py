"""The browser fixtures themselves: a page renders, screenshots land, errors are collected."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.conftest import PageErrors

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Say nothing: a request per line on stderr would bury the test's output."""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """Serve a tiny page from the test's folder on loopback; return its URL."""
    (tmp_path / "index.html").write_text(
        # No favicon.ico to ask for: its 404 would be a console error.
        "<!doctype html><meta charset=utf-8><title>fixture</title><link rel=icon href='data:,'>"
        "<h1>Sensors online: 42</h1><p id=note>ümlauts and ✓ render</p>",
        encoding="utf-8",
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=tmp_path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def png_size(path: Path) -> tuple[int, int]:
    """Return a PNG's width and height, read from its IHDR chunk; fail if it is no PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_served_page_renders_its_text_and_is_screenshotted(
    page: Page, site: str, artifacts: Path, page_errors: PageErrors
) -> None:
    page.goto(site)
    assert page.title() == "fixture"
    assert page.locator("h1").inner_text() == "Sensors online: 42"
    assert page.locator("#note").inner_text() == "ümlauts and ✓ render"
    page.screenshot(path=artifacts / "overview.png")
    assert artifacts == Path(__file__).parent.parent / "test-artifacts" / (
        "test_a_served_page_renders_its_text_and_is_screenshotted"
    )
    assert png_size(artifacts / "overview.png") == (1280, 800)
    assert page_errors.messages == []


def test_the_phone_page_is_a_phone_wide(phone_page: Page, artifacts: Path) -> None:
    phone_page.goto("data:text/html,<meta name=viewport content='width=device-width'><p>hi")
    assert phone_page.evaluate("[innerWidth, innerHeight]") == [390, 844]
    assert phone_page.evaluate("matchMedia('(pointer: coarse)').matches") is True
    phone_page.screenshot(path=artifacts / "phone.png")
    assert png_size(artifacts / "phone.png") == (390, 844)


def test_script_and_console_errors_are_collected(page: Page, page_errors: PageErrors) -> None:
    page.set_content(
        "<script>console.error('no data for', 'heatmap'); console.warn('only a warning')</script>"
        "<script>throw new TypeError('view is undefined')</script>"
    )
    with page.expect_event("pageerror"):
        page.evaluate("setTimeout(() => { throw new Error('later') })")
    assert page_errors.messages == [
        "console error: no data for heatmap",
        "page error: TypeError: view is undefined",
        "page error: Error: later",
    ]


def test_asyncio_runs_in_a_test_after_the_browser_ran() -> None:
    # Playwright's sync API marks its loop as this thread's running loop between calls; the
    # fixtures unmark it after each browser test, or asyncio.run() would refuse to start here.
    assert asyncio.run(asyncio.sleep(0, result="ran")) == "ran"
