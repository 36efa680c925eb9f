"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

#: real instrument plates, shared next to the repository (``../shared/fixtures``), never copied into it
FIXTURES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    """The shared real-plate fixtures folder (read-only: copy into tmp_path before writing near it)."""
    if not FIXTURES_DIR.is_dir():
        pytest.skip("../shared/fixtures not present (a user's clone has none)")
    return FIXTURES_DIR
