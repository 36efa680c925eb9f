"""Shape features of labelled objects (CellProfiler's MeasureObjectSizeShape), for all objects at once.

Definitions (CellProfiler 4 takes them from ``skimage.measure.regionprops``; so do these, and the tests
check each against regionprops):

* ``AreaShape_Area``: pixel count. ``Location_Center_Y/X``: mean row/column of the pixels.
* ``AreaShape_MajorAxisLength`` / ``MinorAxisLength``: 4 x the square root of the larger/smaller eigenvalue
  of the pixels' coordinate covariance (population, no 1/12 pixel-size term), i.e. the axes of the ellipse
  with the same second moments. ``AreaShape_Eccentricity``: sqrt(1 - minor eigenvalue / major eigenvalue),
  0 for a disc, -> 1 for a line (0 for a single pixel). ``AreaShape_Orientation``: regionprops' angle
  between the row axis and the major axis, in degrees in (-90, 90] (what CellProfiler 4 reports; -90 is
  reported as 90, the same axis, whatever the sign of a zero covariance).
  Moments come from two ``bincount`` passes (centroids first, then squared offsets from them: no
  cancellation in sum(y^2) - n*cy^2 for objects far from the origin of a large image).
* ``AreaShape_Perimeter``: scikit-image's ``perimeter`` (4-connectivity), exactly: the object's border
  pixels (pixels with an edge neighbour outside the object, or on the image's edge) are weighted by the
  pattern of their border neighbours (1 for a straight run, sqrt(2) for a diagonal step, (1 + sqrt(2)) / 2
  at a corner; Benkrid & Crookes). On digital discs of radius 5-60 px it reads 2 pi r x 1.0495 (the
  test states the bound). Computed for every object at once: one gather per neighbour offset, at the
  border pixels only.
* ``AreaShape_FormFactor``: 4 pi area / perimeter^2 (0.91 for a digital disc, through the perimeter's
  bias, as in CellProfiler; smaller for ragged objects; NaN for a single pixel, whose perimeter is 0).
* ``AreaShape_Solidity``: area / convex area, where the convex area counts the pixel centres inside or on
  the convex hull of the pixels' edge midpoints (scikit-image's ``convex_hull_image``, which regionprops
  uses): 0.91 for a digital disc of radius 5 px, 0.98 at 30 px. The hull is the one step that runs on the
  host, one small qhull call per object on its border pixels only (a few hundred points): objects are few
  (hundreds per field), the pixels are not.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from openhcs_rules.core.arrays import to_numpy
from openhcs_rules.functions._objects import DIAGONAL_OFFSETS, EDGE_OFFSETS, Objects

#: scikit-image's perimeter weights, indexed by 1 + 2 x (edge neighbours on the border) + 10 x (diagonal ones)
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + math.sqrt(2.0)) / 2.0
#: the 4 edge midpoints of a pixel, whose hull scikit-image's convex_hull_image takes
_MIDPOINTS = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, -0.5], [0.0, 0.5]])
#: slack for "on the hull's edge" (hull vertices lie on a half-pixel lattice, so exact ties are common)
_ON_EDGE = 1e-9


def shape_features(objects: Objects) -> dict[str, np.ndarray]:
    """Area, centre, axes, eccentricity, orientation, perimeter, form factor and solidity per row (host)."""
    xp = objects.xp
    area = objects.area
    rows, cols = objects.coordinates
    safe = xp.maximum(area, 1.0)
    cy = objects.sums(rows) / safe
    cx = objects.sums(cols) / safe
    dy = rows - cy[objects.index]
    dx = cols - cx[objects.index]
    var_y = objects.sums(dy * dy) / safe
    var_x = objects.sums(dx * dx) / safe
    cov = objects.sums(dy * dx) / safe
    half_trace = (var_y + var_x) / 2.0
    spread = xp.sqrt(((var_y - var_x) / 2.0) ** 2 + cov**2)
    major = half_trace + spread
    minor = xp.maximum(half_trace - spread, 0.0)
    eccentricity = xp.where(major > 0, xp.sqrt(1.0 - minor / xp.where(major > 0, major, 1.0)), 0.0)
    # regionprops: inertia tensor [[a, b], [b, c]] = [[var_x, -cov], [-cov, var_y]], 0.5 atan2(-2b, c - a)
    orientation = xp.where(
        var_y == var_x, xp.where(cov > 0, math.pi / 4, -math.pi / 4), 0.5 * xp.arctan2(2.0 * cov, var_y - var_x)
    )
    perimeter = _perimeter(objects)
    columns = {
        "AreaShape_Area": area,
        "AreaShape_Perimeter": perimeter,
        "AreaShape_FormFactor": xp.where(
            perimeter > 0, 4.0 * math.pi * area / xp.where(perimeter > 0, perimeter, 1.0) ** 2, xp.nan
        ),
        "AreaShape_Eccentricity": eccentricity,
        "AreaShape_MajorAxisLength": 4.0 * xp.sqrt(major),
        "AreaShape_MinorAxisLength": 4.0 * xp.sqrt(minor),
        "AreaShape_Orientation": xp.where(orientation == -math.pi / 2, 90.0, xp.degrees(orientation)),
        "Location_Center_X": cx,
        "Location_Center_Y": cy,
    }
    table = {name: np.asarray(to_numpy(values), dtype=np.float64) for name, values in columns.items()}
    table["AreaShape_Solidity"] = table["AreaShape_Area"] / _convex_areas(objects)
    return table


def _perimeter(objects: Objects) -> Any:
    """scikit-image's 4-connectivity perimeter of every object (see the module docstring).

    Only the border pixels are visited: each one's code is 1 + 2 x (edge neighbours on the same object's
    border) + 10 x (diagonal ones), read with one gather per offset from a padded border image.
    """
    xp = objects.xp
    border = objects.border
    padded, positions, wide = objects.padded(1)
    on_border = xp.zeros(padded.shape, dtype=bool)
    mine = positions[border]
    on_border[mine] = True
    code = xp.ones(mine.shape, dtype=xp.int32)
    for offsets, weight in ((EDGE_OFFSETS, 2), (DIAGONAL_OFFSETS, 10)):
        for dy, dx in offsets:
            linked = on_border[mine + (dy * wide + dx)] & objects.same_as_neighbour[(dy, dx)][border]
            code += linked.astype(xp.int32) * weight
    weights = xp.asarray(_PERIMETER_WEIGHTS)[code]
    return xp.bincount(objects.index[border], weights=weights, minlength=objects.count)


def _convex_areas(objects: Objects) -> np.ndarray:
    """Pixel centres inside or on each object's convex hull (of its pixels' edge midpoints), on the host."""
    from scipy.spatial import ConvexHull

    width = objects.shape[1]
    on_border = objects.border
    positions = to_numpy(objects.pixels[on_border])
    rows_of = to_numpy(objects.index[on_border])
    order = np.argsort(rows_of, kind="stable")
    positions, rows_of = positions[order], rows_of[order]
    bounds = np.searchsorted(rows_of, np.arange(objects.count + 1))
    areas = np.full(objects.count, np.nan)
    for row in range(objects.count):
        mine = positions[bounds[row] : bounds[row + 1]]
        if mine.size == 0:
            continue
        points = np.stack([mine // width, mine % width], axis=1).astype(np.float64)
        points = (points[:, None, :] + _MIDPOINTS[None]).reshape(-1, 2)
        hull = ConvexHull(points)
        areas[row] = _lattice_points_in(points[hull.vertices])
    return areas


def _lattice_points_in(vertices: np.ndarray) -> float:
    """Integer points inside or on a convex polygon (vertices in order), counted row by row."""
    ys, xs = vertices[:, 0], vertices[:, 1]
    y0, x0, y1, x1 = ys, xs, np.roll(ys, -1), np.roll(xs, -1)
    rows = np.arange(math.ceil(ys.min() - _ON_EDGE), math.floor(ys.max() + _ON_EDGE) + 1, dtype=np.float64)
    low_y, high_y = np.minimum(y0, y1), np.maximum(y0, y1)
    crosses = (rows[:, None] >= low_y - _ON_EDGE) & (rows[:, None] <= high_y + _ON_EDGE)
    flat = y1 == y0
    t = np.where(flat, 0.0, (rows[:, None] - y0) / np.where(flat, 1.0, y1 - y0))
    x_at = np.minimum(np.maximum(x0 + t * (x1 - x0), np.minimum(x0, x1)), np.maximum(x0, x1))
    # a horizontal edge on the row contributes both of its ends
    x_low = np.where(crosses, np.where(flat, np.minimum(x0, x1), x_at), np.inf).min(axis=1)
    x_high = np.where(crosses, np.where(flat, np.maximum(x0, x1), x_at), -np.inf).max(axis=1)
    counts = np.floor(x_high + _ON_EDGE) - np.ceil(x_low - _ON_EDGE) + 1
    return float(np.maximum(counts, 0).sum())
