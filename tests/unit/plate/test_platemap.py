"""Plate maps as people write them: spelling of wells, a byte-order mark, controls, and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from openhcs_rules.errors import ConfigError
from openhcs_rules.plate.platemap import metadata_column, read_platemap

WELLS_96 = [f"{r}{c:02d}" for r in "ABCDEFGH" for c in range(1, 13)]


def write(tmp_path: Path, text: str, name: str = "map.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def test_a_map_gives_metadata_columns_and_control_roles(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Well,treatment,concentration (uM),Control\na1,DMSO,0,Negative\nA02,staurosporine,1e-6,positive\n"
        "B01,compound_007,10,\n\n",
        encoding="utf-8-sig",  # as Excel saves "CSV UTF-8"
    )
    found = read_platemap(path, WELLS_96)
    assert found.columns == ("Metadata_treatment", "Metadata_concentration__uM_", "Metadata_control")
    assert found.metadata("A01") == {
        "Metadata_treatment": "DMSO",
        "Metadata_concentration__uM_": "0",
        "Metadata_control": "negative",
    }
    assert found.metadata("B01")["Metadata_treatment"] == "compound_007"  # text as written, not 7
    assert found.metadata("H12") == dict.fromkeys(found.columns, "")  # not listed: not annotated
    assert found.controls("negative") == ["A01"] and found.controls("positive") == ["A02"]
    assert found.control_role("B01") == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("treatment\nDMSO\n", "no 'well' column"),
        ("well,a,a\nA01,1,2\n", "repeated column"),
        ("well,treatment\nA01,x\nA1,y\n", "line 3: well A01 is listed twice"),
        ("well,treatment\n1A,x\n", "not a well name"),
        ("well,treatment\nA13,x\n", "line 2: well A13 is not on this plate"),
        ("well,treatment\nA01,x,extra\n", "line 2: 3 values for 2 columns"),
        ("well,control\nA01,neg\n", "line 2: control 'neg'"),
    ],
)
def test_malformed_maps_are_refused_with_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        read_platemap(write(tmp_path, text), WELLS_96)
    assert "map.csv" in str(error.value)


def test_unreadable_maps_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        read_platemap(tmp_path / "missing.csv")
    binary = tmp_path / "map.xlsx"
    binary.write_bytes(b"PK\x03\x04\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="save it as CSV UTF-8"):
        read_platemap(binary)


def test_metadata_column_names_are_safe() -> None:
    assert metadata_column("treatment") == "Metadata_treatment"
    assert metadata_column(" dose (µM) ") == "Metadata_dose___M_"
