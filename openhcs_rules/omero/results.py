"""Publishing an OMERO plate's results: what the process_wells and assemble jobs call for OMERO plates.

The jobs first write their usual local outputs (the well's ``images.zarr`` or ``images/`` TIFFs, ``objects.csv``,
``summary.json``; the plate's ``wells.csv`` ...), which Snakemake tracks. These functions then copy them to
the derived plate: each field's processed channels (plus the label image as a last channel, exact in float32
below 2**24 labels) become one image with its real data, and the small files become FileAnnotations linked to
the well or plate they describe. Both are idempotent: a rerun reuses identical results and replaces changed
ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openhcs_rules.omero.adapter import OmeroSession
from openhcs_rules.omero.annotations import is_result_file, put_file, resolve, target_for_path
from openhcs_rules.omero.derived import (
    DEFAULT_OUTPUT,
    PlateRef,
    SiteWrite,
    ensure_derived_plate,
    wells_without_images,
    write_site,
)
from openhcs_rules.omero.errors import OmeroWriteError
from openhcs_rules.omero.structure import plate_params
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules.plate.naming import parse_virtual_filename

log = logging.getLogger(__name__)

LABELS_CHANNEL = "labels"
#: plate-folder files that are workflow bookkeeping, not results
NOT_PUBLISHED = frozenset({"plate.json"})


@dataclass
class PublishReport:
    derived_plate_id: int
    sites: list[SiteWrite] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # file name -> created / replaced / reused


@dataclass(frozen=True)
class FieldArrays:
    """One field's processed image (t, c, z, y, x) and labels (t, z, y, x) as read back from a well's outputs."""

    image: np.ndarray
    labels: np.ndarray | None = None


def _as_plate(plate: PlateStructure | str | Path) -> PlateStructure:
    return plate if isinstance(plate, PlateStructure) else PlateStructure.load_json(plate)


def read_well_fields(out_dir: str | Path) -> dict[int, FieldArrays]:
    """A well's processed fields from ``images.zarr`` (zarr backend) or ``images/`` (TIFF backend), by site."""
    out = Path(out_dir)
    if (out / "images.zarr").is_dir():
        import zarr

        def pixels(group: zarr.Group, path: str) -> np.ndarray:
            node = group[path]
            if not isinstance(node, zarr.Array):
                raise ValueError(f"{out / 'images.zarr'}: {node.path} is a group, not an array")
            return np.asarray(node[:])

        root = zarr.open_group(store=str(out / "images.zarr"), mode="r")
        fields: dict[int, FieldArrays] = {}
        for key in sorted((k for k in root.group_keys() if k.isdigit()), key=int):
            group = root[key]
            assert isinstance(group, zarr.Group)  # group_keys() names groups only
            labels = None
            if "labels" in group:
                labels = pixels(group, "labels/nuclei/0")[:, 0]
            fields[int(key) + 1] = FieldArrays(pixels(group, "0"), labels)
        return fields
    if (out / "images").is_dir():
        return _read_tiff_fields(out / "images")
    raise FileNotFoundError(f"{out} has neither images.zarr nor images/: run process_well for this well first")


def _read_tiff_fields(folder: Path) -> dict[int, FieldArrays]:
    import tifffile

    planes: dict[tuple[int, int, int, int], np.ndarray] = {}
    labels: dict[tuple[int, int, int], np.ndarray] = {}
    for path in sorted(folder.glob("*.tif")):
        if "_labels_" in path.name:
            parts = parse_virtual_filename(path.name.replace("_labels_", "_w1_"))
            labels[(int(parts["site"]), int(parts["z"]), int(parts["t"]))] = tifffile.imread(path)
        else:
            parts = parse_virtual_filename(path.name)
            key = (int(parts["site"]), int(parts["channel"]), int(parts["z"]), int(parts["t"]))
            planes[key] = tifffile.imread(path)
    fields = {}
    for site in sorted({k[0] for k in planes}):
        keys = [k for k in planes if k[0] == site]
        cs, zs, ts = (sorted({k[i] for k in keys}) for i in (1, 2, 3))
        shape = planes[keys[0]].shape
        image = np.zeros((len(ts), len(cs), len(zs), *shape), dtype=planes[keys[0]].dtype)
        for _, c, z, t in keys:
            image[ts.index(t), cs.index(c), zs.index(z)] = planes[(site, c, z, t)]
        label = None
        if all((site, z, t) in labels for z in zs for t in ts):
            label = np.stack([np.stack([labels[(site, z, t)] for z in zs]) for t in ts])
        fields[site] = FieldArrays(image, label)
    return fields


