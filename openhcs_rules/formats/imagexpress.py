"""Molecular Devices ImageXpress plates: MetaXpress exports (with an ``.HTD`` file) and direct transfers.

Folder layouts handled (``R`` is the *image root*, the folder holding the ``.HTD``/``TimePoint_N``/images)::

    R/9987.HTD                         MetaXpress export: the HTD describes layout, wavelengths, sites...
    R/TimePoint_1/9987_B02_s1_w1.TIF   one plane per file; TimePoint_N optional (absent = one timepoint)
    R/TimePoint_1/ZStep_1/...          z-planes in ZStep_M folders; files next to them are projections
    R/Projection-Mix_E07_s1<GUID>.tif  direct transfer: no HTD, a GUID glued to the name, *_thumb* previews

Indices: ``_s``/``_w`` numbers are used as they are (1-based, missing means 1); TimePoint_N and ZStep_M
folders become 1-based t and z in the sorted order of N and M, so ``ZStep_1, ZStep_2`` and a plate whose
planes start at ``ZStep_0`` both give z = 1, 2, ...

Projections: when ZStep folders exist, files lying directly in the timepoint folder are z-projections
(MetaXpress writes the projection next to the stack) and are skipped, except for a channel that has no
planes in any ZStep folder (a projection-only channel), which is kept as z = 1. A ``ZStep_0`` folder
whose files carry a ``Z Projection Method`` MetaSeries tag is a projection folder, not a plane (MetaXpress
"include projection" exports put the projection there; ``9987_Plate_3434`` is such an export); without
that tag ZStep_0 is an ordinary plane. Everything skipped is reported in ``plate.warnings`` and
``plate.metadata['projections_skipped']``.

TIFF tags are read sparingly because plates have 10^4-10^6 files: one file per channel (name, wavelength,
pixel size, shape, dtype, projection tag), one file per (well, site) for the stage position when the plate
has at most :data:`STAGE_POSITION_SITE_LIMIT` such pairs (otherwise the first well only, so a stitching
step can still learn the site layout), and the planes of one stack for the z step. Nothing else opens files.
"""

from __future__ import annotations

import csv
import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from openhcs_rules.errors import FormatError, ImageReadError
from openhcs_rules.formats.base import FormatHandler, get_tiff_page, open_tiff
from openhcs_rules.plate.channels import unique_channel_names
from openhcs_rules.plate.model import ChannelInfo, ImageKey, ImageStructure, PlateStructure, build_wells
from openhcs_rules.plate.naming import PLATE_LAYOUTS, infer_layout, parse_well_name, well_name

#: read the stage position of every (well, site) up to this many pairs; beyond, only the first well's
STAGE_POSITION_SITE_LIMIT = 500
#: how many single-subfolder levels :func:`find_image_root` descends (``<plate>/<date>/<acquisition id>``)
CHAIN_DEPTH = 4
#: how many example paths a warning or metadata list quotes
_EXAMPLES = 5
#: the largest plate (rows, columns) a well in a file name may belong to: 1536 wells, rows A..AF
MAX_PLATE_LAYOUT = PLATE_LAYOUTS[1536]

_GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_FILENAME_RE = re.compile(
    r"^(?:(?P<prefix>.*)_)?(?P<well>[A-Z]{1,2}\d{2})"
    r"(?:_s(?P<site>\d+))?(?:_w(?P<channel>\d+))?(?P<thumb>_thumb)?"
    rf"(?P<guid>{_GUID})?\.(?i:tiff?)$"
)
_TIMEPOINT_RE = re.compile(r"^TimePoint_(\d+)$", re.IGNORECASE)
_ZSTEP_RE = re.compile(r"^ZStep_(\d+)$", re.IGNORECASE)


# -- file names -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageXpressName:
    """What an ImageXpress file name says: ``{prefix}_{well}[_s{site}][_w{channel}][_thumb][GUID].tif``."""

    prefix: str
    well: str
    site: int
    channel: int
    thumbnail: bool


@functools.lru_cache(maxsize=4096)
def well_fits_plate(well: str) -> bool:
    """True when ``well`` names a well of a plate of at most :data:`MAX_PLATE_LAYOUT` (A01..AF48).

    Cached: a plate has at most 1,536 well names but up to 10^6 files naming them.
    """
    try:
        row, column = parse_well_name(well)
    except ValueError:
        return False
    return row < MAX_PLATE_LAYOUT[0] and column < MAX_PLATE_LAYOUT[1]


