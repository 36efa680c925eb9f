"""Write a small ImageXpress direct-transfer plate whose channels all carry one illumination-setting name.

Layout and tags follow the real direct transfer in ../shared/fixtures/imagexpress_direct_singlechannel (faim-ipa,
BSD-3): ``<plate>/<date>/<acquisition id>/`` holding, per well/site/channel, a projection next to
``ZStep_N`` folders with the planes, GUID-suffixed names (``Projection-Mix_E07_s1_w1<GUID>.tif``),
``_thumb`` previews, deflate-compressed uint16 TIFFs with MetaSeries XML (``_IllumSetting_``,
``wavelength``, ``spatial-calibration-*``, stage position; ``Z Step`` on planes, ``Z Projection Method`` on
projections). The last channel is projection-only: it has files next to the ZStep folders and none in them.
Pixels come from the synthetic nuclei renderer, so the pipeline finds objects in them.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import tifffile

from openhcs_rules.demo.synthetic import synthesize_site

ILLUMINATION = "FITC_05"
ACQUISITION = "2023-02-21/1334"


def _guid(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, parts)))).upper()


def _prop(tag: str, name: str, kind: str, value: object) -> str:
    return f"<{tag} id={quoteattr(name)} type={quoteattr(kind)} value={quoteattr(str(value))}/>"


def metaseries_xml(well: str, site: int, z: int | None, shape: tuple[int, int], projection: bool) -> str:
    """PlaneInfo as MetaXpress 6.5 writes it (same element order, trimmed to the tags readers use)."""
    props = [
        ("plane-type", "string", "plane"),
        ("pixel-size-x", "int", shape[1]),
        ("pixel-size-y", "int", shape[0]),
        ("bits-per-pixel", "int", 16),
        ("spatial-calibration-state", "bool", "on"),
        ("spatial-calibration-x", "float", 1.3668),
        ("spatial-calibration-y", "float", 1.3668),
        ("spatial-calibration-units", "string", "um"),
        ("image-name", "string", ILLUMINATION),
        ("stage-position-x", "float", 79813.4 + 350.0 * (site - 1)),
        ("stage-position-y", "float", 41385.4),
        ("stage-label", "string", f"{well} : Site {site}"),
        ("z-position", "float", f"{9318.24 + 4.94 * ((z or 1) - 1):.2f}"),
        ("wavelength", "float", 536),
        ("camera-binning-x", "int", 4),
        ("camera-binning-y", "int", 4),
        ("_IllumSetting_", "string", ILLUMINATION),
        ("_MagSetting_", "string", "20X Plan Apo Lambda"),
    ]
    custom = [("Exposure Time", "string", "15 ms"), ("SiteX", "float", site), ("SiteY", "float", 1)]
    if projection:
        custom += [("Z Projection Method", "string", "Maximum"), ("Z Projection Step Size", "float", 5)]
    else:
        custom += [("Z Step", "float", z)]
    lines = [
        "<MetaData>",
        _prop("prop", "Description", "string", "Plate Name: Projection-Mix\r\nSoftware Version: MetaXpress 6.5.2.351"),
        _prop("prop", "MetaDataVersion", "float", 1),
        _prop("prop", "ApplicationName", "string", "MetaMorph"),
        _prop("prop", "ApplicationVersion", "string", "6.5.2.351"),
        "<PlaneInfo>",
        *[_prop("prop", *p) for p in props],
        *[_prop("custom-prop", *p) for p in custom],
        "</PlaneInfo>",
        "<SetInfo>",
        _prop("prop", "number-of-planes", "int", 1),
        "</SetInfo>",
        "</MetaData>",
        "",
    ]
    return "\r\n".join(lines)


def _write(path: Path, pixels: np.ndarray, description: str) -> None:
    tifffile.imwrite(
        path, pixels, software="MetaSeries", description=description, metadata=None, compression="adobe_deflate"
    )


def write_direct_transfer(
    root: Path, wells: tuple[str, ...] = ("E07",), sites: int = 1, channels: int = 4, z_planes: int = 2
) -> Path:
    """The plate folder ``root`` (the acquisition lies at ``root/2023-02-21/1334``); returns ``root``."""
    folder = root / ACQUISITION
    for z in range(1, z_planes + 1):
        (folder / f"ZStep_{z}").mkdir(parents=True, exist_ok=True)
    shape = (128, 128)
    for well in wells:
        for site in range(1, sites + 1):
            data = synthesize_site(well, site, 1, shape, seed=5, channels=channels, z_planes=z_planes)
            for channel in range(1, channels + 1):
                stem = f"Projection-Mix_{well}_s{site}_w{channel}"
                projection = data.images[channel - 1].max(axis=0)
                _write(folder / f"{stem}{_guid(stem)}.tif", projection, metaseries_xml(well, site, None, shape, True))
                thumb = projection[::4, ::4]
                _write(
                    folder / f"{stem}_thumb{_guid(stem, 't')}.tif",
                    thumb,
                    metaseries_xml(well, site, None, thumb.shape, True),
                )
                if channel == channels:  # the projection-only channel
                    continue
                for z in range(1, z_planes + 1):
                    xml = metaseries_xml(well, site, z, shape, False)
                    _write(folder / f"ZStep_{z}" / f"{stem}{_guid(stem, z)}.tif", data.images[channel - 1, z - 1], xml)
    return root
