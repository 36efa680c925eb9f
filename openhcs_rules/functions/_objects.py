"""The per-object index every feature module reduces over: which pixels belong to which table row.

A label image is turned once into a *compact* image (row number 0..n-1 of each pixel's object, -1 for
background and for labels that are not reported) and the flat positions of the object pixels with their
row numbers. Every per-object quantity is then one ``bincount`` (sums) or one scatter (min/max) over those
pixels, with ``xp`` (numpy or cupy): no Python loop over objects, and the background is never touched
again. Label ids need not be consecutive, and the rows can be forced to a given list of ids (the nuclei's,
for the cell and cytoplasm compartments) so that the three tables line up; an id without pixels gets a row
of NaN.

Kept private: the public modules (``features``, ``compartments``) each do one job with it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from openhcs_rules.core.arrays import memory_type_of, modules_for, to_memory, to_numpy
from openhcs_rules.functions.measurement import sanitize_channel_name

#: the 8 neighbour offsets (row, column): the 4 edge neighbours first, then the 4 diagonal ones
EDGE_OFFSETS = ((-1, 0), (1, 0), (0, -1), (0, 1))
DIAGONAL_OFFSETS = ((-1, -1), (-1, 1), (1, -1), (1, 1))


@dataclass(eq=False)
class Objects:
    """The objects of one label image, indexed for vectorised reductions (see the module docstring)."""

    xp: ModuleType
    ndi: ModuleType
    ids: np.ndarray  # host int64 (n,): the label id of each row, ascending
    compact: Any  # (y, x) int32 in the labels' memory: row of each pixel's object, -1 elsewhere
    pixels: Any  # flat positions of the object pixels (int64, ascending)
    index: Any  # row of each object pixel (int64, aligned with ``pixels``)

    @property
    def count(self) -> int:
        return int(self.ids.size)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.compact.shape[0]), int(self.compact.shape[1]))

    def sums(self, weights: Any = None) -> Any:
        """Per-row sum of ``weights`` (one value per object pixel), or the pixel count without weights."""
        return self.xp.bincount(self.index, weights=weights, minlength=self.count).astype(self.xp.float64)

    @functools.cached_property
    def area(self) -> Any:
        return self.sums()

    @functools.cached_property
    def coordinates(self) -> tuple[Any, Any]:
        """(row, column) of every object pixel, float64."""
        width = self.shape[1]
        return (self.pixels // width).astype(self.xp.float64), (self.pixels % width).astype(self.xp.float64)

    @functools.cache  # noqa: B019 - one padded copy per pad width, dropped with the (short-lived) index
    def padded(self, pad: int) -> tuple[Any, Any, int]:
        """The compact image padded by ``pad`` pixels of -1 (flat), the object pixels' positions in it, its width.

        Neighbours at offsets up to ``pad`` are then one gather at ``position + dy * width + dx``: no bounds
        checks, and the image's outside reads as "another object".
        """
        xp = self.xp
        height, width = self.shape
        padded = xp.pad(self.compact, pad, mode="constant", constant_values=-1).ravel()
        wide = width + 2 * pad
        positions = (self.pixels // width + pad) * wide + (self.pixels % width + pad)
        return padded, positions, wide

    def neighbour_rows(self, dy: int, dx: int) -> Any:
        """Row of the neighbour at (dy, dx) of every object pixel (-1: background, other labels, outside)."""
        padded, positions, wide = self.padded(max(abs(dy), abs(dx), 1))
        return padded[positions + (dy * wide + dx)]

    @functools.cached_property
    def same_as_neighbour(self) -> dict[tuple[int, int], Any]:
        """For each of the 8 offsets, per object pixel: is that neighbour in the same object?

        Outside the image counts as another object, so pixels on the image's edge are on their object's
        boundary, as in scikit-image's erosion with ``border_value=0`` and CellProfiler's outlines.
        """
        return {offset: self.neighbour_rows(*offset) == self.index for offset in EDGE_OFFSETS + DIAGONAL_OFFSETS}

    @functools.cached_property
    def border(self) -> Any:
        """Per object pixel: has an edge neighbour (4-connectivity) outside its object.

        This is scikit-image's ``image - binary_erosion(image, cross)``, the border its perimeter walks.
        """
        same = self.same_as_neighbour
        return ~(same[EDGE_OFFSETS[0]] & same[EDGE_OFFSETS[1]] & same[EDGE_OFFSETS[2]] & same[EDGE_OFFSETS[3]])

    @functools.cached_property
    def edge(self) -> Any:
        """Per object pixel: any of its 8 neighbours is outside its object, or it is on the image's edge.

        CellProfiler's object outline (``centrosome.outline``), the pixels its ``...IntensityEdge`` features
        average over.
        """
        same = self.same_as_neighbour
        inside = same[EDGE_OFFSETS[0]]
        for offset in EDGE_OFFSETS[1:] + DIAGONAL_OFFSETS:
            inside = inside & same[offset]
        return ~inside


def index_objects(labels_2d: Any, ids: Any = None) -> Objects:
    """Index a 2D label image (numpy or cupy) for reductions; rows are ``ids`` (default: every label > 0).

    Labels not in ``ids`` are treated as background. Raises ValueError for anything but a 2D image of
    non-negative integers.
    """
    if getattr(labels_2d, "ndim", None) != 2:
        raise ValueError(f"labels must be a 2D label image; got shape {getattr(labels_2d, 'shape', None)}")
    xp, ndi = modules_for(labels_2d)
    labels = xp.asarray(labels_2d)
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(xp.int64, copy=False)
    top = int(labels.max()) if labels.size else 0
    if labels.size and int(labels.min()) < 0:
        raise ValueError("labels must be >= 0 (0 is background)")
    if ids is None:
        present = xp.bincount(labels.ravel(), minlength=top + 1)[1:] > 0
        rows = to_numpy(xp.nonzero(present)[0] + 1).astype(np.int64)
    else:
        rows = np.unique(np.asarray(to_numpy(ids), dtype=np.int64))
        if rows.size and rows[0] <= 0:
            raise ValueError("object ids must be > 0 (0 is background)")
    lookup = xp.full(max(top, int(rows.max()) if rows.size else 0) + 1, -1, dtype=xp.int32)
    lookup[xp.asarray(rows)] = xp.arange(rows.size, dtype=xp.int32)
    compact = lookup[labels]
    pixels = xp.flatnonzero(compact >= 0)
    index = compact.ravel()[pixels].astype(xp.int64)
    return Objects(xp, ndi, rows, compact, pixels, index)


def channel_stack(intensities: Any, like: Any, channel_names: list[str]) -> tuple[Any, list[str]]:
    """``(c, y, x)`` intensities in ``like``'s memory and the sanitised channel names (checked unique).

    The same checks and names as :func:`openhcs_rules.functions.measurement.measure_objects`.
    """
    xp, _ = modules_for(like)
    images = to_memory(intensities, memory_type_of(like))
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise ValueError(f"intensities must be (c, y, x) or (y, x); got shape {tuple(images.shape)}")
    if tuple(images.shape[1:]) != tuple(like.shape):
        raise ValueError(
            f"intensities {tuple(images.shape)} and labels {tuple(like.shape)} are not the same image size"
        )
    if len(channel_names) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} intensity channels but {len(channel_names)} channel names were given")
    names = [sanitize_channel_name(name) or f"ch{index + 1}" for index, name in enumerate(channel_names)]
    if len(set(names)) != len(names):
        raise ValueError(f"channel names are not unique after sanitising: {names}")
    return xp.asarray(images), names


def scatter_extreme(xp: ModuleType, size: int, index: Any, values: Any, largest: bool) -> Any:
    """Per-row minimum (or maximum) of ``values``: ``ufunc.at`` on numpy, ``cupyx.scatter_min/max`` on cupy.

    The one place where the two array modules need different calls (cupy's ufuncs have no ``.at`` before
    v13; ``cupyx.scatter_*`` exist since v8). Rows without values keep +-inf.
    """
    out = xp.full(size, -np.inf if largest else np.inf, dtype=values.dtype)
    if xp is np:
        (np.maximum if largest else np.minimum).at(out, index, values)
    else:
        import cupyx

        (cupyx.scatter_max if largest else cupyx.scatter_min)(out, index, values)
    return out
