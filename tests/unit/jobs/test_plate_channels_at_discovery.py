"""A screen's channels are checked against each plate at discovery, before any other job of that plate.

The case that motivated it: a screen mixing an Opera plate (nuclei in one of six channels, none named
DAPI) with ImageXpress plates (DAPI is channel 1). One top-level ``nuclei_channel`` cannot serve both;
``plates.<p>.nuclei_channel`` can, and a channel a plate lacks stops that plate at discovery. (Such a screen
through the real workflow: tests/workflow/test_plate_channels_at_discovery_workflow.py.)
"""

from __future__ import annotations

import pytest

from openhcs_rules.errors import ConfigError
from openhcs_rules.jobs.discover import discover
from openhcs_rules_testkit.workflow import PIPELINE

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