def parse_imagexpress_filename(name: str) -> ImageXpressName | None:
    """Parse one file name; ``None`` when it is not ImageXpress-style.

    A GUID glued after the site or channel number (``_s1E94C24BD-...``) is unambiguous because a GUID has a
    fixed 8-4-4-4-12 shape, so the regex backtracks to the right split of ``_s117654C10-...`` (site 1).
    A "well" no plate has (row past AF, column 00 or past 48) means the name only looks alike: a CV8000
    shading-correction image ``SC_BP445-45_40x_M10_CH01.tif`` would otherwise be well CH01, row 86.
    """
    match = _FILENAME_RE.match(name)
    if match is None or not well_fits_plate(match.group("well")):
        return None
    return ImageXpressName(
        prefix=match.group("prefix") or "",
        well=match.group("well"),
        site=int(match.group("site") or 1),
        channel=int(match.group("channel") or 1),
        thumbnail=match.group("thumb") is not None or "_thumb" in name.lower(),
    )


# -- the HTD file ---------------------------------------------------------------------------------------------
@dataclass
class HTDFile:
    """A MetaXpress ``.HTD`` plate description: ``"Key", value, value...`` lines.

    Parsing is tolerant of lines we cannot split (they are listed in :attr:`ignored_lines` and reported as
    a warning) because only a handful of keys matter; a key we *use* with a malformed value raises
    FormatError, since guessing a plate layout or wavelength count would silently mislabel data.
    """

    path: Path
    entries: dict[str, list[str]]
    ignored_lines: list[int] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> HTDFile:
        """Read and split the file; bytes are decoded as latin-1 (real files hold non-UTF-8 bytes)."""
        try:
            text = path.read_bytes().decode("latin-1")
        except OSError as exc:
            raise FormatError(f"cannot read HTD file {path}: {exc}; check the file's permissions") from exc
        entries: dict[str, list[str]] = {}
        ignored: list[int] = []
        for number, line in enumerate(text.splitlines(), start=1):
            parsed = _split_htd_line(line)
            if parsed is None:
                if line.strip():
                    ignored.append(number)
                continue
            entries[parsed[0]] = parsed[1]
        if "HTSInfoFile" not in entries and not any(k in entries for k in ("XWells", "YWells")):
            raise FormatError(
                f'{path} is not a MetaXpress HTD file (no "HTSInfoFile", "XWells" or "YWells" lines): '
                "remove it from the plate folder or replace it with the .HTD written by MetaXpress"
            )
        return cls(path, entries, ignored)

    def _malformed(self, key: str, expected: str) -> FormatError:
        return FormatError(
            f'HTD file {self.path}: "{key}" should be {expected} but is {self.entries[key]!r}; fix that '
            "line (compare with another export of the same protocol) or delete the .HTD to let the folder "
            "be read as a direct transfer"
        )

    def integer(self, key: str) -> int | None:
        values = self.entries.get(key)
        if not values:
            return None
        try:
            return int(values[0].strip())
        except ValueError:
            raise self._malformed(key, "an integer") from None

    def flag(self, key: str) -> bool | None:
        values = self.entries.get(key)
        if not values:
            return None
        value = values[0].strip().upper()
        if value not in ("TRUE", "FALSE"):
            raise self._malformed(key, "TRUE or FALSE")
        return value == "TRUE"

    @property
    def layout(self) -> tuple[int, int] | None:
        """(rows, columns) from YWells x XWells."""
        rows, columns = self.integer("YWells"), self.integer("XWells")
        if rows is None or columns is None:
            return None
        if rows < 1 or columns < 1:
            raise self._malformed("XWells" if columns < 1 else "YWells", "a positive integer")
        return rows, columns

    @property
    def wave_names(self) -> dict[int, str]:
        names: dict[int, str] = {}
        for key, values in self.entries.items():
            match = re.fullmatch(r"WaveName(\d+)", key)
            if match and values and values[0].strip():
                names[int(match.group(1))] = values[0].strip()
        return names

    @property
    def wavelengths(self) -> list[int]:
        """Declared wavelength indices: 1..NWavelengths (or the WaveName numbers without NWavelengths)."""
        count = self.integer("NWavelengths")
        if count is None:
            return sorted(self.wave_names)
        return list(range(1, count + 1)) if self.flag("Waves") is not False or count == 1 else [1]

    @property
    def timepoints(self) -> int | None:
        return self.integer("TimePoints")

    @property
    def z_steps(self) -> int | None:
        """Declared planes per stack: ZSteps when ZSeries is TRUE, else 1."""
        if self.flag("ZSeries") is False:
            return 1
        return self.integer("ZSteps")

    def selected_wells(self) -> list[str]:
        """Wells marked TRUE in the WellsSelection<row> lines."""
        wells = []
        for key, values in self.entries.items():
            match = re.fullmatch(r"WellsSelection(\d+)", key)
            if not match:
                continue
            row = int(match.group(1)) - 1
            wells += [well_name(row, col) for col, v in enumerate(values) if v.strip().upper() == "TRUE"]
        return sorted(wells, key=parse_well_name)

    def site_count(self) -> int | None:
        """Sites per well: the TRUE cells of SiteSelection<row> when Sites is TRUE, else 1."""
        if self.flag("Sites") is False:
            return 1
        selected = [
            v
            for key, values in self.entries.items()
            if re.fullmatch(r"SiteSelection\d+", key)
            for v in values
            if v.strip().upper() == "TRUE"
        ]
        if selected:
            return len(selected)
        x_sites, y_sites = self.integer("XSites"), self.integer("YSites")
        return x_sites * y_sites if x_sites and y_sites else None


