"""Quality-control pictures of a plate: a montage of one thumbnail per well, and the flat-field profiles.

The montage is what a screener looks at first: a well with no cells, a smear, a bubble or a blurred field is
seen at once in plate layout, and the outlines show whether segmentation found the nuclei. It is composed
pixel by pixel (:class:`MontageLayout` says where each well's thumbnail is in the PNG) and only the labels
are drawn by matplotlib, so its size is fixed by the plate's layout, whatever the images: a 384-well plate is
about 2400 x 1600 pixels. Reading is bounded too: each well gives one channel of its first site, from the
coarsest OME-Zarr pyramid level that still has the thumbnail's size (or one TIFF plane), through
:meth:`WellFolder.read_overview`; memory is the thumbnails only (384 x 96^2 pixels).

Contrast is stretched once per plate (robust percentiles of all thumbnails), not per well, so a dim or
empty well looks dim or empty rather than stretched into noise. Flagged wells (from
:func:`openhcs_rules.jobs.image_quality.flag_images`) get a red frame.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from openhcs_rules.core.files import atomic_path
from openhcs_rules.io.well_folder import Overview, WellFolder
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules.plate.naming import parse_well_name, row_name, well_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

DPI = 100
#: thumbnail side in pixels: as large as fits MONTAGE_MAX_PX across the plate's columns, within these bounds
THUMBNAIL_MIN_PX, THUMBNAIL_MAX_PX = 32, 128
#: the montage's thumbnails span at most this many pixels across (96 wells: 128 px each; 384: 98; 1536: 48)
MONTAGE_MAX_PX = 2400
GAP_PX = 2
#: room for the title (top), column numbers (top), row letters (left) and the legend (bottom)
TITLE_PX, COLUMN_LABELS_PX, ROW_LABELS_PX, LEGEND_PX, RIGHT_PX = 26, 16, 22, 22, 6
#: colours (RGB): object outlines, the frame of a flagged well, a well without a readable image, no well
OUTLINE_RGB = (255, 255, 0)
FLAG_RGB = (255, 0, 0)
NO_IMAGE_RGB = (90, 90, 90)
NOT_IMAGED_RGB = (225, 225, 225)
BACKGROUND_RGB = (255, 255, 255)
FLAG_FRAME_PX = 3
#: contrast stretch: these percentiles of all the plate's thumbnails map to black and white
CONTRAST_PERCENTILES = (1.0, 99.5)
#: a well's name is written on its thumbnail only when the thumbnail is at least this wide
WELL_NAME_MIN_PX = 64
#: wells read at the same time (zarr and TIFF reads release the GIL)
READERS = 4


@dataclass(frozen=True)
class MontageLayout:
    """Where everything is in the montage PNG, in pixels from its top-left corner."""

    rows: int
    columns: int
    thumbnail: int

    @property
    def pitch(self) -> int:
        return self.thumbnail + GAP_PX

    @property
    def top(self) -> int:
        return TITLE_PX + COLUMN_LABELS_PX

    @property
    def left(self) -> int:
        return ROW_LABELS_PX

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the PNG."""
        height = self.top + self.rows * self.pitch - GAP_PX + LEGEND_PX
        width = self.left + self.columns * self.pitch - GAP_PX + RIGHT_PX
        return height, width

    def origin(self, well: str) -> tuple[int, int]:
        """(y, x) of the top-left pixel of ``well``'s thumbnail."""
        row, column = parse_well_name(well)
        return self.top + row * self.pitch, self.left + column * self.pitch


def montage_layout(plate: PlateStructure, thumbnail_px: int | None = None) -> MontageLayout:
    """The montage's layout: the plate's rows and columns, thumbnails as large as :data:`MONTAGE_MAX_PX` allows."""
    if thumbnail_px is None:
        fitting = MONTAGE_MAX_PX // max(plate.columns, 1) - GAP_PX
        thumbnail_px = max(THUMBNAIL_MIN_PX, min(THUMBNAIL_MAX_PX, fitting))
    return MontageLayout(plate.rows, plate.columns, int(thumbnail_px))


def channel_position(plate: PlateStructure, channel: int | str | None) -> tuple[int, str]:
    """(position on a field's channel axis, name) of a channel given by index, name or None (the first)."""
    indices = sorted(plate.channel_indices)
    if not indices:
        raise ValueError(f"plate {plate.name} has no channels")
    if channel is None:
        index = indices[0]
    elif isinstance(channel, int) or str(channel).isdigit():
        index = int(channel)
    else:
        named = [i for i in indices if plate.channel(i).name.lower() == str(channel).lower()]
        if not named:
            known = ", ".join(f"{i} ({plate.channel(i).name})" for i in indices)
            raise ValueError(f"channel {channel!r} is not in plate {plate.name}; channels: {known}")
        index = named[0]
    if index not in indices:
        raise ValueError(f"channel {index} is not in plate {plate.name}; channels: {indices}")
    return indices.index(index), plate.channel(index).name


