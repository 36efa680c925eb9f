"""A screen's channels are checked against each plate at discovery, before any other job of that plate.

The case that motivated it: a screen mixing an Opera plate (nuclei in one of six channels, none named
DAPI) with ImageXpress plates (DAPI is channel 1). One top-level ``nuclei_channel`` cannot serve both;
``plates.<p>.nuclei_channel`` can, and a channel a plate lacks stops that plate at discovery.
"""

from __future__ import annotations

import pytest
from workflow_helpers import PIPELINE, snakemake, write_config

from openhcs_rules.errors import ConfigError
from openhcs_rules.jobs.discover import discover

OPERA = "opera_phenix_v5"
IMAGEXPRESS = "imagexpress_exported/9987_Plate_3434"


def test_a_nuclei_channel_the_plate_lacks_stops_discovery_naming_its_channels(tmp_path, fixtures_dir):
    out = tmp_path / "plate.json"
    with pytest.raises(ConfigError) as info:
        discover("opera", fixtures_dir / OPERA, out, nuclei_channel="DAPI", pipeline_path=PIPELINE)
    message = str(info.value)
    assert "nuclei_channel 'DAPI' is not a channel of this plate" in message
    assert "4 (Alexa 488)" in message and "plates.opera.nuclei_channel" in message
    assert message.count("is not a channel of this plate") == 1  # said once, not once per step using it
    assert "(nuclei_channel is" not in message
    assert not out.exists(), "plate.json written for a plate its wells cannot be processed on"


def test_channel_names_and_indices_the_plate_has_pass(tmp_path, fixtures_dir):
    plate = discover(
        "ix", fixtures_dir / IMAGEXPRESS, tmp_path / "a.json", nuclei_channel="dapi", pipeline_path=PIPELINE
    )
    assert plate.channel(1).name == "DAPI"
    discover("opera", fixtures_dir / OPERA, tmp_path / "b.json", nuclei_channel=4, pipeline_path=PIPELINE)
    with pytest.raises(ConfigError, match="nuclei_channel 7 is not a channel"):
        discover("opera", fixtures_dir / OPERA, tmp_path / "c.json", nuclei_channel=7)


def test_a_step_naming_a_missing_channel_stops_discovery(tmp_path, fixtures_dir):
    pipeline = tmp_path / "p.py"
    pipeline.write_text(
        "from openhcs_rules.pipeline import Pipeline, Step\n"
        "pipeline = Pipeline(name='p', steps=[Step(func='denoise', channel='GFP'), Step(func='segment_nuclei')])\n"
    )
    with pytest.raises(ConfigError, match=r"channel 'GFP' is not in this plate"):
        discover("ix", fixtures_dir / IMAGEXPRESS, tmp_path / "a.json", pipeline_path=pipeline)


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