def _split_htd_line(line: str) -> tuple[str, list[str]] | None:
    """``"Key", a, "b c"`` -> ("Key", ["a", "b c"]); None for a line that is not of that form."""
    stripped = line.strip()
    if not stripped.startswith('"'):
        return None
    try:
        fields = next(csv.reader([stripped], skipinitialspace=True, strict=True))
    except (csv.Error, StopIteration):
        return None
    if not fields or not fields[0].strip():
        return None
    return fields[0].strip(), [f.strip() for f in fields[1:]]


# -- folders --------------------------------------------------------------------------------------------------
def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return []


def _numbered_subfolders(
    folder: Path, pattern: re.Pattern[str], entries: list[os.DirEntry[str]] | None = None
) -> list[tuple[int, Path]]:
    """(N, folder) of the subfolders named like ``pattern``, from ``entries`` when the caller has listed
    ``folder`` already (a timepoint folder of a big plate holds 10^5 files: listed once, not twice)."""
    found = []
    for entry in _entries(folder) if entries is None else entries:
        match = pattern.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), Path(entry.path)))
    return sorted(found)


@dataclass
class FolderTally:
    """What recognition saw in a folder and its TimePoint_/ZStep_ subfolders: names only, no file opened.

    Kept as counts and examples so that a refused folder can be described to the user, not just refused.
    """

    htd: bool = False
    tiffs: int = 0
    images: int = 0  # TIFFs named like ImageXpress images of a well on a plate (thumbnails excluded)
    thumbnails: int = 0
    off_plate: list[str] = field(default_factory=list)  # ImageXpress-like names whose "well" no plate has
    foreign: list[str] = field(default_factory=list)  # other TIFF names

    @property
    def consistent(self) -> bool:
        """An HTD, or at least one real image and at least half of the TIFFs named like ImageXpress files.

        Half, not all: exports may hold a stray overview or stitched image (reported, then ignored).
        """
        if self.htd:
            return True
        return self.images > 0 and 2 * (self.images + self.thumbnails) >= self.tiffs

    def add(self, name: str) -> None:
        """Count one TIFF file name."""
        self.tiffs += 1
        parsed = parse_imagexpress_filename(name)
        if parsed is None:
            looks_alike = _FILENAME_RE.match(name) is not None
            examples = self.off_plate if looks_alike else self.foreign
            if len(examples) < _EXAMPLES:
                examples.append(name)
        elif parsed.thumbnail:
            self.thumbnails += 1
        else:
            self.images += 1

    def describe(self, folder: Path) -> str:
        """One sentence for a refusal: what the TIFFs of ``folder`` are named like."""
        if self.tiffs == 0:
            return f"{folder} holds no .HTD file and no TIFF files (nor TimePoint_N/ZStep_M folders with some)"
        parts = [f"{self.tiffs} TIFF file(s) in {folder}: {self.images} named like ImageXpress well images"]
        if self.thumbnails:
            parts.append(f"{self.thumbnails} ImageXpress thumbnails")
        if self.off_plate:
            parts.append(
                f"some named like ImageXpress files but with a 'well' outside a plate of at most "
                f"{MAX_PLATE_LAYOUT[0]} rows x {MAX_PLATE_LAYOUT[1]} columns (calibration or other files), "
                f"e.g. {', '.join(self.off_plate)}"
            )
        if self.foreign:
            parts.append(f"others not named like ImageXpress files, e.g. {', '.join(self.foreign)}")
        return "; ".join(parts)


#: how many TIFF names recognition looks at per folder tree: enough to judge, cheap on 10^6-file plates
TALLY_LIMIT = 5000


def tally_folder(folder: Path, depth: int = 2, tally: FolderTally | None = None) -> FolderTally:
    """Count the HTD and the TIFF names of ``folder`` and of its TimePoint_N/ZStep_M subfolders."""
    tally = tally if tally is not None else FolderTally()
    for entry in _entries(folder):
        if tally.tiffs >= TALLY_LIMIT:
            break
        if entry.is_file():
            if entry.name.lower().endswith(".htd"):
                tally.htd = True
            elif entry.name.lower().endswith((".tif", ".tiff")):
                tally.add(entry.name)
        elif depth > 0 and (_TIMEPOINT_RE.match(entry.name) or _ZSTEP_RE.match(entry.name)) and entry.is_dir():
            tally_folder(Path(entry.path), depth - 1, tally)
    return tally


