"""The golden cases' one option: ``pytest tests/golden --update-golden`` rewrites expected files."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--update-golden`` (only when tests/golden is on the command line)."""
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="write each golden case's expected.ndjson (or expected_error.txt) from the actual "
        "run instead of comparing; check every rewritten file by hand before committing it",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Whether to rewrite expected files instead of comparing against them."""
    return bool(request.config.getoption("--update-golden", default=False))
