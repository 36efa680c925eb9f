"""OMERO plates as a format: discovery from the server, plane reads by :func:`read_omero_plane`.

:func:`read_omero_plane` is the one OMERO read path: the ``omero_local`` backend reads through it too.

The plate's "root" is its URL, ``omero://user@host:4064/plate/42?data_dir=/OMERO`` (what
:func:`openhcs_rules.omero.params.plate_url_from_config` builds from the screen config), never a folder.
:meth:`parse` stores the virtual root ``/omero/plate_42`` and the URL (no password) in ``plate.json``, so a
well job can reconnect and read with nothing but that file and its own password source.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from openhcs_rules.errors import ImageReadError
from openhcs_rules.formats.base import FormatHandler
from openhcs_rules.plate.model import ImageStructure, PlateStructure

if TYPE_CHECKING:
    from openhcs_rules.omero.reader import PlaneReader


class OmeroFormatHandler(FormatHandler):
    """A plate on an OMERO server (``source: omero`` in the screen config)."""

    name: ClassVar[str] = "omero"
    compatible_backends: ClassVar[tuple[str, ...]] = ("omero_local",)

    @classmethod
    def detect(cls, root: Path) -> bool:
        """Only ``omero:`` URLs; a folder on disk is never an OMERO plate."""
        return str(root).startswith("omero:")

    def parse(self, root: Path | str, plate_name: str | None = None) -> PlateStructure:
        from openhcs_rules.omero.params import parse_plate_url
        from openhcs_rules.omero.structure import load_plate_structure

        params, plate_id = parse_plate_url(str(root))
        return load_plate_structure(params, plate_id, plate_name)

    def read_plane(self, plate: PlateStructure, image: ImageStructure) -> np.ndarray:
        return read_omero_plane(plate, image)


def read_omero_plane(plate: PlateStructure, image: ImageStructure, reader: PlaneReader | None = None) -> np.ndarray:
    """The one OMERO plane read: through ``reader``, else the process's shared reader for the plate."""
    from openhcs_rules.omero.reader import reader_for
    from openhcs_rules.omero.structure import image_info, omero_meta, plate_params

    if reader is None:
        params, plate_id = plate_params(plate)
        reader = reader_for(omero_meta(plate)["url"], params, plate_id)
    t, c, z = image.index or (0, 0, 0)
    plane = reader.read(image_info(plate, image), z, c, t)
    if plate.image_shape is not None and tuple(plane.shape) != tuple(plate.image_shape):
        raise ImageReadError(
            f"OMERO {image.source} of plate {plate.name} is {plane.shape} pixels, the plate's images are "
            f"{tuple(plate.image_shape)}: rerun discovery"
        )
    return plane
