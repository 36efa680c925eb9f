"""``omero_local``: the OMERO storage backend, a :class:`VirtualBackend` over one plate: the one way
OMERO plates are read and their results written.

Jobs on an OMERO plate write their usual local well folders (``images.zarr`` or ``images/`` as
``output.backend`` says, ``objects.csv``, ``summary.json``; the plate's ``wells.csv`` ...), which Snakemake
tracks; :meth:`OmeroLocalBackend.save_well` and :meth:`~OmeroLocalBackend.save_plate` then copy them to the
derived plate (:func:`publish_well`, :func:`publish_plate`): each field's processed channels (plus the label
image as a last channel, exact in float32 below 2**24 labels) become one image with its real data, and the
small text files become FileAnnotations by the backend's own rule (:meth:`~OmeroLocalBackend.put_bytes`).
Both are idempotent: a rerun reuses identical results and replaces changed ones.

Paths are virtual (``/omero/plate_123/A01/A01_s001_w1_z001_t001.tif``) and come from the cached plate
structure, so listing costs no server call. Reads go through the plate's :class:`PlaneReader` (direct from
the managed repository when readable, else the API). Writes go to the derived plate: planes are collected
per field and the field's image is created only once all of its planes are there, with its real data —
never a placeholder. Small result files (.json .csv .txt .tsv) become FileAnnotations on the object their
path names.

The backend pickles as its plate structure and options; a worker that unpickles it reconnects with the
parameters in the structure and its own password source.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openhcs_rules.io.base import VirtualBackend
from openhcs_rules.io.registry import get_backend
from openhcs_rules.io.well_folder import Field, WellFolder, stack_fields
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
from openhcs_rules.omero.params import OmeroParams, virtual_root
from openhcs_rules.omero.structure import plate_params
from openhcs_rules.pipeline.executor import PlaneKey
from openhcs_rules.plate.model import ImageKey, ImageStructure, PlateStructure

log = logging.getLogger(__name__)

LABELS_CHANNEL = "labels"
#: plate-folder files that are workflow bookkeeping, not results
NOT_PUBLISHED = frozenset({"plate.json"})


class OmeroLocalBackend(VirtualBackend):
    """Read an OMERO plate's planes and write its results to the derived plate."""

    name = "omero_local"

    def __init__(
        self, plate: PlateStructure, output: str | None = None, pixel_path: str = "auto", layout: str = "zarr"
    ) -> None:
        params, plate_id = plate_params(plate)
        super().__init__(plate, virtual_root(plate_id))
        self.params: OmeroParams = params
        self.plate_id = plate_id
        self.output = output or DEFAULT_OUTPUT
        self.pixel_path = pixel_path
        #: the local well folders and plate images Snakemake tracks, before they are copied to the server
        self.local = get_backend(layout)
        self.layout = self.local.layout
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._index: dict[ImageKey, ImageStructure] | None = None
        self._reader: Any = None
        self._session: Any = None
        self._derived: Any = None
        self._pending: dict[tuple[str, int], dict[ImageKey, np.ndarray]] = {}

    @classmethod
    def from_omero(
        cls, params: OmeroParams, plate_id: int, plate_name: str | None = None, **kwargs: Any
    ) -> OmeroLocalBackend:
        """Load (or take from the cache) the plate's structure with O(1) server calls, then build the backend."""
        from openhcs_rules.omero.structure import load_plate_structure

        return cls(load_plate_structure(params, plate_id, plate_name), **kwargs)

    # -- pickling: parameters only --------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        if self._pending:
            raise RuntimeError("cannot pickle an omero_local backend with unwritten fields; call flush() first")
        return {
            "plate": self.plate.to_dict(),
            "output": self.output,
            "pixel_path": self.pixel_path,
            "layout": self.layout,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        plate = PlateStructure.from_dict(state["plate"])
        self.__init__(plate, state["output"], state["pixel_path"], state["layout"])  # type: ignore[misc]  # re-run __init__ on unpickling

    # -- connections, made on first use ---------------------------------------------------------------------
    @property
    def session(self) -> Any:
        if self._session is None:
            self._session = OmeroSession(self.params)
        return self._session

    @property
    def reader(self) -> Any:
        from openhcs_rules.omero.reader import PlaneReader

        if self._reader is None:
            self._reader = PlaneReader(self.params, self.plate_id, path=self.pixel_path)
        return self._reader

    def derived(self) -> Any:
        if self._derived is None:
            self._derived = ensure_derived_plate(self.session, self.plate, self.output)
        return self._derived

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> OmeroLocalBackend:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            if error is None:
                self.flush()
        finally:
            self.close()

    # -- pixels ----------------------------------------------------------------------------------------------
    def _image(self, key: ImageKey) -> ImageStructure:
        if self._index is None:
            self._index = {image.key: image for image in self.plate.images()}
        image = self._index.get(key)
        if image is None:
            raise FileNotFoundError(f"{self.generate_filename(key)}: no such plane in OMERO plate {self.plate_id}")
        return image

    def read_plane(self, key: ImageKey) -> np.ndarray:
        return self.load_plane(self.plate, self._image(key))

    def load_plane(self, plate: PlateStructure, image: ImageStructure) -> np.ndarray:
        """The jobs' plane read: the one OMERO read path, through the shared reader unless a path was chosen."""
        from openhcs_rules.formats.omero import read_omero_plane

        return read_omero_plane(plate, image, self.reader if self.pixel_path != "auto" else None)

    # -- the jobs' results -------------------------------------------------------------------------------------
    def assemble_images(self, plate: PlateStructure, folders: dict[str, WellFolder], out_dir: Path) -> None:
        self.local.assemble_images(plate, folders, out_dir)

    def save_well(self, plate: PlateStructure, folder: WellFolder) -> None:
        """Copy the well's local results to the derived plate (raises when OMERO refuses or goes away)."""
        publish_well(plate, folder, self.output, backend=self)

    def save_plate(self, plate: PlateStructure, out_dir: Path) -> None:
        """Attach the plate's tables to the derived plate, refusing to finish while a well has no image."""
        publish_plate(plate, out_dir, self.output, backend=self)

    def _expected(self, well: str, site: int) -> set[ImageKey]:
        return {image.key for image in self.plate.wells[well].images if image.key.site == site}

    def write_plane(self, key: ImageKey, array: np.ndarray) -> None:
        """Collect a result plane; the field's image is written once all of its planes are collected."""
        if key.well not in self.plate.wells:
            raise FileNotFoundError(f"well {key.well} is not in OMERO plate {self.plate_id}")
        expected = self._expected(key.well, key.site)
        if key not in expected:
            raise ValueError(f"{key.virtual_filename} is not a plane of field {key.site} of {key.well}")
        with self._lock:
            pending = self._pending.setdefault((key.well, key.site), {})
            pending[key] = np.asarray(array)
            complete = set(pending) == expected
            if complete:
                planes = self._pending.pop((key.well, key.site))
        if complete:
            self._write_field(key.well, key.site, planes)

    def _write_field(self, well: str, site: int, planes: dict[ImageKey, np.ndarray]) -> None:
        by_key = {PlaneKey(k.site, k.channel, k.z, k.t): plane for k, plane in planes.items()}
        try:
            fields = stack_fields(by_key)
        except ValueError as error:
            raise ValueError(f"{well} field {site}: {error}") from None
        publish_fields(self.session, self.plate, well, fields, self.output, self.derived())

    def flush(self) -> None:
        """Refuse to end with fields that got only some of their planes: they are never written half."""
        with self._lock:
            pending = {k: len(v) for k, v in self._pending.items()}
        if pending:
            detail = ", ".join(f"{w} field {s} ({n} plane(s))" for (w, s), n in sorted(pending.items()))
            raise ValueError(f"incomplete fields were not written to OMERO: {detail}")

    # -- small files as FileAnnotations ------------------------------------------------------------------------
    def _relative(self, path: str) -> str:
        if not path.startswith(self.prefix + "/"):
            raise FileNotFoundError(f"{path} is not under {self.prefix}")
        return path[len(self.prefix) + 1 :]

    def write_bytes(self, data: bytes, path: str) -> None:
        self.put_bytes(self._relative(path), data)

    def put_bytes(self, relative: str, data: bytes, session: Any = None, derived: Any = None) -> str:
        """The backend's rule for text results: a FileAnnotation on the plate, well or image ``relative``
        names (``wells.csv``, ``B03/summary.json``, ``B03/B03_s001_cells.tsv``); created, replaced or reused."""
        session = session if session is not None else self.session
        derived = derived if derived is not None else self.derived()
        kind, object_id = resolve(session, derived, target_for_path(relative))
        _, action = put_file(session, kind, object_id, relative.rsplit("/", 1)[-1], data)
        return str(action)

    def read_bytes(self, path: str) -> bytes:
        from openhcs_rules.omero.annotations import get_file

        relative = self._relative(path)
        kind, object_id = resolve(self.session, self.derived(), target_for_path(relative))
        return get_file(self.session, kind, object_id, relative.rsplit("/", 1)[-1])

    def exists(self, path: str) -> bool:
        from openhcs_rules.omero.annotations import find_annotation
        from openhcs_rules.omero.errors import OmeroNotFoundError

        if not is_result_file(path):
            return super().exists(path)
        relative = self._relative(path)
        try:
            kind, object_id = resolve(self.session, self.derived(), target_for_path(relative))
        except OmeroNotFoundError:
            return False
        return bool(find_annotation(self.session, kind, object_id, relative.rsplit("/", 1)[-1]))


# -- publishing a well's and a plate's results (what save_well and save_plate do) -----------------------------
@dataclass
class PublishReport:
    derived_plate_id: int
    sites: list[SiteWrite] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # file name -> created / replaced / reused


def field_stack(data: Field, channel_names: list[str]) -> tuple[np.ndarray, list[str]]:
    """The image written to OMERO: processed channels (float32) plus the labels as one more channel."""
    image = data.image.astype(np.float32, copy=False)
    names = list(channel_names[: image.shape[1]]) + [f"c{i + 1}" for i in range(len(channel_names), image.shape[1])]
    if data.labels is None:
        return image, names
    if int(data.labels.max(initial=0)) >= 2**24:
        raise OmeroWriteError("more than 2**24 labels in one field cannot be stored exactly as a float32 channel")
    labels = data.labels.astype(np.float32)[:, None]
    return np.concatenate([image, labels], axis=1), [*names, LABELS_CHANNEL]


def publish_fields(
    session: OmeroSession,
    plate: PlateStructure,
    well: str,
    fields: Mapping[int, Field],
    output: str = DEFAULT_OUTPUT,
    derived: PlateRef | None = None,
) -> PublishReport:
    """Write each field of ``well`` to the derived plate (created, replaced or reused; see derived.py)."""
    derived = derived or ensure_derived_plate(session, plate, output)
    names = [plate.channel(i).name for i in plate.channel_indices]
    report = PublishReport(derived.plate_id)
    for site, data in sorted(fields.items()):
        image, channel_names = field_stack(data, names)
        report.sites.append(write_site(session, derived, well, site, image, channel_names, plate.pixel_size_um))
    return report


def _as_plate(plate: PlateStructure | str | Path) -> PlateStructure:
    return plate if isinstance(plate, PlateStructure) else PlateStructure.load_json(plate)


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
    folder: WellFolder | str | Path,
    output: str = DEFAULT_OUTPUT,
    session: OmeroSession | None = None,
    backend: OmeroLocalBackend | None = None,
) -> PublishReport:
    """Copy one well's local results (its folder's images, objects.csv, summary.json...) to the derived plate.

    Call once the well's folder is complete. Raises (and the well is then redone on a rerun) if OMERO refuses
    or goes away; what was linked before the error is complete, what was not is not linked.
    """
    plate = _as_plate(plate)
    folder = folder if isinstance(folder, WellFolder) else WellFolder(folder)
    backend = backend or OmeroLocalBackend(plate, output)
    with _session_for(plate, session) as session:
        derived = ensure_derived_plate(session, plate, output)
        report = publish_fields(session, plate, folder.well, folder.read_fields(), output, derived)
        for path in folder.result_files():
            if is_result_file(path.name):
                relative = f"{folder.well}/{path.name}"
                report.files[path.name] = backend.put_bytes(relative, path.read_bytes(), session, derived)
    created = sum(s.action != "reused" for s in report.sites)
    log.info(
        "%s %s: %d field(s) in derived OMERO plate %d (%d written), files %s",
        plate.name, folder.well, len(report.sites), report.derived_plate_id, created, report.files,
    )  # fmt: skip
    return report


def publish_plate(
    plate: PlateStructure | str | Path,
    out_dir: str | Path,
    output: str = DEFAULT_OUTPUT,
    session: OmeroSession | None = None,
    backend: OmeroLocalBackend | None = None,
) -> PublishReport:
    """Attach the plate's tables (wells.csv, objects.csv, ...) to the derived plate and check no well is black.

    Call once the plate's tables are written. Raises :class:`OmeroWriteError` naming the wells of the source
    plate that have no image in the derived plate (their process_well did not publish).
    """
    plate = _as_plate(plate)
    out = Path(out_dir)
    backend = backend or OmeroLocalBackend(plate, output)
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
            if path.name not in NOT_PUBLISHED:
                report.files[path.name] = backend.put_bytes(path.name, path.read_bytes(), session, derived)
    log.info("%s: derived OMERO plate %d, files %s", plate.name, report.derived_plate_id, report.files)
    return report
