"""Shared pytest setup: Hypothesis profiles and fixtures every test folder can use.

The Hypothesis profile comes from ``HYPOTHESIS_PROFILE``; without it, CI (``CI=true``) runs
the thorough ``ci`` profile and a developer's machine the quicker ``dev`` one.

``postgres_dsn`` starts the throwaway PostgreSQL of ``scripts/postgres.sh`` for the session
(and stops it afterwards, unless it was already running, as after ``make services``);
``postgres_db`` gives each test a database of its own. Where PostgreSQL is not installed
their tests are skipped, except under CI, where they fail. ``browser`` is Debian's Chromium
driven by Playwright (``scripts/chromium.sh`` installs it), skipped or failed the same way;
``artifacts`` is a folder for a test's screenshots under ``test-artifacts/``.
"""

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import psycopg
import pytest
from hypothesis import settings
from psycopg import sql

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


# --- a real browser: Debian's Chromium driven by Playwright ---------------------------------
CHROMIUM = Path(os.environ.get("SENSORSTREAM_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "test-artifacts"


def _browser_unavailable(why: str) -> NoReturn:
    _unavailable(
        f"no browser for the dashboard tests: {why}; run `bash scripts/chromium.sh install`"
    )


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's, never one Playwright downloads), for the session."""
    if not CHROMIUM.exists():
        _browser_unavailable(f"{CHROMIUM} is missing")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _browser_unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        # As root (CI) Chromium refuses its sandbox; the pages are our own, on loopback.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A folder for this test's screenshots: test-artifacts/<test name>/ (CI keeps it)."""
    folder = ARTIFACTS / str(request.node.name).replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
