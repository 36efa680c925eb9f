"""A synthetic ImageXpress plate with a known number of nuclei in every image.

Why synthetic: a demo and a benchmark need a plate of any size, and a test of segmentation accuracy needs
the true answer. The images imitate what makes real nuclei images hard, each for a reason:

* nuclei are ellipses of varied size (equivalent diameter 12-30 px at 512x512, scaled with the image
  side), orientation and brightness, with textured interiors (chromatin) and soft edges;
* about 40% of the nuclei touch a neighbour in pairs or clusters of three, overlapping by 8-20% of
  their radii: a clear waist a human sees, which a segmentation must split;
* no nucleus is cut by the image border (every nucleus lies fully inside), so the true count is
  unambiguous;
* illumination is uneven (multiplicative vignetting, down to ~60% in a corner, the same for every image
  of a channel, so it can be estimated across the plate and divided out), on top of an additive camera
  offset and a gentle per-image gradient (what background subtraction is for);
* shot noise and camera read noise;
* a z-series: the middle plane is in focus, the others are blurred more the further they are from it;
* channel 1 is the nuclear stain (DAPI-like). Channel 2 is a cytoplasm-like stain around the same cells
  whose brightness depends on the well (:func:`treatment_factor`, a dose response along the plate
  columns), so per-well measurements show an effect. Channels 3+ hold small spots in the cytoplasm.

Nuclei density also varies with the well (:func:`density_factor`, falling along the columns like a
toxic dilution series), so a count heatmap of the plate shows structure.

The plate is written in the MetaXpress export layout (``{plate}.HTD`` plus
``TimePoint_{t}/[ZStep_{z}/]{plate}_{well}_s{site}_w{channel}.TIF``, uint16 TIFFs tagged ``MetaSeries`` with
MetaSeries XML) so the ordinary ImageXpress reader opens it. Files are written atomically and
``ground_truth.csv`` (well, site, t, true_count) is written last: a plate folder without it is
incomplete.

Shot noise is drawn as ``sqrt(lambda) * N(0, 1)`` (the normal approximation of Poisson noise): it has
Poisson's mean and variance exactly and differs only in skewness (1/sqrt(lambda) < 0.13, as every pixel
here receives more than ~60 photons), and it is six times faster than exact Poisson draws at 2048x2048.

The in-focus plane of a z-series is the middle one (``ZStep_{z_planes // 2 + 1}``). Touching nuclei are
combined with a maximum (no brighter overlap), as nuclei squeezed side by side in a monolayer look.
"""

from __future__ import annotations

import csv
import io
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import scipy.ndimage as ndi
import tifffile

from openhcs_rules.core.files import atomic_path, atomic_write_text
from openhcs_rules.demo.ground_truth import GROUND_TRUTH_FILE
from openhcs_rules.functions._resample import block_mean, upsample
from openhcs_rules.plate.naming import PLATE_LAYOUTS, normalise_well_name, parse_well_name

DEFAULT_WELLS = ("B02", "B03", "C02", "C03")
WAVE_NAMES = ("DAPI", "FITC", "Texas Red", "Cy5")
WAVELENGTHS_NM = (452.0, 536.0, 624.0, 692.0)

#: nuclei per 512x512-equivalent field at density factor 1 (counts do not change with the image size:
#: nuclei scale with it, as if the same field were imaged with a finer camera).
BASE_COUNT = 60
#: growth of the count per time point (cells divide between time points).
GROWTH_PER_TIMEPOINT = 1.15
CAMERA_OFFSET = 100.0
READ_NOISE = 3.0
NUCLEUS_LEVEL = 1600.0
CYTOPLASM_LEVEL = 350.0
SPOT_LEVEL = 900.0
AUTOFLUORESCENCE = (120.0, 180.0, 150.0, 150.0)
VIGNETTING_STRENGTH = 0.4
#: Gaussian defocus blur (pixels at 512x512) per z step away from the in-focus plane.
DEFOCUS_PER_STEP = 2.0
#: the well A01's centre on the stage (um) and the well pitch of a 96-well plate; real MetaXpress files
#: of this plate type put B02 at (23300, 20200).
_A01_CENTRE_UM = (14300.0, 11200.0)
_WELL_PITCH_96_UM = 9000.0


