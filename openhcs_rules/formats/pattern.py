"""Plates of any instrument without a reader: TIFF file names parsed by a regular expression from the config.

For BioTek Cytation, Nikon, or folders of exported TIFFs, the screen config says how names encode the
plate, the way CellProfiler extracts metadata from file names::

    plates:
      cytation1:
        source: disk
        path: /data/cytation1
        format: pattern
        pattern: '(?P<well>[A-P]\\d{1,2})_(?P<channel>DAPI|GFP)_(?P<site>\\d+)\\.tif'
        pattern_layout: 384          # optional: the plate's well count (else the smallest plate holding the wells)

Named groups: ``well`` (``B2``, ``B02``) or ``row`` (letters, or a 1-based number) with ``column``, and
optionally ``site``, ``channel``, ``z`` and ``t``. site, z and t are numbers (absent = 1; numbering that
starts at 0 is shifted to start at 1); channel is a number or a name (names are numbered in sorted order).
Like CellProfiler, the expression may match anywhere in the file name (anchor it with ``^...$`` to match
the whole name); an expression containing ``/`` is matched against the path below the plate folder instead.
Every TIFF below the folder is tried; those that do not match are counted and reported, and discovery
fails, listing examples, when none match. Detection never picks this format: a user must name it.

The expression comes from a config a server may accept from others, so it is bounded in length and
expressions with nested repetition such as ``(a+)+``, which can take exponential time, are refused.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from openhcs_rules.errors import ConfigError, FormatError
from openhcs_rules.formats.base import FormatHandler, tiff_page_info
from openhcs_rules.plate.model import ChannelInfo, ImageKey, ImageStructure, PlateStructure, build_wells
from openhcs_rules.plate.naming import PLATE_LAYOUTS, infer_layout, parse_well_name, row_index, well_name

#: longest expression accepted (a config value, not a program)
MAX_PATTERN_LENGTH = 500
#: the named groups an expression may use
GROUPS: tuple[str, ...] = ("well", "row", "column", "site", "channel", "z", "t")
#: where users set the expression, for messages
PATTERN_KEY = "plates.<plate>.pattern (or --pattern)"
_NUMBERED = ("site", "z", "t")
_MAX_LAYOUT = PLATE_LAYOUTS[1536]
_EXAMPLES = 5
_REPEAT_AFTER = re.compile(r"[*+]|\{\d*,\d*\}")


# -- the expression ------------------------------------------------------------------------------------------------
def _repeats_at(text: str, position: int) -> bool:
    """Does a quantifier that repeats more than once (``*``, ``+``, ``{n,m}``) start at ``position``?"""
    return _REPEAT_AFTER.match(text, position) is not None


def has_nested_repetition(text: str) -> bool:
    """True for a repeated group that itself repeats something, e.g. ``(a+)+`` or ``(?:x*y)*``.

    Such expressions backtrack exponentially on names that almost match; Python's ``re`` has no timeout.
    A character-level scan suffices: escapes and character classes are skipped, groups are tracked.
    """
    stack: list[bool] = []  # per open group: does it contain a repetition?
    position, in_class = 0, False
    while position < len(text):
        char = text[position]
        if char == "\\":
            position += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            stack.append(False)
        elif char == ")" and stack:
            inner = stack.pop()
            repeated = _repeats_at(text, position + 1)
            if inner and repeated:
                return True
            if stack and (inner or repeated):
                stack[-1] = True
        elif _repeats_at(text, position) and stack:
            stack[-1] = True
        position += 1
    return False


def compile_pattern(text: object, key: str = PATTERN_KEY) -> re.Pattern[str]:
    """Check and compile a file-name expression; every problem is a ConfigError naming ``key``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{key}: the pattern format needs a regular expression for the file names, got {text!r}")
    if len(text) > MAX_PATTERN_LENGTH:
        raise ConfigError(f"{key}: the expression has {len(text)} characters, more than {MAX_PATTERN_LENGTH}")
    if has_nested_repetition(text):
        raise ConfigError(
            f"{key}: {text!r} repeats a group that itself repeats (like '(a+)+'), which can take exponential "
            "time on names that almost match; write the group once, e.g. '(a+)' or '[a-z_]+'"
        )
    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise ConfigError(f"{key}: {text!r} is not a valid regular expression: {exc}") from exc
    _check_groups(compiled, key)
    return compiled


