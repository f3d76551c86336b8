"""Shared pytest setup: Hypothesis profiles and fixtures every test folder can use.

The Hypothesis profile comes from ``HYPOTHESIS_PROFILE``; without it, CI (``CI=true``) runs
the thorough ``ci`` profile and a developer's machine the quicker ``dev`` one.

``postgres_dsn`` starts the throwaway PostgreSQL of ``scripts/postgres.sh`` for the session
(and stops it afterwards, unless it was already running, as after ``make services``);
``postgres_db`` gives each test a database of its own. Where PostgreSQL is not installed
their tests are skipped, except under CI, where they fail.

``mosquitto`` and ``kafka`` are the real brokers of ``scripts/mosquitto.sh`` and
``scripts/kafka.sh``, started for the session the same way (``tests/brokers.py`` describes
them: ``MqttBroker`` and ``KafkaBroker``); tests that use them are marked ``mqtt`` and ``kafka``.

``browser`` is Debian's headless Chromium driven by Playwright's sync API (``scripts/chromium.sh``
installs it), launched once per session and skipped or failed the same way; tests that use it
are marked ``browser``. ``page`` (1280x800) and ``phone_page`` (390x844) are pages in contexts
of their own, closed after the test; ``new_page(width, height, **context)`` opens others.
``page_errors`` collects their script and console errors; ``artifacts`` is an empty folder for
the test's screenshots, ``test-artifacts/<test name>/``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol
from urllib.parse import urlsplit

import psycopg
import pytest
from hypothesis import settings
from psycopg import sql

from tests.brokers import (
    KAFKA_SCRIPT,
    MOSQUITTO_SCRIPT,
    KafkaBroker,
    MqttBroker,
    run_script,
    script_complaint,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Error, Page

REPO = Path(__file__).resolve().parent.parent
POSTGRES_SCRIPT = REPO / "scripts" / "postgres.sh"
# initdb and the first start take a few seconds; a loaded CI machine, several times that.
_SCRIPT_TIMEOUT_S = 180

# No deadline in either profile: a shared 2-core CI machine makes timings noisy, and a slow
# example is a benchmark's business, not a property test's.
settings.register_profile("ci", max_examples=200, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=50, deadline=None)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _default_profile() -> str:
    """Return the profile to use when ``HYPOTHESIS_PROFILE`` is not set."""
    return "ci" if _in_ci() else "dev"


settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default_profile()))


@pytest.fixture
def tmp_store(tmp_path: Path) -> Path:
    """Return the path of a DuckDB store file, not yet created, in the test's own folder."""
    return tmp_path / "store.duckdb"


def postgres_script(command: str) -> subprocess.CompletedProcess[str]:
    """Run ``bash scripts/postgres.sh COMMAND``; its stdout is the DSN, its stderr the story."""
    return subprocess.run(
        ["bash", str(POSTGRES_SCRIPT), command],
        capture_output=True,
        text=True,
        timeout=_SCRIPT_TIMEOUT_S,
        check=False,
    )


def _unavailable(reason: str) -> NoReturn:
    """Skip a test whose service is missing, saying why; under CI, fail it."""
    if _in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def _postgres_unavailable(why: str) -> NoReturn:
    _unavailable(f"PostgreSQL not available: {why}; run `bash scripts/postgres.sh install`")


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """Return the DSN of the throwaway PostgreSQL, started (if it is not running) for the session.

    Tests must not change its ``postgres`` database: take one of their own (``postgres_db``).
    """
    try:
        was_running = postgres_script("status").returncode == 0
        started = postgres_script("start")
    except (OSError, subprocess.TimeoutExpired) as error:
        _postgres_unavailable(f"scripts/postgres.sh could not run ({error})")
    if started.returncode != 0:
        lines = started.stderr.strip().splitlines() or [f"exit code {started.returncode}"]
        _postgres_unavailable(lines[-1].removeprefix("postgres.sh: error: "))
    yield started.stdout.strip().splitlines()[-1]
    if not was_running:
        postgres_script("stop")


