"""Configs written by a careless or hostile user: refused by one shared check (:func:`check_screen`).

`openhcs-rules validate` and the workflow call this check; that both refuse the same configs with the same
message, and that what is accepted runs without escaping, is checked through the real CLI and Snakemake in
tests/workflow/test_config_safety_workflow.py.
"""

from __future__ import annotations

import pytest

from openhcs_rules.config import check_screen, validate_screen_config
from openhcs_rules.errors import ConfigError
from openhcs_rules_testkit.workflow import PIPELINE

TINY = {"wells": ["B02"], "sites": 1, "channels": 1, "z_planes": 1, "size": 96, "seed": 3}


def _screen(**extra):
    return {"plates": {"demo": {"source": "synthetic", "synthetic": dict(TINY)}}, "pipeline": str(PIPELINE), **extra}


# -- names are matched as whole strings ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["p\n", "p\nrm", "p;x", "p q", "-p", "p$(id)"])
def test_plate_names_are_matched_as_whole_strings(name):
    with pytest.raises(ConfigError, match="cannot be used as a plate name"):
        validate_screen_config({"plates": {name: {"source": "synthetic"}}})


def test_synthetic_well_names_are_matched_as_whole_strings():
    with pytest.raises(ConfigError, match="synthetic.wells.0"):
        validate_screen_config({"plates": {"p": {"source": "synthetic", "synthetic": {"wells": ["B02\n"]}}}})


# -- output folders that would put results somewhere else ------------------------------------------------
UP_TO_ROOT = "<as many ../ as it takes to reach the root>"


@pytest.mark.parametrize(
    ("out", "why"),
    [
        ("", "should be non-empty"),
        ("   ", "is empty"),
        ("/", "filesystem root"),
        ("//", "filesystem root"),
        (UP_TO_ROOT, "filesystem root"),
        ("res\nults", "control character"),
    ],
)
def test_output_dir_that_is_empty_root_or_has_control_characters_is_refused(tmp_path, out, why):
    if out == UP_TO_ROOT:
        out = "a/" + "../" * len(tmp_path.parts)
    with pytest.raises(ConfigError, match=why):
        check_screen(_screen(output={"dir": out}), workdir=tmp_path)


def test_output_dir_inside_an_input_plate_is_refused(tmp_path):
    plate = tmp_path / "plate"
    plate.mkdir()
    config = {
        "plates": {"p": {"source": "disk", "path": str(plate)}},
        "pipeline": str(PIPELINE),
        "output": {"dir": str(plate / "results")},
    }
    with pytest.raises(ConfigError, match="inside the input plate 'p'"):
        check_screen(config, workdir=tmp_path)


def test_allowed_roots_confine_every_path_symlinks_followed(tmp_path):
    root = tmp_path / "data"
    (root / "plate").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "sneaky").symlink_to(tmp_path / "elsewhere")
    pipeline = root / "pipeline.py"
    pipeline.write_text(PIPELINE.read_text())
    good = {
        "plates": {"p": {"source": "disk", "path": str(root / "plate")}},
        "pipeline": str(pipeline),
        "output": {"dir": str(root / "results")},
    }
    assert check_screen(good, workdir=root, allowed_roots=[root])["output"]["dir"] == str(root / "results")
    for out in ("../results", str(root / "sneaky" / "results"), "/tmp/results"):
        bad = {**good, "output": {"dir": out}}
        with pytest.raises(ConfigError, match="outside the allowed folders"):
            check_screen(bad, workdir=root, allowed_roots=[root])
