"""The plate's tables in the field's formats: per object, per image and per well, as Parquet and CSV.

Column names follow CellProfiler and pycytominer, so the tables go into ``pycytominer.aggregate``,
``annotate`` and ``normalize`` as they are: ``Metadata_*`` for what identifies a row (plate, well, site,
timepoint, object number, and every plate-map column), ``<Compartment>_<FeatureGroup>_<Feature>[_<Channel>]``
for measurements (``Nuclei_AreaShape_Area``, ``Nuclei_Intensity_MeanIntensity_DNA``). The wells' own files
(``wells/<well>/objects.csv``, ``summary.json``) keep the workflow's short names; only these plate tables,
which people and tools read, are renamed (:data:`OBJECT_RENAMES`, :func:`well_column`).

Why Parquet next to CSV: a screen's object table reaches millions of rows by hundreds of columns; Parquet
keeps the types (a well name stays text, a count an integer), is compressed, and pandas/pycytominer/R read a
column without parsing the rest. CSV stays for spreadsheets. Both are written from one Arrow table, each
atomically (a killed job leaves the previous file or none, never half of one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from openhcs_rules.core.files import atomic_path
from openhcs_rules.plate.platemap import PlateMap

#: the per-well objects.csv columns and their names in the plate's object table
OBJECT_RENAMES = {
    "plate": "Metadata_Plate",
    "well": "Metadata_Well",
    "site": "Metadata_Site",
    "z": "Metadata_Z",
    "t": "Metadata_Timepoint",
    "label": "Metadata_ObjectNumber",
    "area_px": "Nuclei_AreaShape_Area",
    "centroid_y": "Nuclei_Location_Center_Y",
    "centroid_x": "Nuclei_Location_Center_X",
}
#: per-channel object columns: the workflow's prefix -> the CellProfiler feature it is
_CHANNEL_RENAMES = {
    "mean_intensity_": "Nuclei_Intensity_MeanIntensity_",
    "integrated_intensity_": "Nuclei_Intensity_IntegratedIntensity_",
}
#: the wells table's columns from the workflow's per-well rows (jobs.assemble.well_rows)
WELL_RENAMES = {
    "plate": "Metadata_Plate",
    "well": "Metadata_Well",
    "row": "Metadata_Row",
    "column": "Metadata_Column",
    "t": "Metadata_Timepoint",
    "n_sites": "Metadata_Sites",
    "missing_sites": "Metadata_MissingSites",
    "true_count": "Metadata_TrueCount",
    "n_objects": "Nuclei_Count",
    "objects_per_site": "Nuclei_Count_PerSite",
    "mean_area_px": "Nuclei_AreaShape_Area",
}
#: the compartments pycytominer recognises as features by default
COMPARTMENTS = ("Nuclei", "Cells", "Cytoplasm")
_FEATURE = re.compile(r"^(Nuclei|Cells|Cytoplasm|Image)_")


def object_column(name: str) -> str:
    """The plate table's name of a per-well objects.csv column (names already in the field's form stay)."""
    if name in OBJECT_RENAMES:
        return OBJECT_RENAMES[name]
    for prefix, renamed in _CHANNEL_RENAMES.items():
        if name.startswith(prefix):
            return renamed + name[len(prefix) :]
    return name


def well_column(name: str) -> str:
    """The wells table's name of a per-well row key (``mean_intensity_DNA`` -> the nuclei's mean of it)."""
    if name in WELL_RENAMES:
        return WELL_RENAMES[name]
    if name.startswith("mean_intensity_"):
        return "Nuclei_Intensity_MeanIntensity_" + name[len("mean_intensity_") :]
    return name


def is_feature(column: str) -> bool:
    """True for measurement columns (compartment or image features), False for metadata."""
    return bool(_FEATURE.match(column))


def rename_objects(table: pa.Table) -> pa.Table:
    """A per-well objects table with the plate table's names; a column that a measurement step already wrote
    under its field name (``measure_compartments`` writes ``Nuclei_AreaShape_Area`` next to ``area_px``) wins
    over the workflow's short one, which is dropped."""
    present = set(table.column_names)
    keep, names = [], []
    for index, name in enumerate(table.column_names):
        renamed = object_column(name)
        if renamed != name and renamed in present:
            continue
        keep.append(index)
        names.append(renamed)
    return table.select(keep).rename_columns(names)


def read_well_objects(paths: Iterable[Path]) -> pa.Table:
    """The wells' objects.csv files as one Arrow table in the plate's names (wells without objects add
    nothing; a column missing from some wells is null there; an integer column is widened where another
    well has fractions)."""
    tables = []
    for path in paths:
        table = pa_csv.read_csv(
            path,
            convert_options=pa_csv.ConvertOptions(
                column_types={"plate": pa.string(), "well": pa.string()}, strings_can_be_null=False
            ),
        )
        if table.num_rows:
            tables.append(rename_objects(table))
    if not tables:
        return pa.table({name: pa.array([], pa.string()) for name in OBJECT_RENAMES.values()})
    return pa.concat_tables(tables, promote_options="permissive")


def annotate(table: pa.Table, platemap: PlateMap | None) -> pa.Table:
    """``Metadata_*`` columns of the plate map added after the identifying columns, row by row from
    ``Metadata_Well`` (empty text for wells the map does not list)."""
    if platemap is None or not platemap.columns:
        return table
    wells = table.column("Metadata_Well").to_pylist()
    position = next((i for i, n in enumerate(table.column_names) if is_feature(n)), table.num_columns)
    for offset, column in enumerate(platemap.columns):
        if column in table.column_names:
            table = table.drop_columns([column])
        values = [platemap.metadata(well).get(column, "") for well in wells]
        table = table.add_column(position + offset, column, pa.array(values, pa.string()))
    return table


def order_columns(table: pa.Table) -> pa.Table:
    """Metadata first (in the order given), then features sorted by name: the same order on every plate."""
    metadata = [n for n in table.column_names if not is_feature(n)]
    features = sorted(n for n in table.column_names if is_feature(n))
    return table.select(metadata + features)


def rows_to_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> pa.Table:
    """Rows (dicts) as an Arrow table with ``columns`` (default: every key, first seen first); a value a row
    lacks is null."""
    names: list[str] = list(columns) if columns is not None else []
    if columns is None:
        for row in rows:
            names.extend(k for k in row if k not in names)
    return pa.table({name: pa.array([row.get(name) for row in rows]) for name in names})


def write_table(table: pa.Table, parquet_path: str | Path | None, csv_path: str | Path | None) -> None:
    """The table as Parquet (zstd) and/or CSV, each written atomically."""
    if parquet_path is not None:
        with atomic_path(parquet_path, ".parquet") as temp:
            pq.write_table(table, temp, compression="zstd")
    if csv_path is not None:
        with atomic_path(csv_path, ".csv") as temp:
            try:
                # plain values, as a person or a spreadsheet writes them (column names are safe identifiers)
                pa_csv.write_csv(table, temp, pa_csv.WriteOptions(quoting_style="none", quoting_header="none"))
            except pa.ArrowInvalid:
                # a value holds a comma, quote or line break (a plate map's "compound, batch 2"): quote text
                pa_csv.write_csv(table, temp, pa_csv.WriteOptions(quoting_style="needed", quoting_header="none"))