@pytest.fixture
def postgres_db(postgres_dsn: str) -> Iterator[str]:
    """Return the DSN of a new, empty database for this test alone; it is dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(postgres_dsn)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as connection:
            # FORCE: a source's background connection may still be open.
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            connection.execute(drop.format(sql.Identifier(name)))


# --- markers: a service's tests, marked by the fixture they use ----------------------------
# Directly or through another fixture (``page`` uses ``browser``).
_MARKERS_BY_FIXTURE = {
    "browser": pytest.mark.browser,
    "mosquitto": pytest.mark.mqtt,
    "kafka": pytest.mark.kafka,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use ``browser`` (``page`` too), ``mosquitto`` or ``kafka``.

    So ``-m 'not browser'``, ``-m 'not kafka'`` and the like leave out a service's tests.
    """
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for fixture, marker in _MARKERS_BY_FIXTURE.items():
            if fixture in fixtures:
                item.add_marker(marker)


# --- real message brokers: Mosquitto and Kafka ------------------------------------------------


def _started_broker(script: Path, service: str) -> tuple[str, bool]:
    """Start the broker of ``script`` if it is not running; return its address and whether it ran.

    Skips (fails, under CI) the test when the script cannot start it, saying how to install it.
    """

    def unavailable(why: str) -> NoReturn:
        # The script's complaint may name its fix already (install, or a port to set).
        fix = "" if "scripts/" in why else f"; run `bash scripts/{script.name} install`"
        _unavailable(f"{service} not available: {why}{fix}")

    try:
        was_running = run_script(script, "status").returncode == 0
        started = run_script(script, "start")
    except (OSError, subprocess.TimeoutExpired) as error:
        unavailable(f"scripts/{script.name} could not run ({error})")
    if started.returncode != 0:
        unavailable(script_complaint(started))
    return started.stdout.strip().splitlines()[-1], was_running


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MqttBroker]:
    """Return the Mosquitto of scripts/mosquitto.sh, started (if it is not running) for the session.

    Topics are shared by every test: take ones of your own (a uuid in them).
    """
    url, was_running = _started_broker(MOSQUITTO_SCRIPT, "Mosquitto")
    yield MqttBroker.from_url(url)
    if not was_running:
        run_script(MOSQUITTO_SCRIPT, "stop")


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    """Return the Kafka of scripts/kafka.sh, started (if it is not running) for the session.

    Take topics of your own from ``kafka.create_topic()``.
    """
    bootstrap, was_running = _started_broker(KAFKA_SCRIPT, "Kafka")
    yield KafkaBroker(bootstrap)
    if not was_running:
        run_script(KAFKA_SCRIPT, "stop")