def _holds_imagexpress_data(folder: Path, depth: int = 2) -> bool:
    """An HTD, or TIFFs (here or in TimePoint_/ZStep_ folders) that are consistently ImageXpress-named."""
    return tally_folder(folder, depth).consistent


def _chain(root: Path, max_depth: int) -> Iterator[Path]:
    """``root``, then each only subfolder below it, up to ``max_depth`` levels (lazily: callers stop early)."""
    current = Path(root)
    for level in range(max_depth + 1):
        yield current
        subfolders = [Path(e.path) for e in _entries(current) if e.is_dir()]
        if len(subfolders) != 1 or level == max_depth:
            return
        current = subfolders[0]


def find_image_root(root: Path, max_depth: int = CHAIN_DEPTH) -> Path | None:
    """The folder under ``root`` that holds the plate: ``root`` itself or the end of a single-folder chain.

    Direct transfers are written as ``<name>/<date>/<acquisition id>/`` with nothing else in the upper
    folders, so users naturally point at the top; we follow a chain of folders that each contain exactly
    one subfolder (other files are allowed), up to ``max_depth`` levels. Several subfolders are ambiguous
    (two acquisitions): we stop and return None rather than pick one.
    """
    return next((folder for folder in _chain(root, max_depth) if _holds_imagexpress_data(folder)), None)


def describe_refusal(root: Path, max_depth: int = CHAIN_DEPTH) -> str:
    """Why ``root`` is not an ImageXpress plate, from the folder of its chain holding the most TIFFs.

    Used in error messages, so a user sees what was found (counts and example names), not only what was not.
    """
    folders = list(_chain(root, max_depth))
    tallies = [(tally_folder(folder), folder) for folder in folders]
    tally, folder = max(tallies, key=lambda pair: pair[0].tiffs)
    text = tally.describe(folder)
    subfolders = [e.name for e in _entries(folders[-1]) if e.is_dir()]
    if len(subfolders) > 1:
        text += f"; {folders[-1]} has {len(subfolders)} subfolders ({', '.join(subfolders[:_EXAMPLES])}): point at one"
    return text


def _find_htd(image_root: Path, timepoint_folders: list[Path], warnings: list[str]) -> Path | None:
    """The plate's HTD: in the image root, else in the first TimePoint folder (copies are identical)."""
    for folder in [image_root, *timepoint_folders[:1]]:
        htds = [Path(e.path) for e in _entries(folder) if e.is_file() and e.name.lower().endswith(".htd")]
        if htds:
            if len(htds) > 1:
                warnings.append(
                    f"{folder} holds {len(htds)} .HTD files ({', '.join(p.name for p in htds)}); used "
                    f"{htds[0].name}: keep one plate per folder"
                )
            return htds[0]
    return None


# -- scanning ------------------------------------------------------------------------------------------------
class _Found(NamedTuple):
    """One image file found on disk, before z/t are turned into 1-based indices.

    A NamedTuple with the DirEntry's path string: one is made per file, and a frozen dataclass holding a
    Path costs more than the rest of discovery at 10^5 files.
    """

    path: str
    name: ImageXpressName
    t_rank: int
    z_number: int | None  # the M of ZStep_M, None for files directly in the timepoint folder


@dataclass
class _Scan:
    planes: list[_Found] = field(default_factory=list)
    projections: list[_Found] = field(default_factory=list)
    projection_folders: list[Path] = field(default_factory=list)
    thumbnails: int = 0
    unrecognised: list[Path] = field(default_factory=list)
    has_zsteps: bool = False


def _tiff_files(
    folder: Path, scan: _Scan, entries: list[os.DirEntry[str]] | None = None
) -> list[tuple[str, ImageXpressName]]:
    """ImageXpress images directly in ``folder`` (or in its listing ``entries``); thumbnails are counted and
    skipped. Names only: ``is_file`` comes from the directory listing on Linux (no stat per file)."""
    images = []
    for entry in _entries(folder) if entries is None else entries:
        if not entry.name.lower().endswith((".tif", ".tiff")) or not entry.is_file():
            continue
        parsed = parse_imagexpress_filename(entry.name)
        if parsed is None:
            scan.unrecognised.append(Path(entry.path))
        elif parsed.thumbnail:
            scan.thumbnails += 1
        else:
            images.append((entry.path, parsed))
    return images


def _plane_info(path: str | Path) -> dict[str, Any]:
    """MetaSeries ``PlaneInfo`` of a TIFF ({} when the file has none)."""
    with open_tiff(path) as tif:
        try:
            metadata = tif.metaseries_metadata
        except Exception:  # a broken MetaSeries XML must not make the pixels unreadable
            return {}
    return dict(metadata.get("PlaneInfo", {})) if metadata else {}


