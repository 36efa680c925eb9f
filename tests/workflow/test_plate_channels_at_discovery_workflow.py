"""A mixed screen through the real workflow: a per-plate ``nuclei_channel`` serves plates whose nuclei are in
different channels, and a channel a plate lacks stops that plate at discovery, before any other job of it.

The discovery check itself, in process: tests/unit/jobs/test_plate_channels_at_discovery.py.
"""

from __future__ import annotations

import pytest

from openhcs_rules_testkit.workflow import PIPELINE, snakemake, write_config

OPERA = "opera_phenix_v5"
IMAGEXPRESS = "imagexpress_exported/9987_Plate_3434"


@pytest.mark.workflow
def test_a_mixed_screen_runs_with_a_per_plate_nuclei_channel_and_stops_only_the_plate_that_lacks_it(
    tmp_path, fixtures_dir
):
    plates = {
        "ix": {"source": "disk", "path": str(fixtures_dir / IMAGEXPRESS)},
        "opera": {"source": "disk", "path": str(fixtures_dir / OPERA), "nuclei_channel": 4},
        "opera_wrong": {"source": "disk", "path": str(fixtures_dir / OPERA)},
    }
    config = write_config(tmp_path, {"plates": plates, "nuclei_channel": "DAPI", "pipeline": str(PIPELINE)})
    targets = [f"results/{name}/illumination.npz" for name in plates]
    done = snakemake(tmp_path, config, *targets, "--keep-going")
    assert done.returncode != 0  # opera_wrong has no DAPI
    assert (tmp_path / "results/ix/illumination.npz").is_file()
    assert (tmp_path / "results/opera/illumination.npz").is_file()
    assert not (tmp_path / "results/opera_wrong/plate.json").exists()
    assert not (tmp_path / "logs/opera_wrong/estimate_illumination.log").exists(), "a later job of it ran"
    log = (tmp_path / "logs/opera_wrong/discover.log").read_text()
    assert "nuclei_channel 'DAPI' is not a channel of this plate" in log and "plates.opera_wrong" in log
