"""The bundled demo screen end to end: generation, counts against the known truth, the tables through
pycytominer, report, OME-Zarr re-input."""

from __future__ import annotations

import csv

import pytest

from openhcs_rules.formats.registry import discover_plate, read_plane
from openhcs_rules_testkit.browser import chromium
from openhcs_rules_testkit.ngff import assert_valid_ngff_plate
from openhcs_rules_testkit.workflow import snakemake, write_config

pytestmark = pytest.mark.workflow

DEMO = {"wells": ["B02", "C03"], "sites": 2, "channels": 2, "z_planes": 3, "size": 512, "seed": 3}


def _rows(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    platemap = folder / "platemap.csv"
    platemap.write_text("well,treatment,control\nB02,DMSO,negative\nC03,staurosporine,positive\n")
    plate = {"source": "synthetic", "synthetic": DEMO, "platemap": str(platemap)}
    config = write_config(folder, {"plates": {"demo": plate}})
    done = snakemake(folder, config)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, config


def test_counts_match_the_known_truth(demo_run):
    folder, _ = demo_run
    rows = _rows(folder / "results" / "demo" / "wells.csv")
    wells = [(row["Metadata_Well"], row["Metadata_Timepoint"]) for row in rows]
    assert wells == [(well, "1") for well in DEMO["wells"]]  # long format
    for row in rows:
        truth, found = int(row["Metadata_TrueCount"]), int(row["Nuclei_Count"])
        assert abs(found - truth) <= max(2, 0.08 * truth), row


def test_objects_table_has_one_row_per_object_with_measurements(demo_run):
    folder, _ = demo_run
    objects = _rows(folder / "results" / "demo" / "objects.csv")
    wells = _rows(folder / "results" / "demo" / "wells.csv")
    assert len(objects) == sum(int(row["Nuclei_Count"]) for row in wells)
    features = {"Nuclei_AreaShape_Area", "Nuclei_Location_Center_Y", "Nuclei_Intensity_MeanIntensity_DAPI"}
    assert features <= set(objects[0])
    assert all(float(row["Nuclei_AreaShape_Area"]) > 0 for row in objects)


def test_pycytominer_takes_the_tables_as_they_are(demo_run):
    """aggregate, annotate (with the plate map) and normalize, on our files unchanged: no renaming by hand."""
    pd = pytest.importorskip("pandas")
    pycytominer = pytest.importorskip("pycytominer")
    folder, _ = demo_run
    results = folder / "results" / "demo"
    objects = pd.read_parquet(results / "objects.parquet")
    profiles = pycytominer.aggregate(objects, strata=["Metadata_Plate", "Metadata_Well"], features="infer")
    assert list(profiles["Metadata_Well"]) == DEMO["wells"]
    assert "Nuclei_Intensity_MeanIntensity_DAPI" in profiles.columns
    platemap = pd.read_csv(folder / "platemap.csv")
    annotated = pycytominer.annotate(profiles, platemap, join_on=["Metadata_well", "Metadata_Well"])
    assert list(annotated["Metadata_treatment"]) == ["DMSO", "staurosporine"]
    normalized = pycytominer.normalize(annotated, features="infer", samples="Metadata_control == 'negative'")
    assert normalized.shape[0] == 2
    wells = pd.read_csv(results / "wells.csv")
    per_well = pycytominer.normalize(wells, features="infer", samples="Metadata_control == 'negative'")
    assert "Nuclei_Count_PerSite" in per_well.columns and per_well.shape[0] == 2
    assert pd.read_parquet(results / "wells.parquet").shape == wells.shape


def test_report_contains_the_heatmap(demo_run):
    folder, config = demo_run
    done = snakemake(folder, config, "--report", "report.zip")
    assert done.returncode == 0, done.stderr[-3000:]
    import zipfile

    names = zipfile.ZipFile(folder / "report.zip").namelist()
    assert any(name.endswith("heatmap.png") for name in names), names


@pytest.mark.web
def test_the_report_opens_on_the_screen_and_shows_each_plates_pictures_and_tables(demo_run):
    """`snakemake --report report.html` in headless Chromium, as a person opens it (screenshots kept)."""
    folder, config = demo_run
    done = snakemake(folder, config, "--report", "report.html")
    assert done.returncode == 0, done.stderr[-3000:]
    shots = folder / "report-screenshots"
    shots.mkdir(exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto((folder / "report.html").as_uri())
        page.get_by_text("High-content screen processed with").wait_for()
        body = page.inner_text("body")
        assert "demo: synthetic plate; plate map" in body  # the screen's description, from its config
        page.screenshot(path=shots / "report.png")
        page.get_by_text("Results").first.click()
        page.get_by_text("Plates").first.click()
        figures = {"flat-field profiles", "objects per site heatmap", "quality-control montage"}
        figures.add("tables: assay quality, wells, flagged images")
        rows = page.locator("tr")
        assert {rows.nth(i).locator("td").nth(1).inner_text() for i in range(1, rows.count())} == figures
        for figure in sorted(figures - {"tables: assay quality, wells, flagged images"}):
            page.locator("tr", has_text=figure).locator("a").first.click()
            page.locator("img[src^='data:image/png']").wait_for()
            page.screenshot(path=shots / f"{figure.split()[0]}.png")
        page.locator("tr", has_text="tables: assay quality").locator("a").first.click()
        page.wait_for_function("document.querySelector('iframe') !== null")
        shown = page.frames[-1].inner_text("body")
        page.screenshot(path=shots / "tables.png")
    assert "Assay quality" in shown and "Z'" in shown and "fewer than 2 positive and negative" in shown
    assert all(well in shown for well in DEMO["wells"]) and "staurosporine" in shown
    assert "Flagged images (0)" in shown


def test_output_plate_is_a_valid_input_plate(demo_run):
    """Our OME-Zarr output reads back through format detection with the processed pixels."""
    import zarr

    folder, _ = demo_run
    path = folder / "results" / "demo" / "plate.ome.zarr"
    plate = discover_plate(path)
    assert plate.format == "ome_zarr"
    assert plate.well_names == DEMO["wells"] and plate.z_planes == [1, 2, 3]  # raw: every plane acquired
    image = next(i for i in plate.images() if i.key.well == "C03" and i.key.site == 2 and i.key.channel == 2)
    expected = zarr.open_array(str(path / "C" / "3" / "1" / "0"), mode="r")[0, 1, 0]
    assert (read_plane(plate, image) == expected).all()
    assert assert_valid_ngff_plate(path) == {"wells": 2, "images": 4, "labels": 4}  # strict NGFF 0.5 too


def test_an_ome_zarr_plate_runs_through_the_same_rules(demo_run, tmp_path):
    folder, _ = demo_run
    source = folder / "results" / "demo" / "plate.ome.zarr"
    config = write_config(tmp_path, {"plates": {"again": {"source": "disk", "path": str(source)}}})
    done = snakemake(tmp_path, config)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(tmp_path / "results" / "again" / "wells.csv")
    assert [row["Metadata_Well"] for row in rows] == DEMO["wells"]
    assert all(int(r["Nuclei_Count"]) > 0 for r in rows)
