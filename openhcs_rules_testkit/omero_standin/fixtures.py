"""pytest fixtures shared by the OMERO tests (tests/integration/omero): one "server" fixture, stand-in or live.

``omero_server`` is parametrised: ``standin`` always runs; ``live`` (marked ``omero_live``) runs the same
test against a real OMERO when ``OMERO_HOST`` is set (with ``OMERO_PASSWORD``, optionally ``OMERO_PORT``,
``OMERO_USER``, ``OMERO_DATA_DIR``), and is skipped otherwise. Tests that need what only the stand-in can do
(expire sessions on demand, kill the server mid-run, count calls on the server side, imported files in a
managed repository) call :meth:`OmeroServerHandle.require_standin`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from openhcs_rules.omero.params import OmeroParams
from openhcs_rules_testkit.omero_standin.data import STANDIN_PASSWORD


@dataclass
class LivePlate:
    plate_id: int
    image_ids: dict[tuple[str, int], int]
    files: list[Path] = field(default_factory=list)


@dataclass
class OmeroServerHandle:
    kind: str
    params: OmeroParams
    standin: object | None = None
    created: list[int] = field(default_factory=list)

    def require_standin(self, why: str) -> None:
        if self.kind != "standin":
            pytest.skip(f"stand-in only: {why}")

    @property
    def server(self):  # noqa: ANN201  (StandInServer; untyped so this module imports without omero)
        self.require_standin("needs the stand-in's administration API")
        return self.standin

    def import_plate(
        self,
        name: str,
        rows: int,
        columns: int,
        wells: Mapping[str, list[np.ndarray]],
        channel_names: list[str] | None = None,
        empty_wells: list[str] = (),  # type: ignore[assignment]
        storage: str = "ome-tiff",
        pixel_size_um: float | None = 0.65,
    ):  # noqa: ANN201
        """A plate with images on the server: imported files (stand-in) or API-created images (live)."""
        if self.kind == "standin":
            return self.standin.import_plate(  # type: ignore[union-attr]
                name, rows, columns, wells, channel_names, pixel_size_um, storage, list(empty_wells)
            )
        return self._create_live_plate(name, rows, columns, wells, channel_names, empty_wells, pixel_size_um)

    def _create_live_plate(self, name, rows, columns, wells, channel_names, empty_wells, pixel_size_um):  # noqa: ANN001,ANN202
        from openhcs_rules.omero.adapter import OmeroSession
        from openhcs_rules.plate.naming import parse_well_name

        with OmeroSession(self.params) as session:
            positions = [parse_well_name(w) for w in [*wells, *empty_wells]]
            plate_id = session.create_tagged_plate(
                name, "openhcs-rules test plate", rows, columns, positions, "openhcs-rules.org/test", name
            )
            self.created.append(plate_id)
            well_ids = {well: wid for well, wid in _by_name(session.well_positions(plate_id)).items()}
            image_ids = {}
            for well, fields in wells.items():
                for site, array in enumerate(fields, start=1):
                    names = channel_names or [f"c{i}" for i in range(array.shape[1])]
                    image_id = session.create_image(f"{name} {well} {site}", "", array, names, pixel_size_um)
                    session.link_image(well_ids[well], image_id)
                    image_ids[(well, site)] = image_id
        return LivePlate(plate_id, image_ids)

    def cleanup(self) -> None:
        if self.kind != "live" or not self.created:
            return
        from openhcs_rules.omero.adapter import OmeroSession
        from openhcs_rules.omero.derived import NS_DERIVED, derived_key

        with OmeroSession(self.params) as session:
            for plate_id in self.created:
                derived = session.find_tagged_plates(NS_DERIVED, derived_key(plate_id, "openhcs-rules"))
                session.delete("Plate", [plate_id, *derived])


def _by_name(positions: Mapping[tuple[int, int], int]) -> dict[str, int]:
    from openhcs_rules.plate.naming import well_name

    return {well_name(r, c): w for (r, c), w in positions.items()}


@pytest.fixture(params=["standin", pytest.param("live", marks=pytest.mark.omero_live)])
def omero_server(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OmeroServerHandle]:
    """A server with the package pointed at it (stand-in in tmp_path, or the live one from OMERO_HOST)."""
    pytest.importorskip("omero", reason="omero-py not installed: openhcs-rules setup-omero; pip install '.[omero]'")
    from openhcs_rules.omero.adapter import GATEWAY_ENV
    from openhcs_rules.omero.reader import close_readers
    from openhcs_rules.omero.structure import clear_cache

    clear_cache()
    if request.param == "live":
        if not os.environ.get("OMERO_HOST"):
            pytest.skip("live OMERO suite: set OMERO_HOST and OMERO_PASSWORD to run it")
        monkeypatch.delenv(GATEWAY_ENV, raising=False)
        params = OmeroParams(
            host=os.environ["OMERO_HOST"],
            port=int(os.environ.get("OMERO_PORT", "4064")),
            user=os.environ.get("OMERO_USER", "root"),
            password_env="OMERO_PASSWORD",
            data_dir=os.environ.get("OMERO_DATA_DIR"),
        )
        handle = OmeroServerHandle("live", params)
    else:
        from openhcs_rules_testkit.omero_standin import StandInServer

        server = StandInServer.create(tmp_path / "omero-standin", users={"root": STANDIN_PASSWORD})
        for key, value in server.environ().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("OMERO_PASSWORD", STANDIN_PASSWORD)
        params = OmeroParams(host="localhost", port=4064, user="root", data_dir=str(server.data_dir))
        handle = OmeroServerHandle("standin", params, server)
    try:
        yield handle
    finally:
        close_readers()
        clear_cache()
        handle.cleanup()
