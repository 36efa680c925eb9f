"""Input plates are never written to: discovery, illumination and processing a well leave every byte alone.

Each real fixture plate (copied into tmp_path, since shared fixtures are read-only and a write there would
fail loudly rather than be detected) and each generated Harmony V6/V7 export and MetaXpress direct transfer
is fingerprinted (path, size, sha256 and mtime of every file, and every folder) before and after the jobs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from openhcs_rules.jobs.discover import discover
from openhcs_rules.jobs.illumination import estimate_plate_illumination
from openhcs_rules.jobs.process_well import process_well
from openhcs_rules_testkit.instruments.harmony import CELL_PAINTING, HarmonyExport, write_export
from openhcs_rules_testkit.instruments.metaxpress import write_direct_transfer
from openhcs_rules_testkit.workflow import PIPELINE

FIXTURE_PLATES = [
    "imagexpress_exported/9987_Plate_3420",
    "imagexpress_exported/9987_Plate_3434",
    "imagexpress_exported/9987_Plate_3435",
    "imagexpress_direct_singlechannel",
    "opera_phenix_v5",
]
GENERATED = {
    "harmony_v6": lambda root: write_export(root, HarmonyExport(6, CELL_PAINTING[:3], shape=(128, 128), fields=2)),
    "harmony_v7": lambda root: write_export(root, HarmonyExport(7, CELL_PAINTING[:3], shape=(128, 128), timepoints=2)),
    "metaxpress_direct_repeated_names": write_direct_transfer,
}


def fingerprint(root: Path) -> dict[str, tuple[int, str, int] | str]:
    """{relative path: (size, sha256, mtime_ns)} for files and 'dir' for folders, symlinks not followed."""
    prints: dict[str, tuple[int, str, int] | str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            prints[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            path = Path(folder, name)
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            prints[os.path.relpath(path, root)] = (stat.st_size, digest, stat.st_mtime_ns)
    return prints


def _discover_and_process_one_well(root: Path, out: Path) -> None:
    plate = discover("input_plate", root, out / "plate.json")
    estimate_plate_illumination(plate, out / "illumination.npz", 4)
    well = plate.well_names[0]
    process_well(out / "plate.json", well, PIPELINE, out / well, out / "illumination.npz", gpu="numpy")


def _assert_untouched(root: Path, out: Path) -> None:
    before = fingerprint(root)
    _discover_and_process_one_well(root, out)
    after = fingerprint(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], f"the input plate changed: {changed[:10]}"
    assert (out / "plate.json").is_file()


@pytest.mark.parametrize("plate", FIXTURE_PLATES)
def test_real_plates_are_not_written_to(fixtures_dir: Path, tmp_path: Path, plate: str) -> None:
    root = tmp_path / "input" / Path(plate).name
    shutil.copytree(fixtures_dir / plate, root)
    _assert_untouched(root, tmp_path / "out")


@pytest.mark.parametrize("kind", sorted(GENERATED))
def test_generated_plates_are_not_written_to(tmp_path: Path, kind: str) -> None:
    root = GENERATED[kind](tmp_path / "input" / kind)
    _assert_untouched(root, tmp_path / "out")


def test_fingerprint_sees_a_changed_byte_a_new_file_and_a_touched_mtime(tmp_path: Path) -> None:
    """The check above is only worth something if a write of any kind shows up in the fingerprint."""
    root = write_export(tmp_path / "plate", HarmonyExport(7, CELL_PAINTING[:1]))
    tiff = next(root.rglob("*.tiff"))
    before = fingerprint(root)
    os.utime(tiff, ns=(tiff.stat().st_atime_ns, tiff.stat().st_mtime_ns + 1))
    assert fingerprint(root) != before
    before = fingerprint(root)
    (tiff.parent / "plate.json").write_text("{}")
    assert fingerprint(root) != before
    before = fingerprint(root)
    data = bytearray(tiff.read_bytes())
    data[-1] ^= 1
    tiff.write_bytes(bytes(data))
    assert fingerprint(root)[str(tiff.relative_to(root))] != before[str(tiff.relative_to(root))]