def _channel_samples_by_key(
    files: list[tuple[str, ImageXpressName]],
) -> dict[int, tuple[str, tuple[str, int, int]]]:
    """The first file of each channel and its (well, site, channel)."""
    samples: dict[int, tuple[str, tuple[str, int, int]]] = {}
    for path, parsed in files:
        samples.setdefault(parsed.channel, (path, (parsed.well, parsed.site, parsed.channel)))
    return samples


def _is_projection_folder(
    zero_files: list[tuple[str, ImageXpressName]], next_files: list[tuple[str, ImageXpressName]]
) -> bool:
    """Does ZStep_0 hold projections rather than the first plane?

    MetaXpress "include projection" exports put, per channel, the projection (or the single plane of a
    channel without a stack) into ZStep_0. Tell-tale: some channel's ZStep_0 file carries a
    ``Z Projection Method`` tag while the same well/site/channel in the next ZStep folder does not (a real
    stack). A channel that is a projection everywhere (copied into every folder) proves nothing, so a
    ZStep_0 where only such channels are tagged counts as an ordinary plane.
    """
    next_by_key = {(n.well, n.site, n.channel): p for p, n in next_files}
    for path, key in _channel_samples_by_key(zero_files).values():
        if "Z Projection Method" not in _plane_info(path):
            continue
        following = next_by_key.get(key)
        if following is not None and "Z Projection Method" not in _plane_info(following):
            return True
    return False


def _scan_timepoint(folder: Path, t_rank: int, scan: _Scan) -> None:
    entries = _entries(folder)  # once: its images and its ZStep folders
    top = _tiff_files(folder, scan, entries)
    zsteps = _numbered_subfolders(folder, _ZSTEP_RE, entries)
    if not zsteps:
        scan.planes += [_Found(p, n, t_rank, None) for p, n in top]
        return
    scan.has_zsteps = True
    if top:
        scan.projection_folders.append(folder)
    scan.projections += [_Found(p, n, t_rank, None) for p, n in top]
    listed = [(number, zfolder, _tiff_files(zfolder, scan)) for number, zfolder in zsteps]
    for position, (number, zfolder, files) in enumerate(listed):
        following = listed[position + 1][2] if position + 1 < len(listed) else []
        if number == 0 and following and _is_projection_folder(files, following):
            scan.projection_folders.append(zfolder)
            scan.projections += [_Found(p, n, t_rank, None) for p, n in files]
        else:
            scan.planes += [_Found(p, n, t_rank, number) for p, n in files]


def _promote_projection_only_channels(scan: _Scan, warnings: list[str]) -> list[_Found]:
    """Projections of channels that have no z-planes at all are the channel's only data: keep them."""
    plane_channels = {(f.t_rank, f.name.channel) for f in scan.planes}
    promoted: dict[tuple[str, int, int, int], _Found] = {}
    for found in scan.projections:
        if (found.t_rank, found.name.channel) not in plane_channels:
            key = (found.name.well, found.name.site, found.name.channel, found.t_rank)
            promoted.setdefault(key, found)
    for channel in sorted({key[2] for key in promoted}):
        warnings.append(f"channel w{channel} has no files in any ZStep folder: its projection files are used as z=1")
    kept = set(map(id, promoted.values()))
    scan.projections = [f for f in scan.projections if id(f) not in kept]
    return list(promoted.values())


def _relative(root: Path, path: str, prefix: str | None = None) -> str:
    """``path`` (a DirEntry path under ``root``) relative to ``root``, POSIX-style; a string operation, since
    ``Path.relative_to`` per file costs more than listing the folder. ``prefix``: ``_root_prefix(root)``,
    computed once by callers that convert many paths."""
    prefix = _root_prefix(root) if prefix is None else prefix
    if path.startswith(prefix) and os.sep == "/":
        return path[len(prefix) :]
    return Path(path).relative_to(root).as_posix()


def _root_prefix(root: Path) -> str:
    """``root`` with one trailing separator: what every DirEntry path below it starts with."""
    return os.path.join(str(root), "")


def _key_order(image: ImageStructure) -> tuple[str, int, int, int, int]:
    """The order of ImageKey (well name, site, channel, z, t) as a plain tuple: sorts 10^5 images far
    faster than the dataclass's own comparisons."""
    key = image.key
    return key.well, key.site, key.channel, key.z, key.t


def _to_images(
    root: Path, planes: list[_Found], promoted: list[_Found]
) -> tuple[list[ImageStructure], dict[ImageKey, str]]:
    """Turn found files into ImageStructures; z from the sorted ZStep numbers, promoted files at z=1."""
    z_rank = {
        number: rank for rank, number in enumerate(sorted({f.z_number for f in planes if f.z_number is not None}), 1)
    }
    images: list[ImageStructure] = []
    paths: dict[ImageKey, str] = {}
    prefix = _root_prefix(root)
    for found in [*planes, *promoted]:
        z = z_rank[found.z_number] if found.z_number is not None else 1
        key = ImageKey(found.name.well, found.name.site, found.name.channel, z, found.t_rank)
        if key in paths:
            raise FormatError(
                f"two files claim well {key.well} site {key.site} channel {key.channel} z {key.z} t {key.t}: "
                f"{paths[key]} and {found.path}; a folder must hold one plate (different file name "
                "prefixes mean different plates): move one plate's files to its own folder"
            )
        paths[key] = found.path
        images.append(ImageStructure(key, _relative(root, found.path, prefix)))
    return images, paths


