import pytest

from openhcs_rules.config import load_screen_config, validate_screen_config
from openhcs_rules.errors import ConfigError
from openhcs_rules_testkit.paths import REPO


def test_defaults_are_filled_in():
    config = validate_screen_config({"plates": {"demo": {"source": "synthetic"}}})
    assert config["output"] == {"backend": "zarr", "dir": "results", "pyramid_levels": 3, "images": "raw"}
    assert config["plates"]["demo"]["synthetic"]["sites"] == 2
    assert config["nuclei_channel"] is None
    assert config["wells_per_job"] == "auto"


def test_unknown_key_names_the_path_and_suggests_the_right_key():
    with pytest.raises(ConfigError) as info:
        validate_screen_config({"plates": {"demo": {"sorce": "disk", "path": "x"}}})
    message = str(info.value)
    assert "plates.demo.sorce" in message and "Did you mean 'source'" in message


def test_wrong_type_and_enum_are_readable():
    with pytest.raises(ConfigError) as info:
        validate_screen_config({"plates": {"p": {"source": "disk", "path": 3}}, "gpu": "yes"})
    message = str(info.value)
    assert "plates.p.path: expected string, got int 3" in message
    assert "gpu: 'yes' is not one of: auto, numpy, cupy" in message


@pytest.mark.parametrize("value", [0, "x", 2.5])
def test_wells_per_job_must_be_auto_or_a_positive_integer(value):
    with pytest.raises(ConfigError, match=r"wells_per_job: .* is not allowed; use an integer >= 1 or 'auto'"):
        validate_screen_config({"plates": {"p": {"source": "synthetic"}}, "wells_per_job": value})
    config = validate_screen_config({"plates": {"p": {"source": "synthetic"}}, "wells_per_job": 24})
    assert config["wells_per_job"] == 24


def test_plate_names_must_be_usable_as_folders_and_disk_plates_need_a_path():
    with pytest.raises(ConfigError, match="cannot be used as a plate name"):
        validate_screen_config({"plates": {"my plate/1": {"source": "synthetic"}}})
    with pytest.raises(ConfigError, match="needs 'path'"):
        validate_screen_config({"plates": {"p": {"source": "disk"}}})


def test_bundled_demo_config_is_valid():

    config = load_screen_config(REPO / "config" / "config.yaml")
    assert list(config["plates"]) == ["demo_plate"]


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "screen.yaml"
    path.write_text("plates: [unclosed\n")
    with pytest.raises(ConfigError, match="screen.yaml: not valid YAML"):
        load_screen_config(path)


def test_a_pattern_plate_s_expression_is_checked_by_validate_and_pattern_keys_need_format_pattern():
    plate = {"source": "disk", "path": "x", "format": "pattern"}
    with pytest.raises(ConfigError, match="plates.p.pattern: .* exponential"):
        validate_screen_config({"plates": {"p": {**plate, "pattern": "(?P<well>(a+)+)"}}})
    with pytest.raises(ConfigError, match="plates.p.pattern: .*well"):
        validate_screen_config({"plates": {"p": {**plate, "pattern": "(?P<site>[0-9])"}}})
    with pytest.raises(ConfigError, match="only used with 'format: pattern'"):
        validate_screen_config({"plates": {"p": {"source": "disk", "path": "x", "pattern": "(?P<well>[A-P][0-9]{2})"}}})
    good = validate_screen_config({"plates": {"p": {**plate, "pattern": r"(?P<well>[A-P]\d{2})_s(?P<site>\d)"}}})
    assert good["plates"]["p"]["format"] == "pattern"
