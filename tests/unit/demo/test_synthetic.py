"""The synthetic ImageXpress plate: layout, HTD, MetaSeries tags, ground truth, determinism, content."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile

from openhcs_rules.demo import synthetic
from openhcs_rules.demo.ground_truth import GROUND_TRUTH_FILE, read_ground_truth
from openhcs_rules.demo.synthetic import (
    density_factor,
    generate_imagexpress_plate,
    image_path,
    synthesize_site,
    treatment_factor,
    vignetting,
)


@pytest.fixture(scope="module")
def plate(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The default demo plate (4 wells x 2 sites x 2 channels x 3 z at 512x512), timed."""
    start = time.perf_counter()
    info = generate_imagexpress_plate(tmp_path_factory.mktemp("demo") / "demo_plate")
    info["seconds"] = time.perf_counter() - start
    return info


def tiffs(root: Path) -> list[Path]:
    return sorted(root.rglob("*.TIF"))


def test_default_plate_layout_and_speed(plate: dict) -> None:
    root = plate["plate_dir"]
    assert plate["seconds"] < 5.0  # ~0.6 s measured on one core
    assert plate["wells"] == ["B02", "B03", "C02", "C03"]
    assert plate["shape"] == (512, 512) and plate["in_focus_z"] == 2
    expected = {
        root / "TimePoint_1" / f"ZStep_{z}" / f"demo_plate_{well}_s{site}_w{channel}.TIF"
        for well in plate["wells"]
        for site in (1, 2)
        for channel in (1, 2)
        for z in (1, 2, 3)
    }
    assert set(tiffs(root)) == expected
    assert not list(root.rglob("*.tmp*")), "temporary files left behind"
    assert image_path(root, "demo_plate", "B02", 1, 1, 2, 1, 3) in expected


def test_htd_is_written_as_metaxpress_does(plate: dict) -> None:
    raw = plate["htd"].read_bytes()
    assert plate["htd"] == plate["plate_dir"] / "demo_plate.HTD"
    assert raw.startswith(b'"HTSInfoFile", Version 1.0\r\n') and raw.endswith(b'"EndFile"\r\n')
    lines = dict(line.split(", ", 1) for line in raw.decode("ascii").split("\r\n") if ", " in line)
    assert lines['"TimePoints"'] == "1"
    assert lines['"ZSeries"'] == "TRUE" and lines['"ZSteps"'] == "3"
    assert lines['"XWells"'] == "12" and lines['"YWells"'] == "8"
    assert lines['"WellsSelection1"'] == ", ".join(["FALSE"] * 12)
    assert lines['"WellsSelection2"'] == ", ".join(["FALSE", "TRUE", "TRUE"] + ["FALSE"] * 9)
    assert lines['"Sites"'] == "TRUE" and lines['"XSites"'] == "2" and lines['"YSites"'] == "1"
    assert lines['"SiteSelection1"'] == "TRUE, TRUE"
    assert lines['"NWavelengths"'] == "2"
    assert lines['"WaveName1"'] == '"DAPI"' and lines['"WaveName2"'] == '"FITC"'


def test_tiffs_carry_metaseries_metadata(plate: dict) -> None:
    root = plate["plate_dir"]
    positions = set()
    for site in (1, 2):
        for channel, name, wavelength in ((1, "DAPI", 452.0), (2, "FITC", 536.0)):
            with tifffile.TiffFile(image_path(root, "demo_plate", "C03", site, channel, 2, 1, 3)) as tif:
                assert tif.is_metaseries
                page = tif.pages[0]
                assert page.dtype == np.uint16 and page.shape == (512, 512)
                info = tif.metaseries_metadata["PlaneInfo"]
            assert info["spatial-calibration-x"] == 0.65 and info["spatial-calibration-y"] == 0.65
            assert info["spatial-calibration-units"] == "um"
            assert info["wavelength"] == wavelength and info["_IllumSetting_"] == name
            assert info["stage-label"] == f"C03 : Site {site}" and info["Z Step"] == 2.0
            positions.add((info["stage-position-x"], info["stage-position-y"]))
    assert len(positions) == 2  # the two sites are at different stage positions
    # sites sit side by side, 90% of a field (512 px x 0.65 um) apart
    xs = sorted(x for x, _ in positions)
    assert xs[1] - xs[0] == pytest.approx(0.9 * 512 * 0.65, abs=0.02)


def test_the_project_imagexpress_reader_opens_it(plate: dict) -> None:
    imagexpress = pytest.importorskip("openhcs_rules.formats.imagexpress")
    parsed = imagexpress.ImageXpressHandler().parse(plate["plate_dir"])
    assert sorted(parsed.wells) == plate["wells"]
    assert parsed.pixel_size_um == pytest.approx(0.65)
    assert [c.name for c in parsed.channels] == ["DAPI", "FITC"]
    assert len(parsed.images()) == 4 * 2 * 2 * 3
    assert not parsed.warnings


def test_ground_truth_matches_and_is_written_last(plate: dict) -> None:
    root = plate["plate_dir"]
    truth = read_ground_truth(root)
    assert truth == plate["counts"]
    assert all(set(per_site) == {1, 2} for per_site in truth.values())
    header = (root / GROUND_TRUTH_FILE).read_text().splitlines()[0]
    assert header == "well,site,t,true_count"
    newest_image = max(path.stat().st_mtime_ns for path in tiffs(root))
    assert (root / GROUND_TRUTH_FILE).stat().st_mtime_ns >= newest_image