def _check_groups(compiled: re.Pattern[str], key: str) -> None:
    """A well (or row and column) is required; unknown group names are typos, not metadata."""
    names = set(compiled.groupindex)
    unknown = sorted(names - set(GROUPS))
    if unknown:
        raise ConfigError(
            f"{key}: unknown group name(s) {', '.join(unknown)} in {compiled.pattern!r}; use {', '.join(GROUPS)}"
        )
    if "well" in names and names & {"row", "column"}:
        raise ConfigError(f"{key}: use either a 'well' group or 'row' and 'column' groups, not both")
    if "well" not in names and not {"row", "column"} <= names:
        raise ConfigError(
            f"{key}: {compiled.pattern!r} needs a named group for the well, '(?P<well>...)', or two for its "
            "row and column, '(?P<row>...)' and '(?P<column>...)'"
        )


# -- matching files --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Match:
    source: str  # posix path below the plate folder
    well: str
    values: dict[str, str]  # site/channel/z/t text as matched ('' when the group did not take part)


@dataclass
class _Scan:
    matches: list[_Match] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    other_files: int = 0


def _tiff_paths(root: Path) -> tuple[list[str], int]:
    """Every TIFF below ``root`` (posix, relative, sorted) and the number of other files; hidden ones skipped."""
    tiffs: list[str] = []
    others = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if name.lower().endswith((".tif", ".tiff")):
                tiffs.append(Path(os.path.relpath(Path(folder) / name, root)).as_posix())
            else:
                others += 1
    return tiffs, others


def _well(match: re.Match[str], source: str) -> str:
    """The canonical well name of a match; a well no 32x48 plate has is an error naming the file."""
    groups = match.groupdict()
    try:
        if "well" in groups:
            row, column = parse_well_name(groups["well"] or "")
        else:
            row_text, column_text = (groups["row"] or "").strip(), (groups["column"] or "").strip()
            row = int(row_text) - 1 if row_text.isdigit() else row_index(row_text)
            column = int(column_text) - 1
    except ValueError:
        matched = groups["well"] if "well" in groups else (groups["row"], groups["column"])
        raise FormatError(
            f"{source}: the pattern's well groups matched {matched!r}, which is not a well (like B02, or row B "
            "or 2 with column 3, counted from 1)"
        ) from None
    if not (0 <= row < _MAX_LAYOUT[0] and 0 <= column < _MAX_LAYOUT[1]):
        raise FormatError(
            f"{source}: the pattern places it in row {row + 1}, column {column + 1}, outside a plate of at most "
            f"{_MAX_LAYOUT[0]} rows x {_MAX_LAYOUT[1]} columns; check the pattern's well groups"
        )
    return well_name(row, column)


def scan_folder(root: Path, compiled: re.Pattern[str]) -> _Scan:
    """Match every TIFF name (or path, for an expression with '/') below ``root``."""
    scan = _Scan()
    tiffs, scan.other_files = _tiff_paths(root)
    on_path = "/" in compiled.pattern
    for source in tiffs:
        match = compiled.search(source if on_path else source.rsplit("/", 1)[-1])
        if match is None:
            scan.unmatched.append(source)
            continue
        values = {g: (match.group(g) or "") for g in ("site", "channel", "z", "t") if g in compiled.groupindex}
        scan.matches.append(_Match(source, _well(match, source), values))
    return scan


