"""Shared checks for the processing functions: every step takes and returns a 3D ``(n, y, x)`` stack.

Kept private so the public modules stay one job each; the checks live here once so every function gives
the same error for the same mistake.
"""

from __future__ import annotations

from typing import Any

from openhcs_rules.core.arrays import modules_for


def require_stack(stack: Any, what: str = "stack") -> Any:
    """Return ``stack`` unchanged when it is 3D; otherwise raise a ValueError that says how to fix it."""
    ndim = getattr(stack, "ndim", None)
    if ndim != 3:
        shape = getattr(stack, "shape", None)
        raise ValueError(
            f"{what} must be a 3D array (n, y, x); got shape {shape}. "
            "Wrap a single 2D image as image[None] to make a one-plane stack."
        )
    return stack


def as_float32(array: Any) -> Any:
    """float32 view/copy in the array's own memory (no copy when it already is float32)."""
    xp, _ = modules_for(array)
    return xp.asarray(array, dtype=xp.float32)
