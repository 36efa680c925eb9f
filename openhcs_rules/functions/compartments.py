"""Cells and cytoplasm from the nuclei (CellProfiler's IdentifySecondary/TertiaryObjects), and the measure step.

**Cells** (:func:`grow_cells`) are grown from the nuclei into a cell-body channel, each keeping its
nucleus' id:

1. The cell image is smoothed (Gaussian, sigma 1 px) so that shot noise does not fray the cell edges.
2. **Foreground** is detected as the nuclei are (:mod:`~openhcs_rules.functions.segmentation`): above the
   background (median under Otsu's threshold) + 4 noise sigmas and at least half of Otsu's contrast, never
   above Otsu's own level. Otsu alone sits in the middle of the cells' brightness and drops dim cells (in
   one field cell bodies vary ~2x); half its contrast keeps them and still leaves out the haze. A plane
   whose Otsu classes are not separated (an empty cell channel) has no foreground.
3. **Within reach**: only foreground pixels within ``max_distance`` pixels of a nucleus (default: the
   median equivalent diameter of the nuclei, ~ the cytoplasm of a typical adherent cell) can join a cell,
   so a nucleus without a visible cell body, or a bright neighbour's skirt, does not spread across the
   field. A nucleus with no cell body around it keeps a cell equal to itself.
4. **Seeded watershed** (propagation): the nuclei flood the masked foreground over the landscape
   ``(1 - normalised brightness) + regularization x distance to the nearest nucleus / max_distance``.
   The brightness term puts the border between touching cells on the dark seam between them when there is
   one; the distance term (CellProfiler's propagation regularisation) makes the border fall half-way
   between the nuclei where the cell bodies are flat, instead of wherever the noise lets one front in
   first. Brightness is normalised between the threshold and the 99th percentile of the foreground.
5. Every nucleus lies in its cell (the seeds keep their ids); foreground not connected to any nucleus
   stays background.

Memory: smoothing, thresholds, the distance transform and the landscape run with ``xp``/``ndi`` on the
labels' device; the watershed has no cupy equivalent and runs on the host (scikit-image), the labels are
moved back (as in segmentation).

**Cytoplasm** (:func:`cytoplasm_labels`) is the cell minus its nucleus, with the same ids (CellProfiler's
IdentifyTertiaryObjects); a cell that is only its nucleus has no cytoplasm pixels, and its cytoplasm
features are NaN.

**The measure step** :func:`measure_compartments` measures the nuclei, and with a ``cell_channel`` the
cells and cytoplasm too, with :func:`openhcs_rules.functions.features.object_features`; one row per
nucleus.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from openhcs_rules.core.arrays import memory_type_of, modules_for, to_memory, to_numpy
from openhcs_rules.functions._objects import channel_stack, index_objects
from openhcs_rules.functions.features import compartment_features
from openhcs_rules.functions.measurement import measure_objects, sanitize_channel_name
from openhcs_rules.functions.segmentation import (
    DETECT_SIGMAS,
    MIN_SEPARATION,
    OTSU_FRACTION,
    _background_and_noise,
    _otsu_with_separation,
)
from openhcs_rules.functions.texture_features import LEVELS, SCALE, quantise, texture_ranges

#: smoothing of the cell image before thresholding (pixels)
CELL_SMOOTHING = 1.0
#: weight of the distance term of the watershed landscape (1: max_distance of travel = full brightness range)
REGULARIZATION = 1.0
#: the brightness that counts as "fully bright" in the landscape: this percentile of the foreground
BRIGHT_PERCENTILE = 99.0


def typical_nucleus_diameter(nuclei_labels: Any) -> float:
    """Median equivalent diameter (pixels) of the objects of a label image; 0 when there are none."""
    xp, _ = modules_for(nuclei_labels)
    areas = xp.bincount(xp.asarray(nuclei_labels).ravel().astype(xp.int64))[1:]
    areas = areas[areas > 0]
    if areas.size == 0:
        return 0.0
    return 2.0 * math.sqrt(float(xp.median(areas.astype(xp.float64))) / math.pi)


def _cell_foreground(smoothed: Any) -> tuple[Any, Any]:
    """Foreground mask and the brightness in [0, 1] above the threshold (see the module docstring, 2)."""
    xp, _ = modules_for(smoothed)
    otsu, separation = _otsu_with_separation(smoothed)
    if separation < MIN_SEPARATION:
        nothing = xp.zeros(smoothed.shape, dtype=bool)
        return nothing, xp.zeros(smoothed.shape, dtype=xp.float32)
    background, noise = _background_and_noise(smoothed, otsu)
    threshold = max(background + DETECT_SIGMAS * noise, background + OTSU_FRACTION * (otsu - background))
    if otsu > background + DETECT_SIGMAS * noise:
        threshold = min(threshold, otsu)
    foreground = smoothed > threshold
    if not bool(foreground.any()):
        return foreground, xp.zeros(smoothed.shape, dtype=xp.float32)
    bright = float(xp.percentile(smoothed[foreground], BRIGHT_PERCENTILE))
    scale = bright - threshold if bright > threshold else 1.0
    brightness = xp.clip((smoothed - threshold) / scale, 0.0, 1.0).astype(xp.float32)
    return foreground, brightness


def grow_cells(
    nuclei_labels: Any,
    cell_image: Any,
    max_distance: float | None = None,
    smoothing: float = CELL_SMOOTHING,
    regularization: float = REGULARIZATION,
) -> Any:
    """Cell labels grown from 2D nuclei labels into a 2D cell-body image; each cell has its nucleus' id.

    ``max_distance``: how far (pixels) a cell may reach beyond the nearest nucleus (default: the median
    nucleus equivalent diameter). Returns int32 labels in the nuclei's memory (numpy or cupy). See the
    module docstring for the method and why.
    """
    if getattr(nuclei_labels, "ndim", None) != 2:
        raise ValueError(f"nuclei labels must be 2D; got shape {getattr(nuclei_labels, 'shape', None)}")
    xp, ndi = modules_for(nuclei_labels)
    nuclei = xp.asarray(nuclei_labels).astype(xp.int32, copy=False)
    image = xp.asarray(to_memory(cell_image, memory_type_of(nuclei)), dtype=xp.float32)
    if tuple(image.shape) != tuple(nuclei.shape):
        raise ValueError(f"cell image {tuple(image.shape)} and nuclei {tuple(nuclei.shape)} differ in size")
    if max_distance is not None and max_distance < 0:
        raise ValueError(f"max_distance must be >= 0 pixels, got {max_distance}")
    nuclear = nuclei > 0
    if not bool(nuclear.any()):
        return xp.zeros(nuclei.shape, dtype=xp.int32)
    reach = typical_nucleus_diameter(nuclei) if max_distance is None else float(max_distance)
    smoothed = ndi.gaussian_filter(image, smoothing) if smoothing > 0 else image
    foreground, brightness = _cell_foreground(smoothed)
    distance = ndi.distance_transform_edt(~nuclear).astype(xp.float32)
    mask = nuclear | (foreground & (distance <= reach))
    landscape = (1.0 - brightness) + regularization * distance / max(reach, 1.0)

    from skimage.segmentation import watershed

    markers = to_numpy(nuclei)
    cells = watershed(to_numpy(landscape), markers=markers, mask=to_numpy(mask)).astype(np.int32)
    cells[markers > 0] = markers[markers > 0]
    return to_memory(cells, memory_type_of(nuclei))


def cytoplasm_labels(cells: Any, nuclei: Any) -> Any:
    """The cells minus the nuclei (every nuclear pixel removed), same ids, in the cells' memory."""
    xp, _ = modules_for(cells)
    nuclei = to_memory(nuclei, memory_type_of(cells))
    if tuple(cells.shape) != tuple(nuclei.shape):
        raise ValueError(f"cells {tuple(cells.shape)} and nuclei {tuple(nuclei.shape)} differ in size")
    return xp.where(xp.asarray(nuclei) > 0, 0, cells)


