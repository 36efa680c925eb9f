"""Format detection, dispatch and the shared TIFF reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from openhcs_rules.errors import FormatError, ImageReadError
from openhcs_rules.formats import registry
from openhcs_rules.formats.base import FormatHandler, read_tiff_plane, tiff_page_info
from openhcs_rules.formats.registry import (
    detect_format,
    discover_plate,
    handler_for,
    read_plane,
    register_handler,
    registered_handlers,
)
from openhcs_rules.plate.model import ImageKey, ImageStructure, PlateStructure
from openhcs_rules.plate.naming import infer_layout

PLATES = {
    "imagexpress_exported/9987_Plate_3420": "imagexpress",
    "imagexpress_exported/9987_Plate_3434": "imagexpress",
    "imagexpress_exported/9987_Plate_3435": "imagexpress",
    "imagexpress_direct_singlechannel": "imagexpress",
    "imagexpress_direct_singlechannel/2023-02-21/1334": "imagexpress",
    "opera_phenix_v5": "opera_phenix",
}


@pytest.mark.parametrize(("folder", "format_name"), sorted(PLATES.items()))
def test_detect_and_discover_every_fixture(fixtures_dir: Path, folder: str, format_name: str) -> None:
    root = fixtures_dir / folder
    assert detect_format(root).name == format_name
    plate = discover_plate(root)
    assert plate.format == format_name
    # an Opera plate is named by its PlateID (the instrument's name for it), other plates by their folder
    assert plate.name == ("BR00122249" if format_name == "opera_phenix" else root.name)
    json.dumps(plate.to_dict())  # plate.json must be writable
    image = plate.images()[-1]
    plane = read_plane(plate, image)
    np.testing.assert_array_equal(plane, tifffile.imread(root / image.source))


def test_discover_with_explicit_name(fixtures_dir: Path) -> None:
    plate = discover_plate(fixtures_dir / "opera_phenix_v5", name="BR00122249")
    assert plate.name == "BR00122249"


def test_read_plane_from_reloaded_json(fixtures_dir: Path, tmp_path: Path) -> None:
    plate = discover_plate(fixtures_dir / "imagexpress_exported" / "9987_Plate_3435")
    plate.save_json(tmp_path / "plate.json")
    reloaded = PlateStructure.load_json(tmp_path / "plate.json")
    image = reloaded.images()[3]
    np.testing.assert_array_equal(read_plane(reloaded, image), read_plane(plate, image))


def test_unknown_folder_says_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("not a plate")
    with pytest.raises(FormatError) as info:
        detect_format(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    for expected in (".HTD", "TimePoint_N", "_s1_w1.tif", "Index.idx.xml", "Index.xml", ".zarr", "MeasurementData.mlf"):
        assert expected in message
    assert "holds 1 file(s) (1 .txt)" in message  # what was found, not only what was looked for
    assert "format: pattern" in message


def test_yokogawa_is_asked_before_imagexpress_and_pattern_is_never_detected(tmp_path: Path) -> None:
    """CellVoyager calibration TIFFs resemble ImageXpress names: the stricter format must be asked first."""
    names = [cls.name for cls in registered_handlers()]
    assert names.index("yokogawa") < names.index("imagexpress")
    assert handler_for("pattern").name == "pattern"
    assert not handler_for("pattern").detect(tmp_path)


def test_missing_and_file_paths(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="does not exist"):
        detect_format(tmp_path / "nope")
    (tmp_path / "file.tif").write_bytes(b"")
    with pytest.raises(FormatError, match="is a file, not a folder"):
        discover_plate(tmp_path / "file.tif")


def test_handler_for_unknown_format_lists_known_ones() -> None:
    assert handler_for("imagexpress").name == "imagexpress"
    with pytest.raises(FormatError, match=r"'nikon'") as info:
        handler_for("nikon")
    assert "imagexpress" in str(info.value) and "opera_phenix" in str(info.value)


class _MarkerHandler(FormatHandler):
    """A test format: any folder holding a file named MARKER."""

    name = "marker"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (Path(root) / "MARKER").is_file()

    def parse(self, root: Path, plate_name: str | None = None) -> PlateStructure:
        return PlateStructure(plate_name or Path(root).name, self.name, str(root), 1, 1, [], {})


def test_registration_is_open(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(registry, "_HANDLERS", list(registry._HANDLERS))
    before = registered_handlers()
    assert register_handler(_MarkerHandler) is _MarkerHandler
    assert register_handler(_MarkerHandler) is _MarkerHandler  # idempotent
    assert registered_handlers() == [*before, _MarkerHandler]
    (tmp_path / "MARKER").write_text("")
    assert detect_format(tmp_path).name == "marker"
    assert discover_plate(tmp_path).format == "marker"
    assert isinstance(handler_for("marker"), _MarkerHandler)

    clash = type("Clash", (_MarkerHandler,), {})
    with pytest.raises(ValueError, match="already registered"):
        register_handler(clash)
    with pytest.raises(TypeError):
        register_handler(object)  # type: ignore[arg-type]


def test_builtin_handlers_declare_backends() -> None:
    for cls in registered_handlers():
        assert cls.name and isinstance(cls.compatible_backends, tuple) and cls.compatible_backends


# -- the shared TIFF reader ---------------------------------------------------------------------------------
def _write(path: Path, data: np.ndarray, **kwargs) -> Path:
    tifffile.imwrite(path, data, **kwargs)
    return path


@pytest.mark.parametrize("compression", [None, "zlib", "lzw"])
def test_truncated_data_after_the_directory(tmp_path: Path, compression: str | None) -> None:
    """tifffile writes the directory first: a half file keeps its header but loses pixel data."""
    data = np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)
    path = _write(tmp_path / "plane.tif", data, compression=compression)
    assert np.array_equal(read_tiff_plane(path), data)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError, match=r"plane\.tif.*truncated"):
        read_tiff_plane(path)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"this is not a tiff at all")
    with pytest.raises(ImageReadError, match=r"garbage\.tif is not a readable TIFF"):
        read_tiff_plane(path)


def test_rgb_is_not_a_plane(tmp_path: Path) -> None:
    path = _write(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(ImageReadError, match=r"rgb\.tif .*not a single 2D grey plane"):
        read_tiff_plane(path)


def test_pages_and_header_info(tmp_path: Path) -> None:
    stack = np.stack([np.full((4, 5), i, np.uint16) for i in range(3)])
    path = _write(tmp_path / "stack.tif", stack, photometric="minisblack")
    assert read_tiff_plane(path, page=2)[0, 0] == 2
    assert tiff_page_info(path) == ((4, 5), "uint16")
    with pytest.raises(ImageReadError, match="has no page 7"):
        read_tiff_plane(path, page=7)


def test_page_index_from_image_structure(tmp_path: Path) -> None:
    """The default FormatHandler.read_plane reads ``index[0]`` as the page of a multi-page TIFF."""
    stack = np.stack([np.full((4, 5), i, np.uint16) for i in range(3)])
    _write(tmp_path / "stack.tif", stack, photometric="minisblack")
    plate = _MarkerHandler().parse(tmp_path)
    plate.image_shape = (4, 5)
    image = ImageStructure(ImageKey("A01", 1, 1, 1, 1), "stack.tif", (1,))
    assert _MarkerHandler().read_plane(plate, image)[0, 0] == 1


@pytest.mark.parametrize(
    ("wells", "layout"),
    [(["A01"], (2, 3)), (["E07", "E08"], (6, 8)), (["H12"], (8, 12)), (["P24"], (16, 24)), (["AF48"], (32, 48))],
)
def test_infer_layout(wells: list[str], layout: tuple[int, int]) -> None:
    assert infer_layout(wells) == layout
