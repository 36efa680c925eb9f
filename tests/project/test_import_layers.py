"""The package layering in pyproject.toml ([tool.importlinter]) holds: ``lint-imports`` keeps every contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openhcs_rules_testkit.paths import REPO


def _lint_imports() -> str:
    script = Path(sys.executable).parent / "lint-imports"
    if script.exists():
        return str(script)
    found = shutil.which("lint-imports")
    if found is None:
        pytest.skip("import-linter is not installed (it is in the 'test' extra: pip install -e '.[test]')")
    return found


def test_import_contracts_are_kept() -> None:
    result = subprocess.run(
        [_lint_imports(), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "0 broken" in report, report
