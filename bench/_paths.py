"""Puts the repository root on ``sys.path`` once, for the benchmarks run as ``python bench/<name>.py``.

Python puts ``bench/`` itself first on ``sys.path`` (the script's folder), so each benchmark can
``from _paths import REPO`` before it imports ``openhcs_rules`` (the working tree, installed or not) or
``openhcs_rules_testkit`` (never installed: it lives at the repository root only).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