# -- metadata from TIFF tags ------------------------------------------------------------------------------
@dataclass
class _ChannelSample:
    path: str
    info: dict[str, Any]
    shape: tuple[int, int]
    dtype: str
    from_zstep: bool


def _sample_channel(path: str, from_zstep: bool) -> _ChannelSample:
    """Tags, shape and dtype of one file, opened once."""
    with open_tiff(path) as tif:
        page = get_tiff_page(tif, Path(path))
        shape = tuple(n for n in page.shape if n != 1)
        dtype = str(page.dtype)
        try:
            metadata = tif.metaseries_metadata
        except Exception:
            metadata = None
    if len(shape) != 2:
        raise ImageReadError(f"image file {path} has shape {page.shape}, not a single 2D grey plane")
    info = dict(metadata.get("PlaneInfo", {})) if metadata else {}
    return _ChannelSample(path, info, (int(shape[0]), int(shape[1])), dtype, from_zstep)


def _pixel_size_um(info: dict[str, Any]) -> float | None:
    units = str(info.get("spatial-calibration-units", "")).lower()
    value = info.get("spatial-calibration-x")
    if (
        value is None
        or units not in ("um", "µm", "micron", "microns")
        or not info.get("spatial-calibration-state", True)
    ):
        return None
    return float(value)


def _channel_info(index: int, sample: _ChannelSample, htd: HTDFile | None) -> ChannelInfo:
    name = (htd.wave_names.get(index) if htd else None) or sample.info.get("_IllumSetting_")
    name = name or sample.info.get("image-name") or f"w{index}"
    wavelength = sample.info.get("wavelength")
    wavelength_nm = float(wavelength) if isinstance(wavelength, int | float) and wavelength > 0 else None
    return ChannelInfo(index, str(name), wavelength_nm)


def _channel_infos(samples: dict[int, _ChannelSample], htd: HTDFile | None, warnings: list[str]) -> list[ChannelInfo]:
    """The channels, named as MetaXpress named them and made unique (with a warning each) from what it wrote.

    Direct transfers name channels by illumination setting, which several channels may share (four
    'FITC_05'): a channel is told apart by its 'Z Projection Method' tag (a projection-only channel), else
    by its wavelength index ``w<n>`` from the file name.
    """
    channels = [_channel_info(index, sample, htd) for index, sample in sorted(samples.items())]
    qualifiers: dict[int, list[str | None]] = {}
    for index, sample in samples.items():
        method = sample.info.get("Z Projection Method")
        qualifiers[index] = [f"{method} projection" if method else None, f"w{index}"]
    return unique_channel_names(channels, warnings, qualifiers)


def _read_stage_positions(
    images: list[ImageStructure], paths: dict[ImageKey, str], warnings: list[str]
) -> tuple[list[ImageStructure], str]:
    """Attach stage positions (um), read from one file per (well, site) and shared by its planes.

    ``images`` in key order (see :func:`_key_order`); planes without a position are kept as they are.
    """
    first: dict[tuple[str, int], ImageKey] = {}
    for image in images:
        first.setdefault((image.key.well, image.key.site), image.key)
    scope = "all sites"
    if len(first) > STAGE_POSITION_SITE_LIMIT:
        first_well = min((key[0] for key in first), key=parse_well_name)
        first = {k: v for k, v in first.items() if k[0] == first_well}
        scope = f"first well only ({first_well}): more than {STAGE_POSITION_SITE_LIMIT} sites in the plate"
    positions: dict[tuple[str, int], tuple[float, float]] = {}
    for site_key, image_key in first.items():
        try:
            info = _plane_info(paths[image_key])
        except ImageReadError as exc:
            warnings.append(f"stage position not read: {exc}")
            continue
        x, y = info.get("stage-position-x"), info.get("stage-position-y")
        if isinstance(x, int | float) and isinstance(y, int | float):
            positions[site_key] = (float(x), float(y))
    updated = [
        ImageStructure(i.key, i.source, i.index, position)
        if (position := positions.get((i.key.well, i.key.site))) is not None
        else i
        for i in images
    ]
    return updated, scope


