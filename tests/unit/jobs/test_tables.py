"""The plate tables' names, column order and files: what pycytominer and a spreadsheet both read."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from openhcs_rules.jobs.tables import (
    annotate,
    is_feature,
    object_column,
    order_columns,
    read_well_objects,
    well_column,
    write_table,
)
from openhcs_rules.plate.platemap import read_platemap


def test_the_workflows_short_names_become_the_fields_names() -> None:
    assert object_column("area_px") == "Nuclei_AreaShape_Area"
    assert object_column("mean_intensity_DAPI") == "Nuclei_Intensity_MeanIntensity_DAPI"
    assert object_column("integrated_intensity_Texas_Red") == "Nuclei_Intensity_IntegratedIntensity_Texas_Red"
    assert object_column("Cells_AreaShape_Area") == "Cells_AreaShape_Area"  # already a field name
    assert well_column("objects_per_site") == "Nuclei_Count_PerSite"
    assert well_column("mean_intensity_DAPI") == "Nuclei_Intensity_MeanIntensity_DAPI"
    assert is_feature("Cytoplasm_Texture_Contrast_DNA_3") and not is_feature("Metadata_Well")


def test_wells_with_other_columns_join_and_a_field_name_wins_over_its_short_twin(tmp_path: Path) -> None:
    first = tmp_path / "B02.csv"
    first.write_text(
        "plate,well,site,z,t,label,area_px,Nuclei_AreaShape_Area,mean_intensity_DNA\np,B02,1,1,1,1,30,30,5\n"
    )
    second = tmp_path / "B03.csv"
    second.write_text("plate,well,site,z,t,label,area_px\np,B03,1,1,1,1,40.5\n")
    empty = tmp_path / "C02.csv"
    empty.write_text("plate,well,site,z,t,label,area_px,centroid_y,centroid_x\n")
    table = read_well_objects([first, second, empty])
    assert table.num_rows == 2
    assert table.column("Nuclei_AreaShape_Area").to_pylist() == [30.0, 40.5]  # widened to float, no duplicate
    assert table.column("Nuclei_Intensity_MeanIntensity_DNA").to_pylist() == [5, None]  # missing: null
    platemap = tmp_path / "map.csv"
    platemap.write_text('well,compound\nB02,"DMSO, 0.1%"\n')
    annotated = order_columns(annotate(table, read_platemap(platemap)))
    assert annotated.column("Metadata_compound").to_pylist() == ["DMSO, 0.1%", ""]
    assert annotated.column_names.index("Metadata_compound") < annotated.column_names.index("Nuclei_AreaShape_Area")


def test_csv_is_plain_unless_a_value_needs_quotes_and_parquet_keeps_types(tmp_path: Path) -> None:
    plain = pa.table({"Metadata_Well": ["B02", "C03"], "Nuclei_Count": [3, None]})
    write_table(plain, tmp_path / "plain.parquet", tmp_path / "plain.csv")
    assert (tmp_path / "plain.csv").read_text() == "Metadata_Well,Nuclei_Count\nB02,3\nC03,\n"
    assert pq.read_table(tmp_path / "plain.parquet").schema == plain.schema
    awkward = pa.table({"Metadata_compound": ["DMSO, 0.1%", 'say "hi"', "two\nlines"]})
    write_table(awkward, None, tmp_path / "awkward.csv")
    with open(tmp_path / "awkward.csv", newline="") as handle:
        assert [row["Metadata_compound"] for row in csv.DictReader(handle)] == ["DMSO, 0.1%", 'say "hi"', "two\nlines"]
    assert not list(tmp_path.glob(".*.tmp*"))  # written atomically: no temporary left
