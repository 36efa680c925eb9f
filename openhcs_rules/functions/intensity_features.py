"""Intensity features of labelled objects per channel (CellProfiler's MeasureObjectIntensity), vectorised.

Per channel ``<ch>`` (sanitised name), over the object's pixels:

* ``Intensity_IntegratedIntensity_<ch>``: sum; ``Intensity_MeanIntensity_<ch>``: sum / area;
* ``Intensity_StdIntensity_<ch>``: population standard deviation (numpy's ``std``, ddof 0, as CellProfiler
  and regionprops' ``intensity_std``), from a second pass over squared deviations from the mean (no
  cancellation for bright, flat objects);
* ``Intensity_MinIntensity_<ch>`` / ``Intensity_MaxIntensity_<ch>``: one scatter-min/max over the pixels;
* ``Intensity_MeanIntensityEdge_<ch>``: mean over the object's outline, the pixels with any of their 8
  neighbours outside the object or on the image's edge (CellProfiler's ``centrosome.outline``).

Sums and means are ``bincount`` reductions in float64 on the array module of the labels (numpy or cupy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openhcs_rules.core.arrays import to_numpy
from openhcs_rules.functions._objects import Objects, scatter_extreme


def intensity_features(objects: Objects, images: Any, names: list[str]) -> dict[str, np.ndarray]:
    """The intensity columns above for every row of ``objects`` and every channel of ``images`` (c, y, x)."""
    xp = objects.xp
    area = xp.maximum(objects.area, 1.0)
    edge = objects.edge
    edge_index = objects.index[edge]
    edge_count = xp.maximum(xp.bincount(edge_index, minlength=objects.count).astype(xp.float64), 1.0)
    columns: dict[str, Any] = {}
    for channel, name in enumerate(names):
        values = images[channel].ravel()[objects.pixels].astype(xp.float64)
        total = objects.sums(values)
        mean = total / area
        deviation = values - mean[objects.index]
        columns[f"Intensity_IntegratedIntensity_{name}"] = total
        columns[f"Intensity_MeanIntensity_{name}"] = mean
        columns[f"Intensity_StdIntensity_{name}"] = xp.sqrt(objects.sums(deviation * deviation) / area)
        columns[f"Intensity_MinIntensity_{name}"] = scatter_extreme(
            xp, objects.count, objects.index, values, largest=False
        )
        columns[f"Intensity_MaxIntensity_{name}"] = scatter_extreme(
            xp, objects.count, objects.index, values, largest=True
        )
        edge_sum = xp.bincount(edge_index, weights=values[edge], minlength=objects.count)
        columns[f"Intensity_MeanIntensityEdge_{name}"] = edge_sum / edge_count
    return {name: np.asarray(to_numpy(values), dtype=np.float64) for name, values in columns.items()}
