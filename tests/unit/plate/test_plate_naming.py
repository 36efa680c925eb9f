import pytest

from openhcs_rules.plate.naming import (
    PLATE_LAYOUTS,
    layout_for_well_count,
    normalise_well_name,
    parse_virtual_filename,
    parse_well_name,
    row_name,
    virtual_filename,
    well_name,
)


def test_rows_continue_past_z_for_1536_well_plates():
    assert [row_name(i) for i in (0, 25, 26, 31)] == ["A", "Z", "AA", "AF"]
    rows, columns = layout_for_well_count(1536)
    assert (rows, columns) == (32, 48)
    assert well_name(rows - 1, columns - 1) == "AF48"


@pytest.mark.parametrize("count", sorted(PLATE_LAYOUTS))
def test_every_well_of_every_standard_plate_round_trips(count):
    rows, columns = PLATE_LAYOUTS[count]
    names = {well_name(r, c) for r in range(rows) for c in range(columns)}
    assert len(names) == count
    for name in names:
        assert well_name(*parse_well_name(name)) == name


def test_well_names_are_normalised():
    assert normalise_well_name("b3") == "B03"
    assert parse_well_name("AA01") == (26, 0)
    with pytest.raises(ValueError, match="not a well name"):
        parse_well_name("3B")


def test_virtual_filename_is_one_based_and_round_trips():
    name = virtual_filename("AF48", 2, 3, 4, 5)
    assert name == "AF48_s002_w3_z004_t005.tif"
    assert parse_virtual_filename(name) == {"well": "AF48", "site": 2, "channel": 3, "z": 4, "t": 5}
    with pytest.raises(ValueError, match="1-based"):
        virtual_filename("A01", 0, 1, 1, 1)