def test_interrupted_generation_never_looks_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "plate"
    generate_imagexpress_plate(root, wells=["B02"], sites=1, z_planes=1, shape=(128, 128))
    assert (root / GROUND_TRUTH_FILE).exists()

    calls = []

    def failing(*args: object, **kwargs: object) -> object:
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    real = synthetic.synthesize_site
    monkeypatch.setattr(synthetic, "synthesize_site", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_imagexpress_plate(root, wells=["B02", "B03"], sites=1, z_planes=1, shape=(128, 128))
    assert not (root / GROUND_TRUTH_FILE).exists(), "a stale ground truth survived an interrupted rewrite"
    with pytest.raises(FileNotFoundError, match="not generated completely"):
        read_ground_truth(root)


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    kwargs = {"wells": ["B02"], "sites": 1, "channels": 1, "z_planes": 1, "shape": (128, 128)}
    first = generate_imagexpress_plate(tmp_path / "a", **kwargs)
    second = generate_imagexpress_plate(tmp_path / "b", **kwargs)
    generate_imagexpress_plate(tmp_path / "c", seed=7, **kwargs)
    name = "TimePoint_1/demo_plate_B02_s1_w1.TIF"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    assert first["counts"] == second["counts"]


def test_timepoints_without_z_and_more_channels(tmp_path: Path) -> None:
    info = generate_imagexpress_plate(
        tmp_path, plate_name="tp", wells=["A01"], sites=3, channels=3, z_planes=1, timepoints=2, shape=(128, 160)
    )
    names = {p.relative_to(tmp_path).as_posix() for p in tiffs(tmp_path)}
    assert names == {f"TimePoint_{t}/tp_A01_s{s}_w{c}.TIF" for t in (1, 2) for s in (1, 2, 3) for c in (1, 2, 3)}
    htd = (tmp_path / "tp.HTD").read_text()
    assert '"ZSeries", FALSE' in htd and '"TimePoints", 2' in htd and '"WaveName3", "Texas Red"' in htd
    assert '"XSites", 2' in htd and '"SiteSelection2", TRUE, FALSE' in htd
    assert tifffile.imread(tmp_path / "TimePoint_2/tp_A01_s1_w3.TIF").shape == (128, 160)
    assert set(info["counts_by_timepoint"]) == {1, 2}
    assert read_ground_truth(tmp_path, timepoint=2) == info["counts_by_timepoint"][2]
    # cells divide between time points: the count grows by ~15% on average
    assert sum(info["counts_by_timepoint"][2]["A01"].values()) > sum(info["counts_by_timepoint"][1]["A01"].values())


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="repeated"):
        generate_imagexpress_plate(tmp_path, wells=["B02", "b2"])
    with pytest.raises(ValueError, match="z_planes"):
        generate_imagexpress_plate(tmp_path, z_planes=0)
    with pytest.raises(ValueError, match="64x64"):
        generate_imagexpress_plate(tmp_path, shape=(32, 32))
    with pytest.raises(ValueError, match="not a well name"):
        generate_imagexpress_plate(tmp_path, wells=["X"])


# ------------------------------------------------------------------------------------------ image content
@pytest.fixture(scope="module")
def site() -> synthetic.SiteImages:
    return synthesize_site("B02", 1, shape=(512, 512), channels=2, z_planes=3)


def test_true_labels_match_the_count_and_avoid_the_border(site: synthetic.SiteImages) -> None:
    labels = site.labels
    assert len(np.unique(labels)) - 1 == site.count
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    assert not border.any(), "a nucleus is cut by the image border"
    diameters = 2 * np.sqrt([n.a * n.b for n in site.nuclei])
    assert diameters.min() >= 12 and diameters.max() <= 30


def test_touching_groups_are_present(site: synthetic.SiteImages) -> None:
    touching = 0
    truth = site.labels
    for a, b in ((truth[:, :-1], truth[:, 1:]), (truth[:-1, :], truth[1:, :])):
        border = (a != b) & (a > 0) & (b > 0)
        touching += len({(min(p, q), max(p, q)) for p, q in zip(a[border], b[border], strict=True)})
    assert touching >= 5


def test_middle_plane_is_in_focus(site: synthetic.SiteImages) -> None:
    sharpness = [ndi.laplace(site.images[0, z].astype(np.float64)).var() for z in range(3)]
    assert sharpness[1] > 1.5 * max(sharpness[0], sharpness[2])


def test_uneven_illumination_and_treatment_effect(site: synthetic.SiteImages) -> None:
    profile = vignetting(1, (512, 512))
    assert profile.max() <= 1.0 and 0.55 < profile.min() < 0.7
    np.testing.assert_array_equal(profile, vignetting(1, (512, 512)))  # one profile per channel
    treated = synthesize_site("B05", 1, shape=(256, 256), channels=2, z_planes=1)
    control = synthesize_site("B02", 1, shape=(256, 256), channels=2, z_planes=1)

    def cell_signal(data: synthetic.SiteImages) -> float:
        cells = ndi.binary_dilation(data.labels > 0, iterations=6)
        return float(data.images[1, 0][cells].mean())

    assert treatment_factor("B05") > treatment_factor("B02")
    assert cell_signal(treated) > 1.5 * cell_signal(control)
    assert density_factor("B02") > density_factor("B11")


def test_2048_images_are_drawn_fast_enough() -> None:
    start = time.perf_counter()
    data = synthesize_site("C03", 2, shape=(2048, 2048), channels=1, z_planes=1)
    assert time.perf_counter() - start < 5.0  # ~0.5 s measured: nuclei are drawn in their bounding boxes
    assert 30 < data.count < 120
