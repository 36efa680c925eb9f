"""The package and the test kit type-check: mypy, configured by ``[tool.mypy]`` in pyproject.toml, finds no error."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from openhcs_rules_testkit.paths import REPO


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (it comes with the test extra: pip install '.[test]')",
)
def test_package_is_mypy_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"), "--no-error-summary"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        pytest.fail(f"mypy found type errors (config: [tool.mypy] in pyproject.toml):\n{report}", pytrace=False)
