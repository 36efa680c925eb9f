"""Test data for the OMERO tests (kept apart from the fixtures module, which pytest loads as a plugin)."""

from __future__ import annotations

import numpy as np

STANDIN_PASSWORD = "s3cret-standin"


def random_fields(
    wells: list[str], sites: int = 2, shape: tuple[int, ...] = (1, 2, 3, 24, 32), seed: int = 0, dtype: str = "uint16"
) -> dict[str, list[np.ndarray]]:
    """Distinct random (t, c, z, y, x) data per field, so a mixed-up plane cannot go unnoticed."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    high = min(info.max, 60000) if info else 1.0
    out = {}
    for well in wells:
        if info:
            out[well] = [rng.integers(1, high, shape, dtype=dtype) for _ in range(sites)]
        else:
            out[well] = [rng.random(shape).astype(dtype) for _ in range(sites)]
    return out
