"""The fast paths planning and discovery take through plate.json: chunk caching, well names only, compact wells.

A 1,000-plate screen asks for each plate's chunks ~18 times while planning, and a 1536-well plate's
plate.json holds ~70,000 images: these paths skip work, and must never skip a change (rediscovery
rewriting plate.json) or change what is read back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from openhcs_rules.plate import chunks as chunks_module
from openhcs_rules.plate.chunks import PlateChunks, well_chunks
from openhcs_rules.plate.model import (
    ChannelInfo,
    ImageKey,
    ImageStructure,
    PlateStructure,
    build_wells,
)
from openhcs_rules.plate.naming import parse_well_name


def make_plate(wells: list[str], sites: int = 1, channels: int = 1, name: str = "p") -> PlateStructure:
    images = [
        ImageStructure(ImageKey(well, site, channel, 1, 1), f"{well}_s{site}_w{channel}.tif")
        for well in wells
        for site in range(1, sites + 1)
        for channel in range(1, channels + 1)
    ]
    return PlateStructure(name, "imagexpress", "/data", 16, 24, [ChannelInfo(1, "DAPI")], build_wells(images))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every plate.json the chunk cache reads, in order."""
    seen: list[str] = []
    original = PlateStructure.load_well_names

    def counting(path: str | Path) -> list[str]:
        seen.append(os.fspath(path))
        return original(path)

    monkeypatch.setattr(chunks_module.PlateStructure, "load_well_names", staticmethod(counting))
    return seen


def test_chunks_are_read_once_per_version_of_plate_json(tmp_path: Path, reads: list[str]) -> None:
    path = tmp_path / "plate.json"
    make_plate(["A01", "A02", "A03", "A04"]).save_json(path)
    chunks = PlateChunks(2)
    first = chunks(path)
    assert first == {"A01-A02": ["A01", "A02"], "A03-A04": ["A03", "A04"]}
    assert chunks(str(path)) is first  # asked again (as Path or str): not read again
    assert reads == [str(path)]


def test_a_plate_json_rewritten_by_rediscovery_is_read_again(tmp_path: Path, reads: list[str]) -> None:
    path = tmp_path / "plate.json"
    make_plate(["A01", "A02", "A03", "A04"]).save_json(path)
    chunks = PlateChunks(2)
    assert list(chunks(path)) == ["A01-A02", "A03-A04"]
    # rediscovery writes atomically (a new file), here with the same size and the same mtime
    stat = path.stat()
    make_plate(["B01", "B02", "B03", "B04"]).save_json(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    assert list(chunks(path)) == ["B01-B02", "B03-B04"]
    assert len(reads) == 2


def test_a_plate_json_changed_in_place_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "plate.json"
    make_plate(["A01", "A02"]).save_json(path)
    chunks = PlateChunks(1)
    assert list(chunks(path)) == ["A01", "A02"]
    with open(path, "w") as handle:  # same inode, new content
        handle.write(make_plate(["A01", "A02", "A03"]).to_json())
    assert list(chunks(path)) == ["A01", "A02", "A03"]


def test_plate_chunks_match_well_chunks_and_refuse_a_bad_setting(tmp_path: Path) -> None:
    wells = [f"{row}{column:02d}" for row in "ABCDEFGHIJKLMNOP" for column in range(1, 25)]
    path = tmp_path / "plate.json"
    make_plate(wells).save_json(path)
    assert PlateChunks("auto")(path) == well_chunks(wells, "auto")
    # the screen's number of plates (common.smk passes the config's) reaches auto: 4 jobs a plate at 1,000
    assert PlateChunks("auto", plates=1000)(path) == well_chunks(wells, "auto", 1000)
    assert list(PlateChunks("auto", plates=1000)(path)) == ["A01-D24", "E01-H24", "I01-L24", "M01-P24"]
    assert PlateChunks(2, plates=1000)(path) == well_chunks(wells, 2)
    with pytest.raises(ValueError, match="wells_per_job"):
        PlateChunks(0)
    with pytest.raises(ValueError, match="at least one plate"):
        PlateChunks("auto", plates=0)
    with pytest.raises(FileNotFoundError):
        PlateChunks(1)(tmp_path / "missing.json")


def test_load_well_names_gives_plate_order_and_refuses_another_schema(tmp_path: Path) -> None:
    path = tmp_path / "plate.json"
    plate = make_plate(["B01", "AA01", "A10", "A02", "Z48"])
    plate.save_json(path)
    assert PlateStructure.load_well_names(path) == plate.well_names == ["A02", "A10", "B01", "Z48", "AA01"]
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="schema version 99"):
        PlateStructure.load_well_names(path)


def test_plate_json_round_trips_with_one_line_per_well(tmp_path: Path) -> None:
    plate = make_plate(["A01", "A02", "B01"], sites=2, channels=2)
    plate.metadata = {"htd": {"XWells": ["24"]}, "stage_positions": "all sites"}
    plate.warnings.append('a "quoted" warning')
    path = tmp_path / "plate.json"
    plate.save_json(path)
    text = path.read_text()
    assert json.loads(text) == plate.to_dict()
    assert PlateStructure.load_json(path).to_dict() == plate.to_dict()
    well_lines = [line for line in text.splitlines() if line.lstrip().startswith(('"A01"', '"A02"', '"B01"'))]
    assert len(well_lines) == 3  # every well's images on its own line
    empty = PlateStructure("e", "imagexpress", "/data", 8, 12, [], {})
    assert json.loads(empty.to_json()) == empty.to_dict()


def test_build_wells_orders_by_position_then_key() -> None:
    keys = [ImageKey(w, s, c, z, 1) for w in ["b2", "AA01", "A10", "A02"] for s in (2, 1) for c in (2, 1) for z in (1,)]
    images = [ImageStructure(key, f"{i}.tif") for i, key in enumerate(keys)]
    wells = build_wells(images)
    assert list(wells) == ["A02", "A10", "B02", "AA01"]
    reference = sorted(images, key=lambda i: (parse_well_name(i.key.well), i.key))
    assert [image for well in wells.values() for image in well.images] == reference
