"""A well job on a full (or read-only) disk names the path it could not write and what to do about it.

The disk is real: a small tmpfs mounted for the test (needs root, as here and in CI), filled up so the
well's images do not fit, or remounted read-only. No write is mocked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from openhcs_rules.demo.synthetic import generate_imagexpress_plate
from openhcs_rules.jobs.discover import discover
from openhcs_rules.jobs.illumination import estimate_plate_illumination
from openhcs_rules_testkit.workflow import PIPELINE, snakemake_env

#: free space left on the small disk: well below one well's images (256 x 256 float32 noise, 3 levels)
FREE_BYTES = 48 * 1024


def _mount_tmpfs(folder: Path, options: str) -> None:
    """Mount a small tmpfs on ``folder`` or skip the test, saying why."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a real full disk) needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    folder.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {done.stderr.strip()}")


def _fill(folder: Path, leave: int) -> None:
    """Fill the filesystem of ``folder`` until only about ``leave`` bytes are free."""
    stats = os.statvfs(folder)
    size = stats.f_bavail * stats.f_frsize - leave
    with open(folder / "filler", "wb") as handle:
        handle.write(b"\0" * size)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at ``tmp_path/disk``, unmounted afterwards."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=1m")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.fixture
def plate_json(tmp_path: Path) -> Path:
    folder = tmp_path / "plate"
    generate_imagexpress_plate(folder, "p", wells=["B02"], sites=1, channels=1, z_planes=1, shape=(256, 256), seed=3)
    path = tmp_path / "plate.json"
    estimate_plate_illumination(discover("p", folder, path), tmp_path / "illumination.npz", 8)
    return path


def _process_wells(plate_json: Path, wells_dir: Path, manifest: Path) -> subprocess.CompletedProcess:
    """The rule's command, as Snakemake runs it: what it prints is what a user reads in the job's log."""
    command = [sys.executable, "-m", "openhcs_rules", "process-wells", "--plate-json", str(plate_json)]
    command += ["--chunk", "B02", "--pipeline", str(PIPELINE), "--wells-dir", str(wells_dir)]
    command += ["--manifest", str(manifest), "--illumination", str(plate_json.with_name("illumination.npz"))]
    command += ["--gpu", "numpy"]
    return subprocess.run(command, capture_output=True, text=True, env=snakemake_env(), timeout=300)


def _assert_nothing_looks_done(well: Path) -> None:
    """No summary.json, no images.zarr, and no temporaries either: the failed write cleaned up after itself."""
    assert not well.exists() or [p.name for p in well.iterdir()] == []


def test_a_full_disk_fails_the_well_naming_the_path_and_what_to_do(tmp_path, small_disk, plate_json):
    _fill(small_disk, FREE_BYTES)
    wells = small_disk / "wells"
    done = _process_wells(plate_json, wells, tmp_path / "m.json")
    assert done.returncode != 0
    error = done.stderr.splitlines()[-4:]  # the job's last words: the failed wells, one line each
    failed = next(line for line in error if line.strip().startswith("B02:"))
    assert "No space left on device" in failed and str(wells / "B02") in failed, done.stderr[-2000:]
    assert "free space" in failed.lower()
    _assert_nothing_looks_done(wells / "B02")

    (small_disk / "filler").unlink()  # the user frees space and reruns the same command
    done = _process_wells(plate_json, wells, tmp_path / "m.json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (wells / "B02" / "summary.json").exists()


def test_a_read_only_disk_fails_the_well_naming_the_path_and_what_to_do(tmp_path, small_disk, plate_json):
    remount = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True, text=True)
    if remount.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {remount.stderr.strip()}")
    wells = small_disk / "wells"
    done = _process_wells(plate_json, wells, tmp_path / "m.json")
    assert done.returncode != 0
    failed = next(line for line in done.stderr.splitlines()[-4:] if line.strip().startswith("B02:"))
    assert "Read-only file system" in failed and str(wells / "B02") in failed, done.stderr[-2000:]
    assert "permission" in failed.lower() or "read-only" in failed.lower()
    assert not wells.exists()
