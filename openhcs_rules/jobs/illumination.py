"""Rule ``estimate_illumination``: one flat-field profile per channel from images spread over the plate."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from openhcs_rules.io.atomic import atomic_write_bytes
from openhcs_rules.plate.model import ImageStructure, PlateStructure

log = logging.getLogger(__name__)


def sample_images(plate: PlateStructure, channel: int, max_images: int) -> list[ImageStructure]:
    """Up to ``max_images`` planes of one channel, evenly spread over wells and sites (middle z, first t)."""
    z_planes, timepoints = plate.z_planes, plate.timepoints
    z_mid, t_first = z_planes[len(z_planes) // 2], timepoints[0]
    candidates = [i for i in plate.images() if i.key.channel == channel and i.key.t == t_first]
    preferred = [i for i in candidates if i.key.z == z_mid] or candidates
    if len(preferred) <= max_images:
        return preferred
    picks = np.linspace(0, len(preferred) - 1, max_images).round().astype(int)
    return [preferred[i] for i in sorted(set(picks.tolist()))]


def estimate_plate_illumination(plate: PlateStructure, out_npz: str | Path, max_images: int = 64) -> dict[int, np.ndarray]:
    """Estimate and save ``{channel: profile}`` (profiles have mean 1) as an .npz keyed ``channel_<n>``."""
    from openhcs_rules.formats.registry import read_plane
    from openhcs_rules.functions.illumination import estimate_illumination

    profiles: dict[int, np.ndarray] = {}
    for channel in plate.channel_indices:
        images = sample_images(plate, channel, max_images)
        log.info("channel %d: flat field from %d images", channel, len(images))
        profiles[channel] = np.asarray(estimate_illumination(read_plane(plate, i) for i in images), dtype=np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **{f"channel_{c}": p for c, p in profiles.items()})
    atomic_write_bytes(out_npz, buffer.getvalue())
    return profiles


def load_illumination(path: str | Path) -> dict[int, np.ndarray]:
    with np.load(path) as data:
        return {int(key.split("_", 1)[1]): data[key] for key in data.files}