# -- matched text -> indices -----------------------------------------------------------------------------------
def _numbers(scan: _Scan, group: str, warnings: list[str]) -> dict[str, int]:
    """Text -> 1-based index for site, z or t: the number itself, shifted by 1 when numbering starts at 0."""
    texts = {m.values.get(group, "") for m in scan.matches}
    bad = next((m for m in scan.matches if m.values.get(group, "") and not m.values[group].isdigit()), None)
    if bad is not None:
        raise FormatError(
            f"{bad.source}: the pattern's '{group}' group matched {bad.values[group]!r}, not a number; make the "
            f"group match digits only, e.g. (?P<{group}>\\d+)"
        )
    numbers = {text: int(text) if text else 1 for text in texts}
    shift = 1 if any(text and value == 0 for text, value in numbers.items()) else 0
    if shift:
        warnings.append(f"'{group}' numbers start at 0 in the file names: shifted by 1 (the first {group} is 1)")
    return {text: value + shift if text else 1 for text, value in numbers.items()}


def _channels(scan: _Scan) -> tuple[dict[str, int], list[ChannelInfo]]:
    """Text -> channel index, and the channels: numbers as they are (0-based shifted), names in sorted order."""
    texts = sorted({m.values.get("channel", "") for m in scan.matches})
    empty = next((m for m in scan.matches if "channel" in m.values and not m.values["channel"]), None)
    if empty is not None:
        raise FormatError(f"{empty.source}: matched the pattern but its 'channel' group matched nothing")
    if all(text.isdigit() or not text for text in texts):
        shift = 1 if any(text and int(text) == 0 for text in texts) else 0
        index = {text: (int(text) if text else 1) + shift for text in texts}
        return index, [ChannelInfo(i, f"w{i}") for i in sorted(set(index.values()))]
    index = {text: number for number, text in enumerate(texts, start=1)}
    return index, [ChannelInfo(number, text) for text, number in index.items()]


def _images(scan: _Scan, warnings: list[str]) -> tuple[list[ImageStructure], list[ChannelInfo]]:
    """One ImageStructure per matched file; two files with one address are an error naming both."""
    numbers = {group: _numbers(scan, group, warnings) for group in _NUMBERED}
    channel_of, channels = _channels(scan)
    seen: dict[ImageKey, str] = {}
    images = []
    for match in scan.matches:
        number = {group: numbers[group][match.values.get(group, "")] for group in _NUMBERED}
        key = ImageKey(
            match.well, number["site"], channel_of[match.values.get("channel", "")], number["z"], number["t"]
        )
        if key in seen:
            raise FormatError(
                f"{seen[key]} and {match.source} both match the pattern as well {key.well} site {key.site} channel "
                f"{key.channel} z {key.z} t {key.t}: add the group that tells them apart (site, channel, z, t) "
                "or anchor the expression so only one of them matches"
            )
        seen[key] = match.source
        images.append(ImageStructure(key, match.source))
    return images, channels


