"""Two processing steps written against numpy and scikit-image, registered as ``example.*`` functions.

Each receives the stack the executor builds, a numpy array ``(n, y, x)`` of float32 planes, plus the
keywords the pipeline file gives, already checked against the annotations below. Neither declares cupy,
so on a GPU run the executor moves the stack to the host before calling them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import disk, white_tophat

from openhcs_rules.pipeline.registry import processing_function


@processing_function(kind="image", memory=("numpy",))
def top_hat(stack: np.ndarray, radius: int = 15) -> np.ndarray:
    """White top-hat per plane: the image minus its opening by a disk of ``radius`` pixels.

    The opening keeps everything wider than the disk (background, haze, gradients); subtracting it leaves
    the objects narrower than ``2 * radius``, on a zero background. Same shape, float32. Each plane is
    extended by point reflection first: at a border the opening would otherwise fall short of a gradient
    running into the edge, and leave a band of background behind.
    """
    if radius < 1:
        raise ValueError(f"radius must be >= 1 pixel, got {radius}")
    footprint = disk(radius)
    planes = [_top_hat_plane(np.asarray(plane, dtype=np.float32), footprint, radius) for plane in stack]
    return np.stack(planes).astype(np.float32, copy=False)


def _top_hat_plane(plane: np.ndarray, footprint: np.ndarray, radius: int) -> np.ndarray:
    """White top-hat of one plane, extended by ``radius`` pixels of point reflection and cropped back."""
    extended = np.pad(plane, radius, mode="reflect", reflect_type="odd")
    return white_tophat(extended, footprint=footprint)[radius:-radius, radius:-radius]


@processing_function(kind="labels", memory=("numpy",))
def otsu_objects(stack: np.ndarray, sigma: float = 1.0, min_area: int = 20) -> np.ndarray:
    """Label the objects of each plane: Gaussian smoothing, Otsu threshold, connected components.

    Objects under ``min_area`` pixels (noise that crossed the threshold) are dropped. One int32 label
    image per plane, objects numbered from 1, background 0.
    """
    labels = np.zeros(stack.shape, dtype=np.int32)
    for index, plane in enumerate(stack):
        smooth = ndimage.gaussian_filter(np.asarray(plane, dtype=np.float32), sigma) if sigma > 0 else plane
        if float(smooth.max()) <= float(smooth.min()):
            continue  # a flat plane has no objects (and no Otsu threshold)
        labels[index] = _large_objects(smooth > threshold_otsu(smooth), min_area)
    return labels


def _large_objects(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Connected components of ``mask`` with at least ``min_area`` pixels, renumbered 1..n."""
    labelled, _ = ndimage.label(mask)
    keep = np.bincount(labelled.ravel()) >= min_area
    keep[0] = False  # background
    renumber = np.cumsum(keep) * keep
    return renumber[labelled].astype(np.int32)