@dataclass(frozen=True)
class Nucleus:
    """One true nucleus: centre (pixels), semi-axes a >= b (pixels), orientation (radians), brightness."""

    y: float
    x: float
    a: float
    b: float
    theta: float
    brightness: float
    group: int

    def radius_towards(self, angle: float) -> float:
        """Distance from the centre to the ellipse edge in direction ``angle`` (radians, y-x plane)."""
        rel = angle - self.theta
        return self.a * self.b / math.hypot(self.b * math.cos(rel), self.a * math.sin(rel))


@dataclass
class SiteImages:
    """One field of view: images ``(channels, z, y, x)`` uint16, the true labels and the nuclei."""

    images: np.ndarray
    labels: np.ndarray
    nuclei: list[Nucleus] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.nuclei)


def density_factor(well: str) -> float:
    """Relative nuclei density of a well: 1.45 in column 1, 0.15 less per column (min 0.3), 5% less per row."""
    row, column = parse_well_name(well)
    return max(0.3, 1.45 - 0.15 * column) * max(0.5, 1.0 - 0.05 * row)


def treatment_factor(well: str) -> float:
    """Relative cytoplasm (channel 2) and spot brightness of a well: 1 + 0.5 per column after the first."""
    _, column = parse_well_name(well)
    return 1.0 + 0.5 * column


def _scale(shape: tuple[int, int]) -> float:
    return min(shape) / 512.0


def _random_nucleus(rng: np.random.Generator, scale: float, y: float, x: float, group: int) -> Nucleus:
    diameter = float(np.clip(rng.lognormal(math.log(19.0), 0.2), 12.0, 30.0)) * scale
    ratio = float(rng.uniform(0.65, 1.0))
    return Nucleus(
        y=y,
        x=x,
        a=diameter / 2.0 / math.sqrt(ratio),
        b=diameter / 2.0 * math.sqrt(ratio),
        theta=float(rng.uniform(0.0, math.pi)),
        brightness=float(np.clip(rng.lognormal(0.0, 0.25), 0.5, 2.0)),
        group=group,
    )


def _moved(nucleus: Nucleus, y: float, x: float) -> Nucleus:
    return Nucleus(y, x, nucleus.a, nucleus.b, nucleus.theta, nucleus.brightness, nucleus.group)


def site_layout(well: str, site: int, timepoint: int, shape: tuple[int, int], seed: int = 0) -> list[Nucleus]:
    """The true nuclei of one image (deterministic for well, site, timepoint, shape and seed).

    Groups of 1, 2 or 3 nuclei (probabilities 0.7/0.22/0.08) are placed by rejection sampling: members
    of a group touch (centre distance 0.80-0.92 of the sum of their radii along the joining line), other
    nuclei keep a gap of at least 2 px (x scale), and every nucleus lies fully inside the image.
    """
    row, column = parse_well_name(well)
    rng = np.random.default_rng([seed, row, column, site, timepoint])
    height, width = shape
    scale = _scale(shape)
    area_ratio = (height * width) / float(min(shape) ** 2)
    target = round(
        BASE_COUNT * area_ratio * density_factor(well) * GROWTH_PER_TIMEPOINT ** (timepoint - 1) * rng.uniform(0.9, 1.1)
    )
    gap = 2.0 * scale
    edge = 3.0 * scale
    placed: list[Nucleus] = []
    centres = np.zeros((0, 2))
    reach = np.zeros(0)
    group = 0
    attempts = 0
    while len(placed) < target and attempts < 80 * target:
        attempts += 1
        size = min(int(rng.choice([1, 2, 3], p=[0.7, 0.22, 0.08])), target - len(placed))
        first = _random_nucleus(rng, scale, 0.0, 0.0, group)
        members = [
            _moved(
                first,
                float(rng.uniform(first.a + edge, height - first.a - edge)),
                float(rng.uniform(first.a + edge, width - first.a - edge)),
            )
        ]
        ok = True
        for _ in range(1, size):
            anchor = members[int(rng.integers(len(members)))]
            new = _random_nucleus(rng, scale, 0.0, 0.0, group)
            angle = float(rng.uniform(0.0, 2.0 * math.pi))
            distance = float(rng.uniform(0.80, 0.92)) * (
                anchor.radius_towards(angle) + new.radius_towards(angle + math.pi)
            )
            new = _moved(new, anchor.y + distance * math.sin(angle), anchor.x + distance * math.cos(angle))
            for other in members:
                if other is not anchor and math.hypot(new.y - other.y, new.x - other.x) < 0.95 * (other.a + new.a):
                    ok = False
            members.append(new)
        for member in members:
            if not (edge + member.a <= member.y <= height - edge - member.a):
                ok = False
            if not (edge + member.a <= member.x <= width - edge - member.a):
                ok = False
        if ok and centres.shape[0]:
            for member in members:
                distances = np.hypot(centres[:, 0] - member.y, centres[:, 1] - member.x)
                if np.any(distances < reach + member.a + gap):
                    ok = False
                    break
        if not ok:
            continue
        placed.extend(members)
        centres = np.vstack([centres, [[m.y, m.x] for m in members]])
        reach = np.concatenate([reach, [m.a for m in members]])
        group += 1
    return placed


