"""The DSB 2018 stage 1 fluorescence images with their instance annotations: read from a stage1_train folder
(one folder per image, ``images/<id>.png`` and one PNG per nucleus in ``masks/``) or from the sample kept in
tests/data/nuclei/dsb2018_stage1/ (written by scripts/dsb2018_subset.py, which says where the data come from).

Used by bench/accuracy.py and the accuracy tests. Split by the image id's first hex digit: ``0-7`` tuning (looked at
while choosing the segmenter's constants), ``8-f`` held out (evaluated only).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = [
    "AnnotatedImage",
    "folder_images",
    "fluorescence_image",
    "load_labels",
    "sample_images",
    "split_of",
]

TUNING_DIGITS = "01234567"


def fluorescence_image(folder: Path) -> np.ndarray | None:
    """The image's grey channel (uint8) if it is a fluorescence image, else None: grey (R == G == B, its PNG is
    RGBA) with a dark background (median < 60), not a stained-tissue or brightfield one. One read of the PNG."""
    import imageio.v3 as iio

    image = np.asarray(iio.imread(folder / "images" / f"{folder.name}.png"))
    if image.ndim == 3:
        rgb = image[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
            return None
        image = rgb[..., 0]
    return image if float(np.median(image)) < 60.0 else None


def load_labels(folder: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Instance labels from the per-nucleus mask PNGs (name order; a pixel in two masks keeps the first)."""
    import imageio.v3 as iio

    labels = np.zeros(shape, dtype=np.uint16)
    for number, path in enumerate(sorted((folder / "masks").glob("*.png")), start=1):
        mask = np.asarray(iio.imread(path))
        mask = mask[..., 0] if mask.ndim == 3 else mask
        labels[(mask > 0) & (labels == 0)] = number
    return labels


def split_of(image_id: str) -> str:
    """ "tuning" or "held_out" (module docstring)."""
    return "tuning" if image_id[0] in TUNING_DIGITS else "held_out"


class AnnotatedImage:
    """One image, its instance labels, its id and its split."""

    def __init__(self, image_id: str, image: np.ndarray, labels: np.ndarray) -> None:
        self.id, self.image, self.labels = image_id, image, labels
        self.split = split_of(image_id)


def folder_images(stage1_train: Path) -> Iterator[AnnotatedImage]:
    """Every fluorescence image of a stage1_train folder, in id order."""
    for folder in sorted(p for p in Path(stage1_train).iterdir() if p.is_dir()):
        image = fluorescence_image(folder)
        if image is not None:
            yield AnnotatedImage(folder.name, image, load_labels(folder, image.shape))


def sample_images(sample: Path) -> Iterator[AnnotatedImage]:
    """The images of the kept sample (its manifest.csv's order)."""
    import tifffile

    with (Path(sample) / "manifest.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            stem = row["id"][:12]
            image = tifffile.imread(Path(sample) / f"{stem}_image.tif")
            yield AnnotatedImage(row["id"], image, tifffile.imread(Path(sample) / f"{stem}_labels.tif"))