# -- the handler ---------------------------------------------------------------------------------------------------
class PatternHandler(FormatHandler):
    """TIFF folders described by a regular expression (never detected: chosen with ``format: pattern``).

    Configured per plate (``pattern``, optional ``layout`` as a well count); reading a plane needs neither,
    so ``handler_for('pattern')`` in a worker reads planes from plate.json like any other format.
    """

    name = "pattern"
    compatible_backends = ("disk", "zarr")

    def __init__(self, pattern: str | None = None, layout: int | None = None) -> None:
        self.pattern = pattern
        self.layout = layout

    @classmethod
    def detect(cls, root: Path) -> bool:
        """Never: any folder of TIFFs would match some expression, so the user must name this format."""
        return False

    def parse(self, root: Path, plate_name: str | None = None) -> PlateStructure:
        """Match the folder's TIFFs against the pattern and build the plate from the named groups."""
        compiled = compile_pattern(self.pattern)
        root = Path(root).absolute()
        if not root.is_dir():
            raise FormatError(f"plate folder {root} does not exist or is not a folder: check plates.<plate>.path")
        scan = scan_folder(root, compiled)
        if not scan.matches:
            raise FormatError(self._nothing_matched(root, compiled, scan))
        warnings: list[str] = []
        if scan.unmatched:
            warnings.append(
                f"{len(scan.unmatched)} of {len(scan.unmatched) + len(scan.matches)} TIFF file(s) do not match the "
                f"pattern and were ignored, e.g. {', '.join(scan.unmatched[:_EXAMPLES])}"
            )
        images, channels = _images(scan, warnings)
        return self._assemble(root, plate_name, compiled, scan, images, channels, warnings)

    @staticmethod
    def _nothing_matched(root: Path, compiled: re.Pattern[str], scan: _Scan) -> str:
        if not scan.unmatched:
            return (
                f"{root} holds no TIFF files (only {scan.other_files} other file(s)); the pattern format reads "
                "one 2D plane per .tif/.tiff file: export the images as TIFF"
            )
        target = "path below the plate folder" if "/" in compiled.pattern else "file name"
        return (
            f"no TIFF file in {root} matches the pattern {compiled.pattern!r} ({len(scan.unmatched)} TIFF file(s) "
            f"tried, on the {target}), e.g. {', '.join(scan.unmatched[:_EXAMPLES])}; fix {PATTERN_KEY}"
        )

    def _layout(self, wells: list[str], warnings: list[str]) -> tuple[int, int]:
        if self.layout is None:
            layout = infer_layout(wells)
            warnings.append(f"no pattern_layout given: assumed {layout[0]} rows x {layout[1]} columns")
            return layout
        if self.layout not in PLATE_LAYOUTS:
            raise ConfigError(
                f"plates.<plate>.pattern_layout: {self.layout!r} is not a plate's well count ({sorted(PLATE_LAYOUTS)})"
            )
        rows, columns = PLATE_LAYOUTS[self.layout]
        outside = [w for w in wells if parse_well_name(w)[0] >= rows or parse_well_name(w)[1] >= columns]
        if outside:
            raise FormatError(
                f"wells {', '.join(outside[:_EXAMPLES])} matched by the pattern lie outside the {self.layout}-well "
                f"plate ({rows}x{columns}) set by pattern_layout: fix the layout or the pattern's well groups"
            )
        return rows, columns

    def _assemble(
        self,
        root: Path,
        plate_name: str | None,
        compiled: re.Pattern[str],
        scan: _Scan,
        images: list[ImageStructure],
        channels: list[ChannelInfo],
        warnings: list[str],
    ) -> PlateStructure:
        wells = build_wells(images)
        rows, columns = self._layout(list(wells), warnings)
        shape, dtype = _check_shapes(root, images, warnings)
        return PlateStructure(
            name=plate_name or root.name,
            format=self.name,
            root=str(root),
            rows=rows,
            columns=columns,
            channels=channels,
            wells=wells,
            image_shape=shape,
            dtype=dtype,
            warnings=warnings,
            metadata={
                "pattern": compiled.pattern,
                "matched_files": len(scan.matches),
                "unmatched_files": {"count": len(scan.unmatched), "examples": scan.unmatched[: _EXAMPLES * 4]},
                "other_files": scan.other_files,
            },
        )


def _check_shapes(root: Path, images: list[ImageStructure], warnings: list[str]) -> tuple[tuple[int, int], str]:
    """Shape and dtype of the first file of each channel (headers only): the first is the plate's."""
    first: dict[int, ImageStructure] = {}
    for image in sorted(images, key=lambda i: i.key):
        first.setdefault(image.key.channel, image)
    samples = {channel: tiff_page_info(root / image.source) for channel, image in sorted(first.items())}
    shape, dtype = samples[min(samples)]
    for channel, (other_shape, other_dtype) in samples.items():
        if (other_shape, other_dtype) != (shape, dtype):
            warnings.append(
                f"channel {channel} images are {other_shape} {other_dtype} ({first[channel].source}) but the plate's "
                f"first images are {shape} {dtype}: reading them will fail"
            )
    return shape, dtype
