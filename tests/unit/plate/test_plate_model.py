from openhcs_rules.plate.model import ChannelInfo, ImageKey, ImageStructure, PlateStructure, build_wells


def _plate(drop_site_of=None):
    images = []
    for well in ("B02", "B03"):
        for site in (1, 2):
            if well == drop_site_of and site == 2:
                continue
            for channel in (1, 2):
                images.append(
                    ImageStructure(
                        ImageKey(well, site, channel, 1, 1),
                        f"{well}_{site}_{channel}.tif",
                        stage_position_um=(1.5, -2.0),
                    )
                )
    return PlateStructure(
        "p",
        "imagexpress",
        "/data/p",
        8,
        12,
        [ChannelInfo(1, "DAPI", 452.0), ChannelInfo(2, "FITC")],
        build_wells(images),
        image_shape=(256, 256),
        dtype="uint16",
        pixel_size_um=1.3672,
    )


def test_json_round_trip(tmp_path):
    plate = _plate()
    plate.save_json(tmp_path / "plate.json")
    again = PlateStructure.load_json(tmp_path / "plate.json")
    assert again == plate
    assert again.summary()["channels"][0] == {"index": 1, "name": "DAPI", "wavelength_nm": 452.0}


def test_missing_sites_are_reported_per_well():
    plate = _plate(drop_site_of="B03")
    assert plate.missing_sites() == {"B03": [2]}
    assert _plate().missing_sites() == {}
