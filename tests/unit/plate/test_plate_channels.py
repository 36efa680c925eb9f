"""Channel names are unique from discovery on (plate.channels), and instrument plate ids become plate names."""

from __future__ import annotations

import pytest

from openhcs_rules.plate.channels import channel_key, sanitize_channel_name, unique_channel_names
from openhcs_rules.plate.model import ChannelInfo, ImageKey, ImageStructure, PlateStructure, build_wells
from openhcs_rules.plate.naming import safe_plate_name


def _names(channels: list[ChannelInfo]) -> list[str]:
    return [c.name for c in channels]


def test_distinct_names_are_kept_as_written() -> None:
    warnings: list[str] = []
    channels = [ChannelInfo(1, "DAPI", 452.0), ChannelInfo(2, "Texas Red")]
    assert unique_channel_names(channels, warnings) == channels
    assert warnings == []


def test_names_clashing_once_sanitised_are_all_renamed_with_a_warning_each() -> None:
    warnings: list[str] = []
    channels = [
        ChannelInfo(1, "Alexa 488"),
        ChannelInfo(2, "Alexa_488"),
        ChannelInfo(3, "alexa-488"),
        ChannelInfo(4, ""),
    ]
    result = unique_channel_names(channels, warnings)
    assert _names(result) == ["Alexa 488 ch1", "Alexa_488 ch2", "alexa-488 ch3", "ch4"]
    assert len({channel_key(n) for n in _names(result)}) == 4
    assert len(warnings) == 4 and "channel 4 has no usable name" in warnings[3]


def test_qualifiers_the_instrument_wrote_come_first_and_shared_ones_are_skipped() -> None:
    warnings: list[str] = []
    channels = [ChannelInfo(1, "GFP"), ChannelInfo(2, "GFP"), ChannelInfo(3, "GFP")]
    qualifiers = {1: ["Maximum projection", "w1"], 2: [None, "w2"], 3: ["Maximum projection", "w3"]}
    assert _names(unique_channel_names(channels, warnings, qualifiers)) == ["GFP w1", "GFP w2", "GFP w3"]
    qualifiers = {1: ["Maximum projection", "w1"], 2: [None, "w2"], 3: [None, "w3"]}
    assert _names(unique_channel_names(channels, [], qualifiers)) == ["GFP Maximum projection", "GFP w2", "GFP w3"]


def test_a_new_name_never_takes_an_existing_one() -> None:
    channels = [ChannelInfo(1, "A"), ChannelInfo(2, "A"), ChannelInfo(3, "A ch1")]
    names = _names(unique_channel_names(channels, []))
    assert names[2] == "A ch1" and len({channel_key(n) for n in names}) == 3


def test_old_plate_json_with_repeated_names_loads_with_unique_names() -> None:
    """A plate.json written before discovery made names unique still processes: the model renames on load."""
    images = [ImageStructure(ImageKey("A01", 1, c, 1, 1), f"f{c}.tif") for c in (1, 2)]
    plate = PlateStructure(
        "p", "imagexpress", "/x", 8, 12, [ChannelInfo(1, "FITC"), ChannelInfo(2, "FITC")], build_wells(images)
    )
    data = {**plate.to_dict(), "warnings": []}
    data["channels"] = [
        {"index": 1, "name": "FITC", "wavelength_nm": None},
        {"index": 2, "name": "FITC", "wavelength_nm": None},
    ]
    reloaded = PlateStructure.from_dict(data)
    assert _names(reloaded.channels) == ["FITC ch1", "FITC ch2"]
    assert sum("renamed" in w for w in reloaded.warnings) == 2
    assert _names(PlateStructure.from_dict(reloaded.to_dict()).channels) == ["FITC ch1", "FITC ch2"]


def test_sanitised_form_matches_measurement_columns() -> None:
    from openhcs_rules.functions.measurement import sanitize_channel_name as measurement_sanitize

    for name in ["Texas Red", "405ex, 570-630-em)", "µ-GFP", " DAPI "]:
        assert sanitize_channel_name(name) == measurement_sanitize(name)


@pytest.mark.parametrize(
    ("plate_id", "name"),
    [
        ("BR00122249", "BR00122249"),
        ("240624_WES_Perturbs_n_densities_1.1", "240624_WES_Perturbs_n_densities_1.1"),
        ("BR00122249 / rep #1", "BR00122249_rep_1"),
        ("  _plate 7_ ", "plate_7"),
        ("///", None),
        ("", None),
        (None, None),
    ],
)
def test_safe_plate_name(plate_id: str | None, name: str | None) -> None:
    assert safe_plate_name(plate_id) == name
