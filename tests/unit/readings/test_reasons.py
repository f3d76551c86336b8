from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sensorstream.readings import REASONS, dead_letters

DOCS = Path(__file__).parents[3] / "docs" / "inputs.md"


def test_every_reason_code_is_documented_with_its_meaning() -> None:
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", DOCS.read_text(), re.MULTILINE))
    assert set(REASONS) <= documented, sorted(set(REASONS) - documented)


def test_codes_are_plain_snake_case_names() -> None:
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", code) for code in REASONS)


def test_a_dead_letter_with_an_undocumented_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match=r"not in sensorstream\.readings\.reasons"):
        dead_letters([b"x"], ["made_up"], ["?"], ["line 1"], datetime(2024, 1, 1, tzinfo=UTC))