def _window(y: float, x: float, extent: float, shape: tuple[int, int]) -> tuple[slice, slice]:
    """Bounding box (clipped to the image) of a disc of radius ``extent`` around (y, x)."""
    y0, y1 = max(0, int(y - extent)), min(shape[0], int(y + extent) + 2)
    x0, x1 = max(0, int(x - extent)), min(shape[1], int(x + extent) + 2)
    return slice(y0, y1), slice(x0, x1)


def _rho(window: tuple[slice, slice], y: float, x: float, a: float, b: float, theta: float) -> np.ndarray:
    """Normalised elliptical radius (1 on the edge of the ellipse) at every pixel of ``window``."""
    dy = (np.arange(window[0].start, window[0].stop, dtype=np.float32) - y)[:, None]
    dx = (np.arange(window[1].start, window[1].stop, dtype=np.float32) - x)[None, :]
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    along = dx * cos_t + dy * sin_t
    across = -dx * sin_t + dy * cos_t
    return np.sqrt((along / a) ** 2 + (across / b) ** 2)


def _soft_inside(rho: np.ndarray, radius: float, softness: float) -> np.ndarray:
    """~1 inside, ~0 outside, with a logistic edge ``softness`` pixels wide."""
    return 1.0 / (1.0 + np.exp(np.clip((rho - 1.0) * radius / softness, -30.0, 30.0)))


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return noise / max(float(noise.std()), 1e-6)


