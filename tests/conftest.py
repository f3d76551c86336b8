"""Shared pytest setup: Hypothesis profiles and fixtures every test folder can use.

The Hypothesis profile comes from ``HYPOTHESIS_PROFILE``; without it, CI (``CI=true``) runs
the thorough ``ci`` profile and a developer's machine the quicker ``dev`` one.
"""

import os
from pathlib import Path

import pytest
from hypothesis import settings

# No deadline in either profile: a shared 2-core CI machine makes timings noisy, and a slow
# example is a benchmark's business, not a property test's.
settings.register_profile("ci", max_examples=200, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=50, deadline=None)


def _default_profile() -> str:
    """Return the profile to use when ``HYPOTHESIS_PROFILE`` is not set."""
    return "ci" if os.environ.get("CI", "").lower() == "true" else "dev"


settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default_profile()))


@pytest.fixture
def tmp_store(tmp_path: Path) -> Path:
    """Return the path of a DuckDB store file, not yet created, in the test's own folder."""
    return tmp_path / "store.duckdb"