# --- a real browser: Debian's Chromium driven by Playwright ---------------------------------
# Playwright is imported only where a browser test needs it: without it (a laptop that skipped
# the dev extras) the rest of the suite still runs, and the browser tests skip.
CHROMIUM = Path(os.environ.get("SENSORSTREAM_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "test-artifacts"
DESKTOP = (1280, 800)
PHONE = (390, 844)


def _browser_unavailable(why: str, fix: str = "bash scripts/chromium.sh install") -> NoReturn:
    _unavailable(f"no browser for the dashboard tests: {why}; run `{fix}`")


def _no_loop_running() -> None:
    """Fail the test if an asyncio loop runs in this thread: Playwright's sync API refuses it."""
    if asyncio.events._get_running_loop() is not None:
        pytest.fail(
            "an asyncio event loop is running in this thread (an async test or fixture?), "
            "and Playwright's sync API cannot run inside one: use the browser from a plain test"
        )


@dataclass(frozen=True)
class _Chromium:
    browser: Browser
    # Playwright's own event loop. Between its sync calls Playwright leaves it marked as this
    # thread's running loop, which would make asyncio.run() fail in every later test; so it is
    # marked running only while a test holds the browser fixture.
    loop: asyncio.AbstractEventLoop | None


@pytest.fixture(scope="session")
def _chromium() -> Iterator[_Chromium]:
    """Launch headless Chromium once for the session: Debian's, never one Playwright downloads."""
    if not CHROMIUM.exists():
        _browser_unavailable(f"{CHROMIUM} is missing")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        _browser_unavailable("playwright is not installed", fix="pip install -e '.[dev]'")
    _no_loop_running()
    with sync_playwright() as playwright:
        try:
            # No extra arguments: Playwright already passes --headless, --no-sandbox (which
            # Chromium needs as root, as in CI) and --disable-dev-shm-usage.
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        except PlaywrightError as error:
            why = f"{CHROMIUM} did not start ({str(error).splitlines()[0]})"
            _browser_unavailable(why, fix="bash scripts/chromium.sh check")
        loop = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(None)
        try:
            yield _Chromium(launched, loop)
        finally:
            asyncio.events._set_running_loop(loop)
            launched.close()


@pytest.fixture
def browser(_chromium: _Chromium) -> Iterator[Browser]:
    """Return the session's headless Chromium (launched once), for this test.

    A test that opens its own contexts closes them; ``page`` and ``new_page`` do that for you.
    """
    _no_loop_running()
    asyncio.events._set_running_loop(_chromium.loop)
    try:
        yield _chromium.browser
    finally:
        asyncio.events._set_running_loop(None)


@dataclass
class PageErrors:
    """The script errors and console errors of the pages a test watches, to assert there were none.

    ``page``, ``phone_page`` and ``new_page`` watch their pages; a page from a context of the
    test's own is watched with ``page_errors.watch(page)``. Then ``assert page_errors.messages
    == []`` names every error in the failure.
    """

    messages: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        """Collect ``page``'s uncaught exceptions and ``console.error`` lines; return it."""
        page.on("pageerror", self._page_error)
        page.on("console", self._console)
        return page

    def _page_error(self, error: Error) -> None:
        self.messages.append(f"page error: {error.name}: {error.message}")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        # A failed request is a console error too ("Failed to load resource"), located at the
        # resource: the URL says what failed. An inline script's line has no URL.
        where = message.location["url"]
        self.messages.append(f"console error: {message.text}" + (f" ({where})" if where else ""))


@pytest.fixture
def page_errors() -> PageErrors:
    """Return the collector of this test's browser errors (see ``PageErrors``)."""
    return PageErrors()


class NewPage(Protocol):
    """Opens a page in a new browser context of the given viewport; see ``new_page``."""

    def __call__(self, width: int = DESKTOP[0], height: int = DESKTOP[1], **context: Any) -> Page:
        """Return a watched page; ``context`` goes to ``Browser.new_context`` as it is."""
        ...


@pytest.fixture
def new_page(browser: Browser, page_errors: PageErrors) -> Iterator[NewPage]:
    """Return an opener of pages, each in a context of its own, all closed after the test.

    For a viewport or context options that ``page`` and ``phone_page`` lack, as in
    ``new_page(1920, 1080, bypass_csp=True)``.
    """
    contexts: list[BrowserContext] = []

    def opened(width: int = DESKTOP[0], height: int = DESKTOP[1], **context: Any) -> Page:
        contexts.append(browser.new_context(viewport={"width": width, "height": height}, **context))
        return page_errors.watch(contexts[-1].new_page())

    yield opened
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: NewPage) -> Page:
    """Return a page at a laptop's 1280x800, in a context of its own, closed after the test."""
    return new_page(*DESKTOP)


@pytest.fixture
def phone_page(new_page: NewPage) -> Page:
    """Return a page at a phone's 390x844 (touch, mobile viewport), closed after the test."""
    return new_page(*PHONE, is_mobile=True, has_touch=True)


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """Return an empty folder for this test's screenshots: test-artifacts/<test name>/.

    Emptied first, so every screenshot in it is from this run.
    """
    folder = ARTIFACTS / re.sub(r"[^\w.-]+", "_", str(request.node.name))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