def field_stack(arrays: FieldArrays, channel_names: list[str]) -> tuple[np.ndarray, list[str]]:
    """The image written to OMERO: processed channels (float32) plus the labels as one more channel."""
    image = arrays.image.astype(np.float32, copy=False)
    names = list(channel_names[: image.shape[1]]) + [f"c{i + 1}" for i in range(len(channel_names), image.shape[1])]
    if arrays.labels is None:
        return image, names
    if int(arrays.labels.max(initial=0)) >= 2**24:
        raise OmeroWriteError("more than 2**24 labels in one field cannot be stored exactly as a float32 channel")
    labels = arrays.labels.astype(np.float32)[:, None]
    return np.concatenate([image, labels], axis=1), [*names, LABELS_CHANNEL]


def publish_fields(
    session: OmeroSession,
    plate: PlateStructure,
    well: str,
    fields: Mapping[int, FieldArrays],
    output: str = DEFAULT_OUTPUT,
    derived: PlateRef | None = None,
) -> PublishReport:
    """Write each field of ``well`` to the derived plate (created, replaced or reused; see derived.py)."""
    derived = derived or ensure_derived_plate(session, plate, output)
    names = [plate.channel(i).name for i in plate.channel_indices]
    report = PublishReport(derived.plate_id)
    for site, arrays in sorted(fields.items()):
        data, channel_names = field_stack(arrays, names)
        report.sites.append(write_site(session, derived, well, site, data, channel_names, plate.pixel_size_um))
    return report


@contextmanager
def _session_for(plate: PlateStructure, session: OmeroSession | None) -> Iterator[OmeroSession]:
    """The caller's session as is, or a new one from the plate's parameters that is closed afterwards."""
    if session is not None:
        yield session
        return
    params, _ = plate_params(plate)
    own = OmeroSession(params)
    try:
        yield own
    finally:
        own.close()


def publish_well(
    plate: PlateStructure | str | Path,
    well: str,
    out_dir: str | Path,
    output: str = DEFAULT_OUTPUT,
    session: OmeroSession | None = None,
) -> PublishReport:
    """Copy one well's local outputs (images, objects.csv, summary.json...) to the derived plate.

    Call after ``run_well`` wrote them. Raises (and the well is then redone on a rerun) if OMERO refuses or
    goes away; what was linked before the error is complete, what was not is not linked.
    """
    plate = _as_plate(plate)
    out = Path(out_dir)
    with _session_for(plate, session) as session:
        derived = ensure_derived_plate(session, plate, output)
        report = publish_fields(session, plate, well, read_well_fields(out), output, derived)
        for path in sorted(p for p in out.iterdir() if p.is_file() and is_result_file(p.name)):
            kind, object_id = resolve(session, derived, target_for_path(f"{well}/{path.name}"))
            _, action = put_file(session, kind, object_id, path.name, path.read_bytes())
            report.files[path.name] = action
    created = sum(s.action != "reused" for s in report.sites)
    log.info(
        "%s %s: %d field(s) in derived OMERO plate %d (%d written), files %s",
        plate.name, well, len(report.sites), report.derived_plate_id, created, report.files,
    )  # fmt: skip
    return report


def publish_plate(
    plate: PlateStructure | str | Path,
    out_dir: str | Path,
    output: str = DEFAULT_OUTPUT,
    session: OmeroSession | None = None,
) -> PublishReport:
    """Attach the plate's tables (wells.csv, objects.csv, ...) to the derived plate and check no well is black.

    Call from ``assemble`` after the tables are written. Raises :class:`OmeroWriteError` naming the wells of
    the source plate that have no image in the derived plate (their process_well did not publish).
    """
    plate = _as_plate(plate)
    out = Path(out_dir)
    with _session_for(plate, session) as session:
        derived = ensure_derived_plate(session, plate, output)
        report = PublishReport(derived.plate_id)
        missing = wells_without_images(session, derived, plate.well_names)
        if missing:
            raise OmeroWriteError(
                f"derived OMERO plate {derived.plate_id} has no images for well(s) {', '.join(missing)} of "
                f"{plate.name}: delete results/{plate.name}/wells/<well>/summary.json of each and rerun with "
                "--forcerun process_wells (wells that are done are skipped)"
            )
        for path in sorted(p for p in out.iterdir() if p.is_file() and is_result_file(p.name)):
            if path.name in NOT_PUBLISHED:
                continue
            kind, object_id = resolve(session, derived, target_for_path(path.name))
            _, action = put_file(session, kind, object_id, path.name, path.read_bytes())
            report.files[path.name] = action
    log.info("%s: derived OMERO plate %d, files %s", plate.name, report.derived_plate_id, report.files)
    return report
