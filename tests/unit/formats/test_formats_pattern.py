"""The pattern format: plates of instruments without a reader, file names parsed by a configured expression."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from openhcs_rules.cli import main
from openhcs_rules.errors import ConfigError, FormatError
from openhcs_rules.formats.pattern import PatternHandler, compile_pattern, has_nested_repetition
from openhcs_rules.formats.registry import detect_format, discover_plate, handler_for, read_plane
from openhcs_rules.plate.model import ImageKey

#: BioTek Cytation (Gen5 export) style: '<well>_<read>_<channel>_<site>_<filter>_<index>.tif'
CYTATION = r"^(?P<well>[A-P]\d{1,2})_\d+_(?P<channel>\d)_(?P<site>\d+)_(?P<name>[A-Za-z ]+)_\d+\.tif$"
CYTATION_OK = r"^(?P<well>[A-P]\d{1,2})_\d+_(?P<channel>\d)_(?P<site>\d+)_[A-Za-z ]+_\d+\.tif$"


def _tiff(path: Path, value: int, shape: tuple[int, int] = (6, 7)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.full(shape, value, np.uint16))
    return path


def _cytation(root: Path) -> None:
    """2 wells x 2 sites x 2 channels, names as a Cytation 5 export writes them, plus a stray file."""
    for well in ("B2", "B10"):
        for site in (1, 2):
            for channel, filter_name in ((1, "DAPI"), (2, "GFP")):
                _tiff(root / f"{well}_01_{channel}_{site}_{filter_name}_001.tif", 100 * channel + site)
    _tiff(root / "plate_overview.tif", 0)
    (root / "experiment.xpt").write_text("<gen5/>")


def test_cytation_folder_with_numbered_channels(tmp_path: Path) -> None:
    _cytation(tmp_path)
    plate = discover_plate(tmp_path, format_name="pattern", pattern=CYTATION_OK)
    assert plate.format == "pattern"
    assert plate.well_names == ["B02", "B10"]
    assert plate.sites == [1, 2] and plate.channel_indices == [1, 2] and plate.z_planes == [1]
    assert [c.name for c in plate.channels] == ["w1", "w2"]
    assert (plate.rows, plate.columns) == (8, 12)  # smallest plate holding B10, warned
    assert any("1 of 9 TIFF file(s) do not match" in w and "plate_overview.tif" in w for w in plate.warnings)
    image = next(i for i in plate.images() if i.key == ImageKey("B10", 2, 2, 1, 1))
    assert read_plane(plate, image)[0, 0] == 202
    assert handler_for("pattern").read_plane(plate, image)[0, 0] == 202  # a worker needs no pattern


def test_named_channels_z_and_time_with_zero_based_numbers(tmp_path: Path) -> None:
    """Nikon-style export: row/column numbers, 0-based t and z, channel names."""
    for t in (0, 1):
        for z in (0, 1, 2):
            for channel in ("DAPI", "mCherry"):
                _tiff(tmp_path / f"t{t:02d}" / f"r03c11_z{z}_{channel}.tif", t * 100 + z * 10 + len(channel))
    pattern = r"t(?P<t>\d+)/r(?P<row>\d+)c(?P<column>\d+)_z(?P<z>\d+)_(?P<channel>[A-Za-z]+)\.tif$"
    plate = PatternHandler(pattern, layout=384).parse(tmp_path)
    assert plate.well_names == ["C11"] and (plate.rows, plate.columns) == (16, 24)
    assert plate.timepoints == [1, 2] and plate.z_planes == [1, 2, 3]
    assert [(c.index, c.name) for c in plate.channels] == [(1, "DAPI"), (2, "mCherry")]
    image = next(i for i in plate.images() if i.key == ImageKey("C11", 1, 2, 3, 2))
    assert read_plane(plate, image)[0, 0] == 100 + 20 + len("mCherry")
    assert any("'t' numbers start at 0" in w for w in plate.warnings)


def test_no_file_matches_lists_examples(tmp_path: Path) -> None:
    _cytation(tmp_path)
    with pytest.raises(
        FormatError, match=r"no TIFF file .* matches .*9 TIFF file\(s\) tried.*B10_01_1_1_DAPI_001\.tif"
    ):
        PatternHandler(r"(?P<well>[A-P]\d{2})_s(?P<site>\d)\.tif").parse(tmp_path)


def test_pattern_that_merges_files_is_an_error(tmp_path: Path) -> None:
    _cytation(tmp_path)
    with pytest.raises(FormatError, match=r"both match the pattern as well B10 site 1 channel 1"):
        PatternHandler(r"^(?P<well>[A-P]\d{1,2})_").parse(tmp_path)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "needs a regular expression"),
        ("(?P<well>[A-P]\\d+", "not a valid regular expression"),
        ("(?P<site>\\d+)\\.tif", "needs a named group for the well"),
        ("(?P<row>[A-P])(?P<col>\\d+)", "unknown group name"),
        (CYTATION, "unknown group name.*name"),
        ("(?P<well>[A-P]\\d+)(?P<row>x)(?P<column>y)", "not both"),
        ("(?P<well>(\\w+)+)", "exponential"),
        ("x" * 600 + "(?P<well>A01)", "more than 500"),
    ],
)
def test_bad_patterns_are_config_errors_naming_the_key(pattern: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"plates\.<plate>\.pattern.*{message}"):
        compile_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "nested"),
    [
        (r"(a+)+", True),
        (r"(?:x*y)*", True),
        (r"((ab)+c)*", True),
        (r"(a|b)+", False),
        (r"(?:_s(?P<site>\d+))?", False),
        (r"[(+]+(?P<well>\w\d+)", False),
        (r"(?P<well>[A-P]\d{1,2})_(?P<site>\d+)", False),
    ],
)
def test_nested_repetition(pattern: str, nested: bool) -> None:
    assert has_nested_repetition(pattern) is nested


def test_well_outside_any_plate_names_the_file(tmp_path: Path) -> None:
    _tiff(tmp_path / "r40c01.tif", 1)
    with pytest.raises(FormatError, match=r"r40c01\.tif.*row 40"):
        PatternHandler(r"r(?P<row>\d+)c(?P<column>\d+)").parse(tmp_path)


def test_layout_too_small_for_the_wells(tmp_path: Path) -> None:
    _cytation(tmp_path)
    with pytest.raises(FormatError, match=r"B10 .*outside the 24-well plate"):
        PatternHandler(CYTATION_OK, layout=24).parse(tmp_path)


def test_detection_never_picks_pattern_and_auto_refuses_a_pattern(tmp_path: Path) -> None:
    _cytation(tmp_path)
    with pytest.raises(FormatError, match="not a plate folder of any supported format"):
        detect_format(tmp_path)
    with pytest.raises(FormatError, match="only apply to a named format"):
        discover_plate(tmp_path, pattern=CYTATION_OK)
    with pytest.raises(FormatError, match="takes no option"):
        discover_plate(tmp_path, format_name="imagexpress", pattern=CYTATION_OK)


def test_cli_inspect_and_discover_take_a_pattern(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _cytation(tmp_path / "plate")
    args = ["--format", "pattern", "--pattern", CYTATION_OK, "--pattern-layout", "96"]
    assert main(["inspect", str(tmp_path / "plate"), *args]) == 0
    assert "format      pattern  layout 8x12" in capsys.readouterr().out
    out = tmp_path / "plate.json"
    assert main(["discover", "--name", "p1", "--path", str(tmp_path / "plate"), "--out", str(out), *args]) == 0
    assert '"format": "pattern"' in out.read_text()
    # the rule passes an empty pattern for plates of other formats: it means none
    assert main(["inspect", str(tmp_path / "plate"), "--format", "auto", "--pattern", "", "--pattern-layout", ""]) == 2
    assert "not a plate folder of any supported format" in capsys.readouterr().err


def test_screen_config_requires_a_pattern_for_format_pattern() -> None:
    from openhcs_rules.config.validate import validate_screen_config

    plate = {"source": "disk", "path": "/data/cytation1", "format": "pattern"}
    with pytest.raises(ConfigError, match=r"plates\.p1: 'pattern' is a required property"):
        validate_screen_config({"plates": {"p1": plate}})
    with pytest.raises(ConfigError, match=r"plates\.p1\.pattern_layout: 97 is not one of"):
        validate_screen_config({"plates": {"p1": {**plate, "pattern": CYTATION_OK, "pattern_layout": 97}}})
    config = validate_screen_config({"plates": {"p1": {**plate, "pattern": CYTATION_OK, "pattern_layout": 96}}})
    assert config["plates"]["p1"]["pattern"] == CYTATION_OK
    assert validate_screen_config({"plates": {"p2": {"source": "disk", "path": "/x", "format": "yokogawa"}}})
