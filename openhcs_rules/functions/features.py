"""Per-object features the CellProfiler way: shape, intensity and Haralick texture for all objects at once.

:func:`object_features` returns, for a 2D label image and ``(c, y, x)`` intensities, one array per
feature, keyed by CellProfiler's names without the compartment prefix (``AreaShape_Area``,
``Intensity_MeanIntensity_DAPI``, ``Texture_Contrast_DAPI_3``...), aligned with the returned object ids.
The definitions and why they were chosen are in the modules that compute them:
:mod:`~openhcs_rules.functions.shape_features`, :mod:`~openhcs_rules.functions.intensity_features` and
:mod:`~openhcs_rules.functions.texture_features`.

Why vectorised: a field holds hundreds to thousands of objects, and a loop over them (what regionprops and
CellProfiler do) costs Python overhead per object and per feature. Every reduction here is a ``bincount``
or scatter over the object pixels with ``xp`` (numpy or cupy, whichever holds the labels), so the same code
runs on the GPU; only the convex hulls (for solidity) are taken on the host, per object, from the border
pixels alone. Only the final columns (small) are moved to the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openhcs_rules.core.arrays import to_numpy
from openhcs_rules.functions._objects import Objects, channel_stack, index_objects
from openhcs_rules.functions.intensity_features import intensity_features
from openhcs_rules.functions.shape_features import shape_features
from openhcs_rules.functions.texture_features import LEVELS, SCALE, quantise, texture_features, texture_ranges

#: the shape columns, in the order they are reported
SHAPE_COLUMNS = (
    "AreaShape_Area",
    "AreaShape_Perimeter",
    "AreaShape_FormFactor",
    "AreaShape_Solidity",
    "AreaShape_Eccentricity",
    "AreaShape_MajorAxisLength",
    "AreaShape_MinorAxisLength",
    "AreaShape_Orientation",
    "Location_Center_X",
    "Location_Center_Y",
)


def object_features(
    labels_2d: Any,
    intensities: Any,
    channel_names: list[str],
    *,
    ids: Any = None,
    texture: bool = True,
    texture_scale: int = SCALE,
    texture_levels: int = LEVELS,
    texture_range: list[tuple[float, float]] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Object ids (host int64, ascending) and every feature column (host float64, one value per id).

    ``labels_2d``: 2D labels (numpy or cupy; 0 is background, ids need not be consecutive). ``intensities``:
    ``(c, y, x)`` or ``(y, x)``, moved to the labels' memory; ``channel_names`` are sanitised to
    ``[A-Za-z0-9_]`` and must stay unique. ``ids``: report exactly these objects (e.g. the nuclei's ids for
    the cells and cytoplasm); an id without pixels gets NaN in every column. ``texture_range``: per channel
    the (low, high) intensity of the first and last grey level (default: from these objects' pixels; pass
    one range for several label images of a site so their textures share one scale).
    """
    objects = index_objects(labels_2d, ids)
    images, names = channel_stack(intensities, objects.compact, channel_names)
    grey = None
    if texture and objects.count:
        ranges = texture_range if texture_range is not None else texture_ranges(images, objects)
        grey = quantise(images, ranges, texture_levels)
    return objects.ids, compartment_features(objects, images, names, grey, texture_scale, texture_levels)


def compartment_features(
    objects: Objects, images: Any, names: list[str], grey: Any = None, scale: int = SCALE, levels: int = LEVELS
) -> dict[str, np.ndarray]:
    """Every column for indexed objects; texture only when quantised images ``grey`` (c, y, x) are given.

    Rows without pixels (ids that were asked for but are absent) are NaN in every column.
    """
    columns: dict[str, np.ndarray] = {}
    if objects.count == 0:
        return columns
    columns.update(shape_features(objects))
    columns.update(intensity_features(objects, images, names))
    if grey is not None:
        columns.update(texture_features(objects, grey, names, scale, levels))
    missing = np.asarray(to_numpy(objects.area)) == 0
    if missing.any():
        for values in columns.values():
            values[missing] = np.nan
    return columns