def _z_step_um(images: list[ImageStructure], paths: dict[ImageKey, str], skip: set[int]) -> float | None:
    """Mean distance between consecutive planes of the first stack of the first real z-stack channel
    (``images`` in key order)."""
    if len({image.key.z for image in images}) < 2:
        return None  # no stacks (most screens): not worth grouping 10^5 planes to find none
    stacks: dict[tuple[str, int, int, int], list[ImageKey]] = {}
    for image in images:
        if image.key.channel not in skip:
            k = image.key
            stacks.setdefault((k.well, k.site, k.channel, k.t), []).append(k)
    stack = next((keys for keys in stacks.values() if len(keys) > 1), None)
    if stack is None:
        return None
    found = [_plane_info(paths[key]).get("z-position") for key in sorted(stack, key=lambda k: k.z)]
    heights = [h for h in found if isinstance(h, int | float)]
    if len(heights) != len(found):
        return None
    steps = [abs(b - a) for a, b in zip(heights, heights[1:], strict=False)]
    return round(sum(steps) / len(steps), 4)


# -- layout and HTD cross-checks ----------------------------------------------------------------------------
def _compare_with_htd(htd: HTDFile, plate: PlateStructure, warnings: list[str]) -> None:
    """Everything the HTD promises that the folder does not deliver becomes a warning, not a fiction."""
    found_channels = set(plate.channel_indices)
    for index in htd.wavelengths:
        if index not in found_channels:
            name = htd.wave_names.get(index, f"w{index}")
            warnings.append(f"HTD declares wavelength {index} ({name}) but no files were found for it")
    for index in sorted(found_channels - set(htd.wavelengths)):
        warnings.append(f"files for wavelength {index} exist but the HTD declares only {htd.wavelengths}")
    missing_wells = [w for w in htd.selected_wells() if w not in plate.wells]
    if missing_wells:
        warnings.append(f"HTD selects wells with no files: {', '.join(missing_wells)}")
    checks = (
        ("timepoints", htd.timepoints, len(plate.timepoints)),
        ("z-steps", htd.z_steps, len(plate.z_planes)),
        ("sites per well", htd.site_count(), len(plate.sites)),
    )
    for label, declared, found in checks:
        if declared and declared != found:
            warnings.append(f"HTD declares {declared} {label} but {found} were found in the folders")
    rows, cols = plate.rows, plate.columns
    outside = [w for w in plate.well_names if parse_well_name(w)[0] >= rows or parse_well_name(w)[1] >= cols]
    if outside:
        warnings.append(f"wells {', '.join(outside)} lie outside the HTD's {rows}x{cols} layout")