def resolve_channel(selector: str | int, channel_names: list[str]) -> int:
    """0-based position of a channel given by name (as given or sanitised, any case) or 1-based index."""
    if isinstance(selector, bool):
        raise ValueError(f"channel must be a name or a 1-based index, got {selector!r}")
    if isinstance(selector, str) and selector.strip().isdigit():
        selector = int(selector.strip())
    if isinstance(selector, int):
        if 1 <= selector <= len(channel_names):
            return selector - 1
    else:
        wanted = selector.strip().lower()
        for position, name in enumerate(channel_names):
            if wanted in (str(name).strip().lower(), sanitize_channel_name(name).lower()):
                return position
    listed = ", ".join(f"{i + 1} ({name})" for i, name in enumerate(channel_names))
    raise ValueError(f"cell channel {selector!r} is not among the channels: {listed}")


def measure_compartments(
    labels_2d: Any,
    intensities: Any,
    channel_names: list[str],
    cell_channel: str | int | None = None,
    texture: bool = True,
    texture_scale: int = SCALE,
    cell_max_distance: float | None = None,
) -> list[dict[str, Any]]:
    """One row per nucleus: ``measure_objects``' columns, then ``Nuclei_<feature>`` and, with a
    ``cell_channel`` (a channel name or 1-based index among ``channel_names``), ``Cells_<feature>`` and
    ``Cytoplasm_<feature>`` for cells grown from the nuclei in that channel.

    Features are CellProfiler's shape, intensity (every channel) and, unless ``texture`` is False, Haralick
    texture at distance ``texture_scale`` (:mod:`~openhcs_rules.functions.features`). The grey levels for
    texture are set once per site (from the pixels of the cells, or of the nuclei without cells), so the
    three compartments share one scale. ``cell_max_distance``: see :func:`grow_cells`. A cytoplasm without
    pixels (a cell that is only its nucleus) gives NaN ``Cytoplasm_`` values.
    """
    table = measure_objects(labels_2d, intensities, channel_names)
    if not table:
        return []
    nuclei = index_objects(labels_2d)
    images, names = channel_stack(intensities, nuclei.compact, channel_names)
    compartments = [("Nuclei", nuclei)]
    if cell_channel is not None:
        channel = resolve_channel(cell_channel, channel_names)
        cells = grow_cells(labels_2d, images[channel], max_distance=cell_max_distance)
        compartments.append(("Cells", index_objects(cells, nuclei.ids)))
        compartments.append(("Cytoplasm", index_objects(cytoplasm_labels(cells, labels_2d), nuclei.ids)))
    grey = None
    if texture:  # one grey scale per site: from the cells' pixels (they hold the nuclei), else the nuclei's
        grey = quantise(images, texture_ranges(images, dict(compartments).get("Cells", nuclei)))
    if [row["label"] for row in table] != nuclei.ids.tolist():
        raise AssertionError("measure_objects and the feature index disagree on the nuclei ids")
    for prefix, objects in compartments:
        columns = compartment_features(objects, images, names, grey, texture_scale, LEVELS)
        for name, values in columns.items():
            key = f"{prefix}_{name}"
            for row, value in zip(table, values.tolist(), strict=True):
                row[key] = value
    return table
