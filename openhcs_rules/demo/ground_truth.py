"""The true object counts a generated demo plate records (``ground_truth.csv``, written last).

Its own module, apart from the generator: the plate's assembly reads these counts for every demo plate, and
importing the generator (scipy.ndimage, tifffile) cost that job ~0.4 s for a CSV of a few lines.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

GROUND_TRUTH_FILE = "ground_truth.csv"


def read_ground_truth(plate_dir: str | os.PathLike[str], timepoint: int = 1) -> dict[str, dict[int, int]]:
    """{well: {site: true count}} of one time point from a generated plate's ``ground_truth.csv``.

    A plate folder without the file was not generated completely (the file is written last).
    """
    path = Path(plate_dir) / GROUND_TRUTH_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the synthetic plate was not generated completely")
    result: dict[str, dict[int, int]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if int(row["t"]) == timepoint:
                result.setdefault(row["well"], {})[int(row["site"])] = int(row["true_count"])
    return result
