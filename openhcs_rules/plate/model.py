"""Plate, well and image structures: what a microscope handler discovers and every later step consumes.

All component indices (site, channel, z, t) are 1-based, as ImageXpress numbers them, so the virtual
filenames read the same as the instrument's. The structure is plain data that round-trips through JSON:
it is written once per plate by discovery (``results/{plate}/plate.json``) and read by every well job,
so no job repeats discovery.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from openhcs_rules.plate.channels import unique_channel_names
from openhcs_rules.plate.naming import normalise_well_name, parse_well_name, virtual_filename

#: the components that address one 2D plane inside a plate
COMPONENTS: tuple[str, ...] = ("well", "site", "channel", "z", "t")

SCHEMA_VERSION = 1

#: parse_well_name, memoised: plates share a few hundred well names, and sorting a screen's wells by position
#: (planning reads 1,000 plates' well names) would otherwise parse each name again
_well_position = functools.lru_cache(maxsize=8192)(parse_well_name)


@dataclass(frozen=True, order=True)
class ImageKey:
    """Address of one 2D plane: well name plus 1-based site, channel, z and t."""

    well: str
    site: int
    channel: int
    z: int
    t: int

    @property
    def virtual_filename(self) -> str:
        return virtual_filename(self.well, self.site, self.channel, self.z, self.t)

    def get(self, component: str) -> str | int:
        return getattr(self, component)


@dataclass(frozen=True)
class ChannelInfo:
    """A channel as the instrument named it (index is 1-based, as in ``_w1``)."""

    index: int
    name: str
    wavelength_nm: float | None = None


@dataclass(frozen=True)
class ImageStructure:
    """One plane of the plate and where its pixels live.

    ``source`` is a path relative to the plate root (a TIFF) or, for OME-Zarr, the field's array path;
    ``index`` selects a plane inside a multi-dimensional source ((t, c, z) for OME-Zarr), ``None`` for a
    one-plane file.
    """

    key: ImageKey
    source: str
    index: tuple[int, ...] | None = None
    stage_position_um: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "site": self.key.site,
            "channel": self.key.channel,
            "z": self.key.z,
            "t": self.key.t,
            "source": self.source,
        }
        if self.index is not None:
            data["index"] = list(self.index)
        if self.stage_position_um is not None:
            data["stage_position_um"] = list(self.stage_position_um)
        return data

    @classmethod
    def from_dict(cls, well: str, data: dict[str, Any]) -> ImageStructure:
        key = ImageKey(well, int(data["site"]), int(data["channel"]), int(data["z"]), int(data["t"]))
        index = tuple(data["index"]) if data.get("index") is not None else None
        position = data.get("stage_position_um")
        return cls(key, data["source"], index, tuple(position) if position is not None else None)


@dataclass
class WellStructure:
    """All planes of one well."""

    name: str
    images: list[ImageStructure] = field(default_factory=list)

    def components(self, component: str) -> list[int]:
        return sorted({int(image.key.get(component)) for image in self.images})

    @property
    def sites(self) -> list[int]:
        return self.components("site")

    @property
    def position(self) -> tuple[int, int]:
        """0-based (row, column)."""
        return parse_well_name(self.name)


@dataclass
class PlateStructure:
    """Everything discovery learns about a plate, independent of the format it came from."""

    name: str
    format: str
    root: str
    rows: int
    columns: int
    channels: list[ChannelInfo]
    wells: dict[str, WellStructure]
    image_shape: tuple[int, int] | None = None
    dtype: str | None = None
    pixel_size_um: float | None = None
    z_step_um: float | None = None
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Make channel names unique (once sanitised) whichever handler, or older plate.json, built the plate.

        They become measurement columns: a clash used to fail every well after all its processing. Handlers
        that know what tells their channels apart rename first (see plate.channels); this is the safety net.
        """
        self.channels = unique_channel_names(self.channels, self.warnings)

    # -- derived views ------------------------------------------------------------------------------
    def _union(self, component: str) -> list[int]:
        """The sorted values of ``component`` over every image: one attribute read per image (a 1536-well
        plate has 10^5 of them and discovery asks for four components, several times)."""
        get = attrgetter(component)
        values: set[Any] = set()
        for well in self.wells.values():
            values.update(map(get, [image.key for image in well.images]))
        return sorted({int(value) for value in values})

    @property
    def well_names(self) -> list[str]:
        return sorted(self.wells, key=_well_position)

    @property
    def sites(self) -> list[int]:
        return self._union("site")

    @property
    def channel_indices(self) -> list[int]:
        return self._union("channel")

    @property
    def z_planes(self) -> list[int]:
        return self._union("z")

    @property
    def timepoints(self) -> list[int]:
        return self._union("t")

    def channel(self, index: int) -> ChannelInfo:
        for info in self.channels:
            if info.index == index:
                return info
        return ChannelInfo(index, f"w{index}")

    def images(self) -> list[ImageStructure]:
        return [image for name in self.well_names for image in self.wells[name].images]

    def summary(self) -> dict[str, Any]:
        """What ``openhcs-rules inspect`` prints: the plate's components as lists."""
        return {
            "name": self.name,
            "format": self.format,
            "wells": self.well_names,
            "sites": self.sites,
            "channels": [
                {"index": i, "name": self.channel(i).name, "wavelength_nm": self.channel(i).wavelength_nm}
                for i in self.channel_indices
            ],
            "z": self.z_planes,
            "timepoints": self.timepoints,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "dtype": self.dtype,
            "pixel_size_um": self.pixel_size_um,
            "layout": [self.rows, self.columns],
            "warnings": list(self.warnings),
        }

    def missing_sites(self, well_names: Iterable[str] | None = None) -> dict[str, list[int]]:
        """Wells (all, or those named) that lack sites or planes other wells have: {well: [site, ...]}."""
        expected = len(self.channel_indices) * len(self.z_planes) * len(self.timepoints)
        sites = self.sites  # a union over every image: computed once, not once per well
        missing: dict[str, list[int]] = {}
        for name in self.well_names if well_names is None else well_names:
            well = self.wells[name]
            per_site: dict[int, int] = {}
            for image in well.images:
                per_site[image.key.site] = per_site.get(image.key.site, 0) + 1
            gaps = [s for s in sites if per_site.get(s, 0) < expected]
            if gaps:
                missing[name] = gaps
        return missing

    # -- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "format": self.format,
            "root": self.root,
            "rows": self.rows,
            "columns": self.columns,
            "channels": [asdict(c) for c in self.channels],
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "dtype": self.dtype,
            "pixel_size_um": self.pixel_size_um,
            "z_step_um": self.z_step_um,
            "warnings": list(self.warnings),
            "metadata": self.metadata,
            "wells": {name: [image.to_dict() for image in self.wells[name].images] for name in self.well_names},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlateStructure:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"plate structure has schema version {version!r}, this openhcs-rules reads {SCHEMA_VERSION}:"
                " delete results/<plate>/plate.json and rerun discovery"
            )
        wells = {
            name: WellStructure(name, [ImageStructure.from_dict(name, item) for item in images])
            for name, images in data["wells"].items()
        }
        return cls(
            name=data["name"],
            format=data["format"],
            root=data["root"],
            rows=int(data["rows"]),
            columns=int(data["columns"]),
            channels=[ChannelInfo(**c) for c in data["channels"]],
            wells=wells,
            image_shape=tuple(data["image_shape"]) if data.get("image_shape") else None,
            dtype=data.get("dtype"),
            pixel_size_um=data.get("pixel_size_um"),
            z_step_um=data.get("z_step_um"),
            warnings=list(data.get("warnings", [])),
            metadata=dict(data.get("metadata", {})),
        )

    def to_json(self) -> str:
        """The JSON text of :meth:`to_dict`: indented, but each well's images on one compact line.

        Python's C encoder only serves compact output (``indent`` falls back to the pure-Python encoder, 2 s
        for the 69,120 images of a 1536-well plate with 9 sites and 5 channels); this writes each well with
        the C encoder and keeps the file readable (one line per well) for a few milliseconds more.
        """
        data = self.to_dict()
        wells = data.pop("wells")
        head = json.dumps(data, indent=1)
        lines = ",\n".join(
            f"  {json.dumps(name)}: {json.dumps(images, separators=(',', ':'))}" for name, images in wells.items()
        )
        body = f"{{\n{lines}\n }}" if lines else "{}"
        return f'{head[:-2]},\n "wells": {body}\n}}'

    def save_json(self, path: str | Path) -> None:
        from openhcs_rules.core.files import atomic_write_text

        atomic_write_text(path, self.to_json())

    @classmethod
    def load_json(cls, path: str | Path) -> PlateStructure:
        return cls.from_dict(json.loads(Path(path).read_text()))

    @staticmethod
    def load_well_names(path: str | Path) -> list[str]:
        """The well names of a saved plate.json in plate order, without building its images.

        For planning (chunk names): a screen of 1,000 plates needs only the names, and building every
        ImageStructure of every plate would be most of the plan's cost in our code.
        """
        data = json.loads(Path(path).read_text())
        if data.get("schema_version") != SCHEMA_VERSION:
            PlateStructure.from_dict(data)  # raises the one message for an older or newer plate.json
        return sorted(data["wells"], key=_well_position)


def build_wells(images: list[ImageStructure]) -> dict[str, WellStructure]:
    """Group planes into wells, sorted by (well position, key), with normalised well names.

    Each distinct well name is parsed once and the sort key is a plain tuple (the dataclass comparisons and
    a parse per image were most of a 10^5-image plate's grouping time).
    """
    parsed = {name: parse_well_name(name) for name in {image.key.well for image in images}}
    normal = {name: normalise_well_name(name) for name in parsed}

    def order(image: ImageStructure) -> tuple[tuple[int, int], str, int, int, int, int]:
        key = image.key
        return parsed[key.well], key.well, key.site, key.channel, key.z, key.t

    wells: dict[str, WellStructure] = {}
    for image in sorted(images, key=order):
        name = normal[image.key.well]
        well = wells.get(name)
        if well is None:
            well = wells[name] = WellStructure(name)
        well.images.append(image)
    return wells
