"""Rule ``estimate_illumination``: one flat-field profile per channel from images spread over the plate."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from openhcs_rules.core.files import atomic_write_bytes
from openhcs_rules.errors import ImageReadError
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


def _readable(plate: PlateStructure, images: list[ImageStructure], read_plane: Any) -> Iterator[np.ndarray]:
    """Planes of the sample that can be read; an unreadable one is skipped with a warning naming it.

    The flat field is a statistic over many images, so one corrupt file must not stop the plate: the
    well that owns the file fails on its own, with the same message, in its process_wells job.
    """
    for image in images:
        try:
            yield read_plane(plate, image)
        except ImageReadError as exc:
            log.warning("skipped for the flat field: %s", exc)


#: fewer images than this per channel give no reliable flat field (objects do not average out)
MIN_IMAGES_FOR_FLAT_FIELD = 8


def estimate_plate_illumination(
    plate: PlateStructure, out_npz: str | Path, max_images: int = 64, min_images: int = MIN_IMAGES_FOR_FLAT_FIELD
) -> dict[int, np.ndarray]:
    """Estimate and save ``{channel: profile}`` (profiles have mean 1) as an .npz keyed ``channel_<n>``."""
    from openhcs_rules.functions.illumination import estimate_illumination
    from openhcs_rules.io.registry import backend_for

    backend = backend_for(plate)  # planes are read through the plate's backend, like the well jobs'
    read_plane = backend.load_plane
    profiles: dict[int, np.ndarray] = {}
    for channel in plate.channel_indices:
        images = sample_images(plate, channel, max_images)
        log.info("channel %d: flat field from %d images", channel, len(images))
        planes = list(_readable(plate, images, read_plane))
        if not planes:
            raise ImageReadError(
                f"channel {channel}: none of the {len(images)} sampled images could be read; "
                "see the warnings above for each file"
            )
        if len(planes) < min_images:
            # the per-pixel median of a few images still holds their nuclei: dividing by it would dim
            # dense regions and brighten sparse ones, worse than no correction at all
            log.warning(
                "channel %d: only %d image(s) on this plate, fewer than the %d a flat field needs; "
                "flat-field correction is a no-op for this channel",
                channel,
                len(planes),
                min_images,
            )
            profiles[channel] = np.ones(planes[0].shape, dtype=np.float32)
            continue
        profiles[channel] = np.asarray(estimate_illumination(planes), dtype=np.float32)
    buffer = io.BytesIO()
    # numpy's stub fears a key named allow_pickle: these keys are all channel_N
    np.savez(buffer, **{f"channel_{c}": p for c, p in profiles.items()})  # type: ignore[arg-type]
    atomic_write_bytes(out_npz, buffer.getvalue())
    return profiles


def load_illumination(path: str | Path) -> dict[int, np.ndarray]:
    with np.load(path) as data:
        return {int(key.split("_", 1)[1]): data[key] for key in data.files}