# -- the handler ------------------------------------------------------------------------------------------------
class ImageXpressHandler(FormatHandler):
    """MetaXpress exports and ImageXpress direct transfers (see the module docstring for the layout)."""

    name = "imagexpress"
    compatible_backends = ("disk", "zarr")

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True when ``root`` (or the end of a single-subfolder chain below it) holds an ``.HTD`` file, or
        TIFFs (there or in TimePoint_N/ZStep_M folders) consistent with ImageXpress: at least one image of a
        well on a plate of at most 32x48 and at least half of them ImageXpress-named (see FolderTally)."""
        return Path(root).is_dir() and find_image_root(Path(root)) is not None

    @classmethod
    def refusal(cls, root: Path) -> str | None:
        """What the TIFFs of a folder this format did not claim are named like (for the registry's error)."""
        return describe_refusal(Path(root)) if Path(root).is_dir() else None

    def parse(self, root: Path, plate_name: str | None = None) -> PlateStructure:
        """Discover every plane. ``root`` may be the image root or a parent chain leading to it (as in
        :meth:`detect`); sources are stored relative to ``root`` and ``plate.root`` is ``root`` absolute."""
        root = Path(root).absolute()
        image_root = find_image_root(root) if root.is_dir() else None
        if image_root is None:
            raise FormatError(
                f"{root} is not an ImageXpress plate folder: it needs a .HTD file, or TIFFs (also in "
                "TimePoint_N/ZStep_M folders, or down a chain of single subfolders) mostly named like "
                f"'Plate_B02_s1_w1.tif'. Found: {describe_refusal(root) if root.is_dir() else 'no folder'}. "
                "Point at the folder that holds the plate's images, or use the format of the instrument that "
                "wrote them (format: pattern for file names of your own)"
            )
        warnings: list[str] = []
        timepoints = _numbered_subfolders(image_root, _TIMEPOINT_RE)
        htd_path = _find_htd(image_root, [p for _, p in timepoints], warnings)
        htd = HTDFile.read(htd_path) if htd_path else None
        if htd and htd.ignored_lines:
            warnings.append(
                f"HTD file {htd_path}: lines {htd.ignored_lines} are not '\"Key\", value' lines and were ignored"
            )
        scan = _Scan()
        for rank, (_, folder) in enumerate(timepoints or [(None, image_root)], start=1):
            _scan_timepoint(folder, rank, scan)
        promoted = _promote_projection_only_channels(scan, warnings) if scan.has_zsteps else []
        images, paths = _to_images(root, scan.planes, promoted)
        if not images:
            raise FormatError(
                f"{image_root} looks like an ImageXpress plate but holds no image files (only thumbnails or "
                "an HTD?): copy the TIFFs of the plate into it"
            )
        return self._assemble(root, image_root, plate_name, images, paths, scan, htd, warnings)

    def _assemble(
        self,
        root: Path,
        image_root: Path,
        plate_name: str | None,
        images: list[ImageStructure],
        paths: dict[ImageKey, str],
        scan: _Scan,
        htd: HTDFile | None,
        warnings: list[str],
    ) -> PlateStructure:
        metadata: dict[str, Any] = {"image_root": image_root.relative_to(root).as_posix()}
        images = sorted(images, key=_key_order)  # once, for the helpers that take the first plane of a group
        samples = self._channel_samples(images, paths, scan)
        channels = _channel_infos(samples, htd, warnings)
        first = samples[min(samples)]
        self._check_samples(samples, first, warnings, metadata)
        images, metadata["stage_positions"] = _read_stage_positions(images, paths, warnings)
        z_step = _z_step_um(images, paths, skip=set(metadata.get("projection_channels", {})))
        wells = build_wells(images)
        layout = htd.layout if htd else None
        if layout is None:
            layout = infer_layout(list(wells))
            warnings.append(
                f"no plate layout in an HTD file: assumed the smallest standard plate holding the wells, "
                f"{layout[0]} rows x {layout[1]} columns"
            )
        plate = PlateStructure(
            name=plate_name or root.name,
            format=self.name,
            root=str(root),
            rows=layout[0],
            columns=layout[1],
            channels=channels,
            wells=wells,
            image_shape=first.shape,
            dtype=first.dtype,
            pixel_size_um=_pixel_size_um(first.info),
            z_step_um=z_step,
            warnings=warnings,
            metadata=metadata,
        )
        self._report_skipped(root, scan, plate)
        if htd:
            plate.metadata["htd_file"] = htd.path.relative_to(root).as_posix()
            plate.metadata["htd"] = htd.entries
            _compare_with_htd(htd, plate, warnings)
        plate.metadata["file_prefixes"] = sorted({f.name.prefix for f in [*scan.planes, *scan.projections]})
        return plate

    @staticmethod
    def _channel_samples(
        images: list[ImageStructure], paths: dict[ImageKey, str], scan: _Scan
    ) -> dict[int, _ChannelSample]:
        """Open the first file of each channel (``images`` in key order) once for tags, shape and dtype."""
        zstep_files = {f.path for f in scan.planes if f.z_number is not None}
        samples: dict[int, _ChannelSample] = {}
        for image in images:
            if image.key.channel not in samples:
                path = paths[image.key]
                samples[image.key.channel] = _sample_channel(path, path in zstep_files)
        return samples

    @staticmethod
    def _check_samples(
        samples: dict[int, _ChannelSample],
        first: _ChannelSample,
        warnings: list[str],
        metadata: dict[str, Any],
    ) -> None:
        projection_channels: dict[str, str] = {}
        for index, sample in sorted(samples.items()):
            if sample.shape != first.shape or sample.dtype != first.dtype:
                warnings.append(
                    f"channel w{index} images are {sample.shape} {sample.dtype} ({sample.path}) but the plate's "
                    f"first images are {first.shape} {first.dtype}: reading them will fail"
                )
            method = sample.info.get("Z Projection Method")
            if method and sample.from_zstep:
                projection_channels[str(index)] = str(method)
                warnings.append(
                    f"channel w{index}: its files in the ZStep folders are '{method}' projections, not "
                    "z-planes (MetaXpress copies a projection-only channel into every ZStep folder)"
                )
        if projection_channels:
            metadata["projection_channels"] = projection_channels

    @staticmethod
    def _report_skipped(root: Path, scan: _Scan, plate: PlateStructure) -> None:
        if scan.projections:
            rel = sorted(_relative(root, f.path) for f in scan.projections)
            folders = sorted({p.relative_to(root).as_posix() or "." for p in scan.projection_folders})
            plate.metadata["projections_skipped"] = {
                "count": len(rel),
                "folders": folders,
                "examples": rel[:_EXAMPLES],
            }
            plate.warnings.append(
                f"{len(rel)} projection file(s) skipped (z-planes come from the ZStep folders): in {', '.join(folders)}"
            )
        if scan.thumbnails:
            plate.metadata["thumbnails_ignored"] = scan.thumbnails
        if scan.unrecognised:
            rel = sorted(p.relative_to(root).as_posix() for p in scan.unrecognised)
            plate.metadata["unrecognised_files"] = rel[: _EXAMPLES * 4]
            plate.warnings.append(
                f"{len(rel)} TIFF file(s) do not follow the ImageXpress naming '<prefix>_<well>_s<site>_w<ch>"
                f".tif' and were ignored, e.g. {', '.join(rel[:_EXAMPLES])}"
            )