def outlines(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of object borders: labelled pixels with a 4-neighbour of another label (or background)."""
    edge = np.zeros(labels.shape, dtype=bool)
    inside = labels > 0
    vertical = labels[1:, :] != labels[:-1, :]
    horizontal = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge & inside


def _read(folder: WellFolder, site: int, position: int, size: int) -> Overview | None:
    try:
        return folder.read_overview(site, position, size)
    except (OSError, ValueError, KeyError) as exc:  # one unreadable well must not cost the plate its montage
        log.warning("montage: %s left blank, its images could not be read: %s", folder.well, exc)
        return None


def _thumbnails(
    plate: PlateStructure, folders: Mapping[str, WellFolder], position: int, size: int
) -> dict[str, Overview | None]:
    wells = [w for w in plate.well_names if w in folders]
    first_sites = {w: (plate.wells[w].sites or [1])[0] for w in wells}
    with ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="montage") as pool:
        found = pool.map(lambda w: _read(folders[w], first_sites[w], position, size), wells)
        return dict(zip(wells, found, strict=True))


def _contrast(thumbnails: Iterable[Overview | None]) -> tuple[float, float]:
    values = [t.image.ravel() for t in thumbnails if t is not None and t.image.size]
    if not values:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(np.concatenate(values), CONTRAST_PERCENTILES))
    return low, high if high > low else low + 1.0


def _tile(overview: Overview, size: int, low: float, high: float) -> np.ndarray:
    """The thumbnail as RGB uint8 on a black square of ``size``, centred, with outlines drawn over it."""
    grey = np.clip((overview.image - low) / (high - low), 0.0, 1.0)
    rgb = np.repeat((grey * 255.0 + 0.5).astype(np.uint8)[..., None], 3, axis=2)
    if overview.labels is not None:
        rgb[outlines(overview.labels)] = OUTLINE_RGB
    tile = np.zeros((size, size, 3), dtype=np.uint8)
    h, w = min(rgb.shape[0], size), min(rgb.shape[1], size)
    y, x = (size - h) // 2, (size - w) // 2
    tile[y : y + h, x : x + w] = rgb[:h, :w]
    return tile


def _frame(tile: np.ndarray, colour: tuple[int, int, int]) -> None:
    tile[:FLAG_FRAME_PX], tile[-FLAG_FRAME_PX:] = colour, colour
    tile[:, :FLAG_FRAME_PX], tile[:, -FLAG_FRAME_PX:] = colour, colour


def montage_pixels(
    plate: PlateStructure,
    thumbnails: Mapping[str, Overview | None],
    layout: MontageLayout,
    flagged: Iterable[str] = (),
) -> np.ndarray:
    """The montage as an RGB uint8 array of ``layout.size``: tiles, outlines and frames; no text yet."""
    height, width = layout.size
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND_RGB
    low, high = _contrast(thumbnails.values())
    marked = set(flagged)
    size = layout.thumbnail
    for row in range(layout.rows):
        for column in range(layout.columns):
            well = well_name(row, column)
            y, x = layout.origin(well)
            overview = thumbnails.get(well)
            if overview is not None:
                tile = _tile(overview, size, low, high)
            else:
                tile = np.empty((size, size, 3), dtype=np.uint8)
                tile[:] = NO_IMAGE_RGB if well in plate.wells else NOT_IMAGED_RGB
            if well in marked:
                _frame(tile, FLAG_RGB)
            canvas[y : y + size, x : x + size] = tile
    return canvas


def montage_figure(
    plate: PlateStructure,
    pixels: np.ndarray,
    layout: MontageLayout,
    title: str,
    flagged: Iterable[str] = (),
) -> Figure:
    """The montage's pixels placed 1:1 in a figure of exactly their size, with row, column and well labels."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend in a job

    height, width = layout.size
    # half a pixel more: the canvas size is int(inches * dpi), and e.g. 0.29 * 100 is 28.999...
    figure = Figure(figsize=((width + 0.5) / DPI, (height + 0.5) / DPI), dpi=DPI)
    figure.figimage(pixels, xo=0, yo=0, origin="upper")

    def text(y: float, x: float, label: str, **style: object) -> None:
        figure.text(x / width, 1.0 - y / height, label, **style)  # type: ignore[arg-type]

    size, pitch = layout.thumbnail, layout.pitch
    stride = max(1, math.ceil(14 / pitch))  # labels at least 14 px apart
    for column in range(0, layout.columns, stride):
        text(layout.top - COLUMN_LABELS_PX / 2, layout.left + column * pitch + size / 2, str(column + 1),
             ha="center", va="center", fontsize=7)  # fmt: skip
    for row in range(0, layout.rows, stride):
        text(layout.top + row * pitch + size / 2, layout.left / 2, row_name(row), ha="center", va="center", fontsize=7)
    if size >= WELL_NAME_MIN_PX:
        for well in plate.well_names:
            y, x = layout.origin(well)
            text(y + 4, x + FLAG_FRAME_PX + 2, well, ha="left", va="top", fontsize=6, color="white")
    text(TITLE_PX / 2, width / 2, title, ha="center", va="center", fontsize=9)
    marked = sorted(set(flagged), key=parse_well_name)
    legend = f"yellow: nuclei outlines; red frame: flagged well ({len(marked)})"
    text(height - LEGEND_PX / 2, layout.left, legend, ha="left", va="center", fontsize=7)
    return figure


def plate_montage(
    plate: PlateStructure,
    folders: Mapping[str, WellFolder],
    path: str | Path,
    flagged: Iterable[str] = (),
    channel: int | str | None = None,
    thumbnail_px: int | None = None,
) -> Path:
    """Write the plate montage PNG at ``path`` (atomically) and return it.

    ``folders``: well -> its :class:`WellFolder` (the wells the well jobs wrote; zarr or disk layout).
    ``flagged``: wells to frame in red (e.g. ``flagged_wells(flag_images(rows))``). ``channel``: index or name
    of the channel shown (the nuclei channel, say); default the first. The first site of each well is shown.
    """
    layout = montage_layout(plate, thumbnail_px)
    position, name = channel_position(plate, channel)
    marked = list(flagged)
    thumbnails = _thumbnails(plate, folders, position, layout.thumbnail)
    pixels = montage_pixels(plate, thumbnails, layout, marked)
    figure = montage_figure(plate, pixels, layout, f"{plate.name}: {name}, first site of each well", marked)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


# -- flat-field profiles -----------------------------------------------------------------------------------------
#: profiles are shown block-averaged to at most this many pixels a side (the picture has fewer anyway)
PROFILE_MAX_PX = 256
PANEL_IN, PANEL_HEIGHT_IN = 3.6, 3.4


def _channel_names(names: Mapping[int, str] | Sequence[str]) -> dict[int, str]:
    if isinstance(names, Mapping):
        return {int(k): str(v) for k, v in names.items()}
    return {i + 1: str(v) for i, v in enumerate(names)}


def _shown(profile: np.ndarray) -> np.ndarray:
    factor = max(1, math.ceil(max(profile.shape) / PROFILE_MAX_PX))
    if factor == 1:
        return profile
    y, x = profile.shape[0] // factor * factor, profile.shape[1] // factor * factor
    return profile[:y, :x].reshape(y // factor, factor, x // factor, factor).mean(axis=(1, 3))


def profile_ratio(profile: np.ndarray) -> float:
    """min/max of a flat-field profile: 1 is even illumination, 0.6 a corner at 60% of the brightest spot."""
    high = float(np.max(profile))
    return float(np.min(profile)) / high if high > 0 else float("nan")


def flatfield_figure(
    illumination_npz: str | Path, channel_names: Mapping[int, str] | Sequence[str], path: str | Path
) -> Path:
    """Write the flat-field profiles of ``illumination.npz`` as one PNG, a panel per channel; return its path.

    Each panel shows the profile (mean 1) as an image with a labelled colour bar and, in its title, the
    channel's min/max ratio: how much darker the darkest part of the field is than the brightest, which is
    what the correction divides out. A profile that is exactly flat (too few images for an estimate) says so.
    ``channel_names``: channel index -> name, or the names in index order (1, 2, ...).
    """
    from matplotlib.figure import Figure

    from openhcs_rules.jobs.illumination import load_illumination

    profiles = load_illumination(illumination_npz)
    names = _channel_names(channel_names)
    channels = sorted(profiles)
    figure = Figure(figsize=(PANEL_IN * max(len(channels), 1), PANEL_HEIGHT_IN), dpi=DPI, layout="constrained")
    axes = figure.subplots(1, max(len(channels), 1), squeeze=False).ravel()
    for ax, channel in zip(axes, channels, strict=False):
        profile = np.asarray(profiles[channel], dtype=np.float32)
        ratio = profile_ratio(profile)
        image = ax.imshow(_shown(profile), cmap="magma", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        name = names.get(channel, f"w{channel}")
        note = "flat: not estimated (too few images)" if np.all(profile == profile.flat[0]) else f"min/max {ratio:.2f}"
        ax.set_title(f"{name} (channel {channel})\n{note}", fontsize=9)
        figure.colorbar(image, ax=ax, shrink=0.85, label="relative illumination (mean 1)")
    if not channels:
        axes[0].set_axis_off()
        axes[0].text(0.5, 0.5, "no flat-field profiles", ha="center", va="center")
    figure.suptitle("flat-field profiles", fontsize=10)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return Path(path)