def _render_nuclei(nuclei: list[Nucleus], shape: tuple[int, int], texture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free nuclear signal (peak ~brightness) and true labels (1..n in layout order)."""
    scale = _scale(shape)
    signal = np.zeros(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.int32)
    softness = 0.7 * scale
    for index, nucleus in enumerate(nuclei, start=1):
        window = _window(nucleus.y, nucleus.x, nucleus.a + 4.0 * softness + 1.0, shape)
        rho = _rho(window, nucleus.y, nucleus.x, nucleus.a, nucleus.b, nucleus.theta)
        profile = _soft_inside(rho, nucleus.b, softness) * (1.0 - 0.12 * np.minimum(rho, 1.0) ** 2)
        profile = (nucleus.brightness * profile).astype(np.float32)
        brighter = profile > signal[window]
        signal[window] = np.where(brighter, profile, signal[window])
        labels[window] = np.where(brighter & (rho <= 1.0), index, labels[window])
    signal *= np.clip(1.0 + 0.15 * texture, 0.0, None)
    return signal, labels


def _render_cytoplasm(
    nuclei: list[Nucleus], shape: tuple[int, int], rng: np.random.Generator, texture: np.ndarray
) -> tuple[np.ndarray, list[tuple[Nucleus, float]]]:
    """Cytoplasm-like signal (peak ~1) around every nucleus, dimmer over the nucleus itself."""
    scale = _scale(shape)
    signal = np.zeros(shape, dtype=np.float32)
    cells = []
    softness = 2.0 * scale
    for nucleus in nuclei:
        grow = float(rng.uniform(1.6, 2.0))
        shift = rng.normal(0.0, 0.2 * nucleus.b, size=2)
        cell = _moved(nucleus, nucleus.y + float(shift[0]), nucleus.x + float(shift[1]))
        level = float(rng.lognormal(0.0, 0.3))
        cells.append((Nucleus(cell.y, cell.x, nucleus.a * grow, nucleus.b * grow, nucleus.theta, level, 0), grow))
        window = _window(cell.y, cell.x, nucleus.a * grow + 4.0 * softness + 1.0, shape)
        rho = _rho(window, cell.y, cell.x, nucleus.a * grow, nucleus.b * grow, nucleus.theta)
        rho_nucleus = _rho(window, nucleus.y, nucleus.x, nucleus.a, nucleus.b, nucleus.theta)
        profile = level * _soft_inside(rho, nucleus.b * grow, softness)
        profile *= 1.0 - 0.6 * _soft_inside(rho_nucleus, nucleus.b, softness)
        signal[window] = np.maximum(signal[window], profile.astype(np.float32))
    smooth_texture = ndi.gaussian_filter(texture, 2.0 * scale)
    smooth_texture /= max(float(smooth_texture.std()), 1e-6)
    signal *= np.clip(1.0 + 0.3 * smooth_texture, 0.0, None)
    return signal, cells


def _render_spots(
    cells: list[tuple[Nucleus, float]], shape: tuple[int, int], rng: np.random.Generator, rate: float
) -> np.ndarray:
    """Small Gaussian spots (peak ~1) scattered in each cell's cytoplasm; ``rate`` spots per cell on average."""
    scale = _scale(shape)
    sigma = 1.2 * scale
    radius = int(math.ceil(3 * sigma))
    signal = np.zeros(shape, dtype=np.float32)
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    for cell, _ in cells:
        for _ in range(int(rng.poisson(rate))):
            r = cell.b * math.sqrt(float(rng.uniform(0.3, 0.9)))
            angle = float(rng.uniform(0, 2 * math.pi))
            y, x = cell.y + r * math.sin(angle), cell.x + r * math.cos(angle)
            iy, ix = int(round(y)), int(round(x))
            y0, y1 = max(0, iy - radius), min(shape[0], iy + radius + 1)
            x0, x1 = max(0, ix - radius), min(shape[1], ix + radius + 1)
            if y0 >= y1 or x0 >= x1:
                continue
            gy = np.exp(-((offsets[y0 - iy + radius : y1 - iy + radius] + iy - y) ** 2) / (2 * sigma**2))
            gx = np.exp(-((offsets[x0 - ix + radius : x1 - ix + radius] + ix - x) ** 2) / (2 * sigma**2))
            signal[y0:y1, x0:x1] += gy[:, None] * gx[None, :]
    return signal


def _defocus(signal: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; large blurs are computed on a block-averaged copy (they have no fine detail)."""
    if sigma <= 0:
        return signal
    if sigma <= 4.0:
        return ndi.gaussian_filter(signal, sigma)
    factor = max(1, int(sigma // 2))
    small = ndi.gaussian_filter(block_mean(signal, factor), sigma / factor)
    return np.asarray(upsample(small, factor, signal.shape), dtype=np.float32)


def vignetting(channel: int, shape: tuple[int, int]) -> np.ndarray:
    """The multiplicative illumination of a channel (1 at its optical centre, ~0.6 in the far corner)."""
    height, width = shape
    centre_y = height * (0.5 + 0.05 * ((channel % 3) - 1))
    centre_x = width * (0.5 - 0.04 * ((channel % 2) * 2 - 1))
    yy = (np.arange(height, dtype=np.float32)[:, None] - centre_y) / height
    xx = (np.arange(width, dtype=np.float32)[None, :] - centre_x) / width
    corner = 0.5**2 + 0.55**2
    return (1.0 - VIGNETTING_STRENGTH * (yy**2 + xx**2) / corner).astype(np.float32)


def _camera(photons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shot noise (normal approximation of Poisson), camera offset and read noise; uint16 counts."""
    photons = np.maximum(photons, 0.0)
    noisy = photons + np.sqrt(photons) * rng.standard_normal(photons.shape, dtype=np.float32)
    noisy += CAMERA_OFFSET + READ_NOISE * rng.standard_normal(photons.shape, dtype=np.float32)
    return np.clip(np.rint(noisy), 0, 65535).astype(np.uint16)


def synthesize_site(
    well: str,
    site: int = 1,
    timepoint: int = 1,
    shape: tuple[int, int] = (512, 512),
    seed: int = 0,
    channels: int = 2,
    z_planes: int = 3,
) -> SiteImages:
    """Render one field of view (all channels and z planes) in memory; see the module docstring.

    The in-focus plane is ``z_planes // 2`` (0-based; the middle one). Deterministic for its arguments.
    """
    if channels < 1 or z_planes < 1:
        raise ValueError(f"need at least one channel and one z plane (got {channels}, {z_planes})")
    well = normalise_well_name(well)
    shape = (int(shape[0]), int(shape[1]))
    nuclei = site_layout(well, site, timepoint, shape, seed)
    row, column = parse_well_name(well)
    rng = np.random.default_rng([seed, row, column, site, timepoint, 1])
    scale = _scale(shape)
    texture = _texture(rng, shape, 1.2 * scale)
    nuclear, labels = _render_nuclei(nuclei, shape, texture)
    clean = [nuclear * NUCLEUS_LEVEL]
    if channels >= 2:
        cytoplasm, cells = _render_cytoplasm(nuclei, shape, rng, texture)
        clean.append(cytoplasm * (CYTOPLASM_LEVEL * treatment_factor(well)))
        for _ in range(2, channels):
            spots = _render_spots(cells, shape, rng, rate=3.0 * treatment_factor(well))
            clean.append(spots * SPOT_LEVEL)
    focus = z_planes // 2
    angle = float(rng.uniform(0, 2 * math.pi))
    yy = np.linspace(-0.5, 0.5, shape[0], dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, shape[1], dtype=np.float32)[None, :]
    ramp = yy * math.sin(angle) + xx * math.cos(angle)
    images = np.empty((channels, z_planes, *shape), dtype=np.uint16)
    for channel, signal in enumerate(clean, start=1):
        autofluorescence = AUTOFLUORESCENCE[min(channel, len(AUTOFLUORESCENCE)) - 1]
        illumination = vignetting(channel, shape)
        gradient = 0.12 * autofluorescence * ramp
        for z in range(z_planes):
            blurred = _defocus(signal, DEFOCUS_PER_STEP * scale * abs(z - focus))
            photons = illumination * (blurred + autofluorescence) + gradient
            images[channel - 1, z] = _camera(photons, rng)
    return SiteImages(images=images, labels=labels, nuclei=nuclei)


def _plate_layout(wells: list[str]) -> tuple[int, int]:
    """(rows, columns) of the smallest standard plate of >= 96 wells holding every well."""
    max_row = max(parse_well_name(w)[0] for w in wells)
    max_col = max(parse_well_name(w)[1] for w in wells)
    for count in sorted(PLATE_LAYOUTS):
        rows, cols = PLATE_LAYOUTS[count]
        if count >= 96 and max_row < rows and max_col < cols:
            return rows, cols
    raise ValueError(f"wells {wells} do not fit a standard plate")


def _site_grid(sites: int) -> tuple[int, int]:
    x_sites = math.ceil(math.sqrt(sites))
    return x_sites, math.ceil(sites / x_sites)


def _bool_list(values: list[bool]) -> str:
    return ", ".join("TRUE" if v else "FALSE" for v in values)


def _htd_text(
    plate_name: str,
    wells: list[str],
    sites: int,
    channels: int,
    z_planes: int,
    timepoints: int,
    seed: int,
) -> str:
    """HTD text as MetaXpress writes it (CRLF line ends, quoted keys)."""
    rows, cols = _plate_layout(wells)
    chosen = {parse_well_name(w) for w in wells}
    x_sites, y_sites = _site_grid(sites)
    names = [_wave_name(c) for c in range(1, channels + 1)]
    identifier = uuid.uuid5(uuid.NAMESPACE_URL, f"openhcs_rules.demo/{plate_name}/{seed}")
    lines = [
        '"HTSInfoFile", Version 1.0',
        f'"Description", "Synthetic demo plate (openhcs_rules.demo, seed {seed}): {len(wells)} wells, '
        f'{sites} sites, {channels} channels, {z_planes} z, {timepoints} timepoints"',
        f'"TimePoints", {timepoints}',
        f'"ZSeries", {"TRUE" if z_planes > 1 else "FALSE"}',
        f'"ZSteps", {z_planes if z_planes > 1 else 0}',
        '"ZProjection", FALSE',
        f'"XWells", {cols}',
        f'"YWells", {rows}',
    ]
    for r in range(rows):
        lines.append(f'"WellsSelection{r + 1}", {_bool_list([(r, c) in chosen for c in range(cols)])}')
    lines += ['"Sites", TRUE', f'"XSites", {x_sites}', f'"YSites", {y_sites}']
    for y in range(y_sites):
        lines.append(f'"SiteSelection{y + 1}", {_bool_list([y * x_sites + x < sites for x in range(x_sites)])}')
    lines += ['"Waves", TRUE', f'"NWavelengths", {channels}']
    lines += [f'"WaveName{c}", "{name}"' for c, name in enumerate(names, start=1)]
    lines += [f'"WaveCollect{c}", 1' for c in range(1, channels + 1)]
    lines += [f'"UniquePlateIdentifier", "{identifier}"', '"EndFile"']
    return "\r\n".join(lines) + "\r\n"


def _wave_name(channel: int) -> str:
    return WAVE_NAMES[channel - 1] if channel <= len(WAVE_NAMES) else f"W{channel}"


def _wavelength(channel: int) -> float:
    return WAVELENGTHS_NM[channel - 1] if channel <= len(WAVELENGTHS_NM) else 700.0 + 20.0 * channel


def _metaseries_xml(props: list[tuple[str, str, Any]], custom: list[tuple[str, str, Any]]) -> str:
    def line(tag: str, name: str, kind: str, value: Any) -> str:
        return f"<{tag} id={quoteattr(name)} type={quoteattr(kind)} value={quoteattr(str(value))}/>"

    body = [line("prop", n, k, v) for n, k, v in props] + [line("custom-prop", n, k, v) for n, k, v in custom]
    return (
        "<MetaData>\n"
        + line("prop", "Description", "string", "Synthetic image (openhcs_rules.demo)")
        + "\n"
        + line("prop", "MetaDataVersion", "float", 1)
        + "\n<PlaneInfo>\n"
        + "\n".join(body)
        + "\n</PlaneInfo>\n<SetInfo>\n"
        + line("prop", "number-of-planes", "int", 1)
        + "\n</SetInfo>\n</MetaData>\n"
    )


def _plane_xml(
    well: str, site: int, channel: int, z: int, shape: tuple[int, int], pixel_size_um: float, sites: int
) -> str:
    row, column = parse_well_name(well)
    x_sites, _ = _site_grid(sites)
    site_x, site_y = (site - 1) % x_sites, (site - 1) // x_sites
    x_sites_total, y_sites_total = _site_grid(sites)
    field_x, field_y = shape[1] * pixel_size_um * 0.9, shape[0] * pixel_size_um * 0.9
    stage_x = _A01_CENTRE_UM[0] + column * _WELL_PITCH_96_UM + (site_x - (x_sites_total - 1) / 2) * field_x
    stage_y = _A01_CENTRE_UM[1] + row * _WELL_PITCH_96_UM + (site_y - (y_sites_total - 1) / 2) * field_y
    name = _wave_name(channel)
    props = [
        ("plane-type", "string", "plane"),
        ("pixel-size-x", "int", shape[1]),
        ("pixel-size-y", "int", shape[0]),
        ("bits-per-pixel", "int", 16),
        ("spatial-calibration-state", "bool", "on"),
        ("spatial-calibration-x", "float", f"{pixel_size_um:g}"),
        ("spatial-calibration-y", "float", f"{pixel_size_um:g}"),
        ("spatial-calibration-units", "string", "um"),
        ("image-name", "string", name),
        ("stage-position-x", "float", f"{stage_x:.2f}"),
        ("stage-position-y", "float", f"{stage_y:.2f}"),
        ("stage-label", "string", f"{well} : Site {site}"),
        ("z-position", "float", f"{10000.0 + 2.0 * (z - 1):.2f}"),
        ("wavelength", "float", f"{_wavelength(channel):g}"),
        ("_IllumSetting_", "string", name),
    ]
    custom = [("SiteX", "float", site_x + 1), ("SiteY", "float", site_y + 1), ("Z Step", "float", z)]
    return _metaseries_xml(props, custom)


def image_path(
    plate_dir: Path, plate_name: str, well: str, site: int, channel: int, z: int, timepoint: int, z_planes: int
) -> Path:
    """Where MetaXpress puts one image of the export (``ZStep_{z}`` folders only for z-series)."""
    folder = Path(plate_dir) / f"TimePoint_{timepoint}"
    if z_planes > 1:
        folder = folder / f"ZStep_{z}"
    return folder / f"{plate_name}_{well}_s{site}_w{channel}.TIF"


def _write_tiff(path: Path, image: np.ndarray, description: str) -> None:
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp, image, software="MetaSeries", description=description, metadata=None, photometric="minisblack"
        )


def generate_imagexpress_plate(
    out_dir: Path,
    plate_name: str = "demo_plate",
    wells: list[str] | None = None,
    sites: int = 2,
    channels: int = 2,
    z_planes: int = 3,
    timepoints: int = 1,
    shape: tuple[int, int] = (512, 512),
    seed: int = 0,
    pixel_size_um: float = 0.65,
) -> dict[str, Any]:
    """Write a synthetic plate in MetaXpress export layout into ``out_dir`` (the plate folder).

    Returns ``plate_dir``, ``htd``, ``plate_name``, ``wells``, ``sites``, ``channels``, ``channel_names``,
    ``z_planes``, ``in_focus_z`` (1-based ZStep of the sharp plane), ``timepoints``, ``shape``,
    ``pixel_size_um``, ``counts`` ({well: {site: true nuclei count}} at time point 1),
    ``counts_by_timepoint`` ({t: {well: {site: count}}}) and ``treatment`` ({well: channel-2 factor}).
    """
    wells = [normalise_well_name(w) for w in (wells if wells is not None else DEFAULT_WELLS)]
    if not wells:
        raise ValueError("need at least one well")
    if len(set(wells)) != len(wells):
        raise ValueError(f"wells are repeated: {wells}")
    for label, value in (("sites", sites), ("channels", channels), ("z_planes", z_planes), ("timepoints", timepoints)):
        if value < 1:
            raise ValueError(f"{label} must be >= 1, got {value}")
    if pixel_size_um <= 0:
        raise ValueError(f"pixel_size_um must be > 0, got {pixel_size_um}")
    shape = (int(shape[0]), int(shape[1]))
    if min(shape) < 64:
        raise ValueError(f"images must be at least 64x64 pixels, got {shape}")
    plate_dir = Path(out_dir)
    plate_dir.mkdir(parents=True, exist_ok=True)
    # A stale ground truth would make a half-rewritten plate look complete.
    (plate_dir / GROUND_TRUTH_FILE).unlink(missing_ok=True)

    htd = plate_dir / f"{plate_name}.HTD"
    atomic_write_text(htd, _htd_text(plate_name, wells, sites, channels, z_planes, timepoints, seed))
    counts: dict[int, dict[str, dict[int, int]]] = {}
    for timepoint in range(1, timepoints + 1):
        for well in wells:
            for site in range(1, sites + 1):
                data = synthesize_site(well, site, timepoint, shape, seed, channels, z_planes)
                counts.setdefault(timepoint, {}).setdefault(well, {})[site] = data.count
                for channel in range(1, channels + 1):
                    for z in range(1, z_planes + 1):
                        path = image_path(plate_dir, plate_name, well, site, channel, z, timepoint, z_planes)
                        xml = _plane_xml(well, site, channel, z, shape, pixel_size_um, sites)
                        _write_tiff(path, data.images[channel - 1, z - 1], xml)

    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["well", "site", "t", "true_count"])
    for timepoint, per_well in counts.items():
        for well, per_site in per_well.items():
            for site, count in per_site.items():
                writer.writerow([well, site, timepoint, count])
    atomic_write_text(plate_dir / GROUND_TRUTH_FILE, table.getvalue())
    return {
        "plate_dir": plate_dir,
        "htd": htd,
        "plate_name": plate_name,
        "wells": wells,
        "sites": sites,
        "channels": channels,
        "channel_names": [_wave_name(c) for c in range(1, channels + 1)],
        "z_planes": z_planes,
        "in_focus_z": z_planes // 2 + 1,
        "timepoints": timepoints,
        "shape": shape,
        "pixel_size_um": pixel_size_um,
        "counts": counts[1],
        "counts_by_timepoint": counts,
        "treatment": {well: treatment_factor(well) for well in wells},
    }
