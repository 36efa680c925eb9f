"""Realistic synthetic nuclei fields with true instance labels, for accuracy benchmarks and tests.

The demo plate (:mod:`openhcs_rules.demo.synthetic`) is made for a workflow demo: nuclei of one
brightness class, clean gaps, gentle background. Real DAPI/Hoechst fields break a segmenter in other ways,
and this generator imitates those, each for a reason seen on the real annotated image the benchmark uses
(BBBC038 / DSB 2018 via StarDist's ``img2d.tif``: 125 nuclei of ~24 px in 512x512, background ~21, nucleus
peaks 55-200, so a threefold spread of brightness):

* **brightness varies threefold** between nuclei (log-normal per nucleus times a smooth field across the
  image), so one global threshold sits at the half-maximum of bright nuclei but near the top of dim ones
  (dim nuclei shrink or vanish, outlines of bright ones are placed fine);
* **crowding and clumps**: clusters of 2-6 nuclei that touch or overlap slightly (centre distance
  0.72-0.95 of the sum of radii), often with **similar brightness and no dark seam** between them after
  the optics' blur, plus **dim neighbours of bright nuclei** (a third of the clump members at 0.3-0.5 of
  their anchor's brightness);
* **textured interiors**: chromatin mottling (smoothed multiplicative noise) and 0-3 dark nucleoli per
  nucleus, which put false local maxima and dips inside one nucleus;
* **irregular outlines**: ellipses with low-order radial harmonics (kidney and lemon shapes);
* a few **small bright mitotic/apoptotic nuclei** (3x brighter, half the size; they are nuclei);
* **debris**: bright specks of 1-3 px and faint smooth out-of-focus blobs, neither of them a nucleus;
* **background**: camera offset, an additive gradient, and in some fields a **bright well-edge arc** (the
  wall of the well glowing where it crosses the field of view);
* **optics and noise**: Gaussian PSF blur, shot noise (normal approximation of Poisson) and read noise.

The true label of a pixel is the nucleus whose (pre-blur) shape contains it; where two shapes overlap the
pixel goes to the one whose centre is relatively nearer. That matches how annotators draw touching nuclei:
at the visible half-maximum boundary, split along the seam.

:func:`synthesize_field` makes one field; :func:`empty_field` one with no nuclei (gradient, edge arc,
noise, a few hot pixels) where a segmenter should find at most one object. Everything is deterministic
for a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

#: camera offset plus the background autofluorescence (grey values, as in the real image).
BACKGROUND = 20.0
#: median nucleus peak above background.
NUCLEUS_CONTRAST = 60.0
#: photons per grey value (sets the shot noise: std = sqrt(signal / GAIN) x GAIN).
GAIN = 1.0
READ_NOISE = 2.0


@dataclass
class Field:
    """One synthetic field: float32 image (y, x), int32 true labels (0 = background), its nucleus count."""

    image: np.ndarray
    labels: np.ndarray

    @property
    def count(self) -> int:
        return int(np.unique(self.labels).size - (1 if (self.labels == 0).any() else 0))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth random field with zero mean and unit standard deviation."""
    noise = ndi.gaussian_filter(rng.normal(size=shape), sigma, mode="wrap")
    return (noise - noise.mean()) / max(float(noise.std()), 1e-9)


def _background(rng: np.random.Generator, shape: tuple[int, int], gradient: float) -> np.ndarray:
    """Offset plus a random linear + quadratic gradient whose range is ``gradient`` x NUCLEUS_CONTRAST."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    yy /= shape[0]
    xx /= shape[1]
    angle = rng.uniform(0, 2 * math.pi)
    ramp = math.cos(angle) * xx + math.sin(angle) * yy
    bowl = (yy - rng.uniform(0.2, 0.8)) ** 2 + (xx - rng.uniform(0.2, 0.8)) ** 2
    surface = ramp + rng.uniform(-1.0, 1.0) * bowl
    surface = (surface - surface.min()) / max(float(np.ptp(surface)), 1e-9)
    return BACKGROUND + gradient * NUCLEUS_CONTRAST * surface


def edge_arc(rng: np.random.Generator, shape: tuple[int, int], strength: float) -> np.ndarray:
    """A bright well-edge arc across one corner of the field (additive, grey values).

    The well wall is a circle whose centre lies outside the field; where it crosses the field it glows as a
    band some 2-6% of the field wide with a soft inner flank, and beyond it (outside the well) the plastic
    stays brighter than the well floor. Peak ``strength`` x NUCLEUS_CONTRAST above background.
    """
    height, width = shape
    side = float(min(shape))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    corner = rng.integers(4)
    cy = (-0.9 if corner in (0, 1) else 1.9) * height + rng.uniform(-0.2, 0.2) * height
    cx = (-0.9 if corner in (0, 2) else 1.9) * width + rng.uniform(-0.2, 0.2) * width
    # radius so that the arc cuts through the field (distance to the centre of the field minus a bit)
    radius = math.hypot(cy - height / 2, cx - width / 2) - rng.uniform(0.15, 0.35) * side
    distance = np.hypot(yy - cy, xx - cx) - radius  # < 0 outside the well (towards the centre of the circle)
    band = rng.uniform(0.02, 0.06) * side
    profile = np.exp(-0.5 * (distance / band) ** 2) + 0.35 / (1.0 + np.exp(distance / (0.5 * band)))
    ripple = 1.0 + 0.15 * _smooth_field(rng, shape, band)
    return strength * NUCLEUS_CONTRAST * profile * ripple


def _shape_mask(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, a: float, b: float, theta: float, harmonics: np.ndarray
) -> np.ndarray:
    """Normalised radius rho (1 on the outline) of an ellipse with radial harmonics, on a local grid."""
    dy, dx = yy - cy, xx - cx
    cos, sin = math.cos(theta), math.sin(theta)
    u = (dx * cos + dy * sin) / a
    v = (-dx * sin + dy * cos) / b
    rho = np.hypot(u, v)
    phi = np.arctan2(v, u)
    wobble = 1.0 + sum(amp * np.cos((k + 2) * phi + phase) for k, (amp, phase) in enumerate(harmonics))
    return rho / wobble


def _place(
    rng: np.random.Generator, shape: tuple[int, int], count: int, diameter: float, clump_fraction: float
) -> list[dict]:
    """Nuclei (centre, axes, orientation, brightness, harmonics): single or in touching clumps.

    Nuclei of different clumps keep a gap of >= 2 px; members of one clump touch or overlap slightly
    (centre distance 0.72-0.95 of the sum of their mean radii, never closer than 0.7 x the sum of their
    minor semi-axes). Centres may lie up to 0.3 radius outside the image (nuclei cut by the border).
    """
    height, width = shape
    nuclei: list[dict] = []
    centres: list[tuple[float, float]] = []
    reach: list[float] = []
    minor: list[float] = []
    groups: list[int] = []

    def new(y: float, x: float, brightness: float, size: float) -> dict:
        ratio = rng.uniform(0.55, 1.0)
        r = size / 2.0
        return {
            "y": y,
            "x": x,
            "a": r / math.sqrt(ratio),
            "b": r * math.sqrt(ratio),
            "theta": rng.uniform(0, math.pi),
            "brightness": brightness,
            "harmonics": np.column_stack([rng.uniform(0, 0.06, 2), rng.uniform(0, 2 * math.pi, 2)]),
        }

    def fits(n: dict, group: int) -> bool:
        if not (-0.3 * n["a"] <= n["y"] < height + 0.3 * n["a"] and -0.3 * n["a"] <= n["x"] < width + 0.3 * n["a"]):
            return False
        if not centres:
            return True
        c = np.asarray(centres)
        d = np.hypot(c[:, 0] - n["y"], c[:, 1] - n["x"])
        same = np.asarray(groups) == group
        apart = (np.asarray(reach) + n["a"]) * 1.02 + 2.0
        if np.any(~same & (d < apart)):
            return False
        return not np.any(same & (d < 0.7 * (np.asarray(minor) + n["b"])))

    def add(n: dict, group: int) -> None:
        nuclei.append(n)
        centres.append((n["y"], n["x"]))
        reach.append(n["a"])
        minor.append(n["b"])
        groups.append(group)

    attempts = 0
    group = 0
    while len(nuclei) < count and attempts < 200 * count:
        attempts += 1
        size = float(np.clip(rng.lognormal(math.log(diameter), 0.22), 0.5 * diameter, 1.7 * diameter))
        brightness = float(np.clip(rng.lognormal(0.0, 0.3), 0.4, 3.0))
        if rng.random() < 0.04:  # small bright mitotic / apoptotic nucleus
            size *= 0.55
            brightness *= 3.0
        group += 1
        first = new(rng.uniform(0, height), rng.uniform(0, width), brightness, size)
        if not fits(first, group):
            continue
        add(first, group)
        members = [first]
        if rng.random() < clump_fraction:
            wanted = int(rng.choice([2, 3, 4, 6], p=[0.5, 0.25, 0.15, 0.1]))
            for _ in range(8 * wanted):
                if len(members) >= wanted or len(nuclei) >= count:
                    break
                anchor = members[int(rng.integers(len(members)))]
                if rng.random() < 0.33:
                    b_new = anchor["brightness"] * rng.uniform(0.3, 0.5)  # dim neighbour of a bright nucleus
                else:
                    b_new = anchor["brightness"] * rng.uniform(0.8, 1.25)  # similar brightness: no seam
                b_new = max(b_new, 0.3)
                s_new = float(np.clip(rng.lognormal(math.log(diameter), 0.18), 0.6 * diameter, 1.5 * diameter))
                angle = rng.uniform(0, 2 * math.pi)
                dist = rng.uniform(0.72, 0.95) * (0.5 * (anchor["a"] + anchor["b"]) + s_new / 2.0)
                candidate = new(
                    anchor["y"] + dist * math.sin(angle), anchor["x"] + dist * math.cos(angle), b_new, s_new
                )
                if fits(candidate, group):
                    add(candidate, group)
                    members.append(candidate)
    return nuclei


def synthesize_field(
    seed: int,
    shape: tuple[int, int] = (512, 512),
    count: int | None = None,
    diameter: float | None = None,
    clump_fraction: float = 0.45,
    gradient: float | None = None,
    arc: bool | None = None,
    psf_sigma: float = 1.5,
    scale: float = 1.0,
    haze: float = 0.0,
) -> Field:
    """One realistic nuclei field (see the module docstring), deterministic for ``seed``.

    Defaults are drawn per seed: 80-140 nuclei per 512x512 (scaled with the area), typical diameter 18-28 px
    (scaled with the side), a gradient of 0.1-0.6 x the nucleus contrast, an edge arc in 30% of fields.

    ``scale`` shrinks the nuclei (a lower magnification or a binned camera): the drawn diameter is multiplied
    by it and the drawn count divided by its square (same crowding), while the optics' blur and the noise stay
    as they are in pixels, so small nuclei are blurred relatively more (``scale=0.4``: nuclei 7-11 px wide in
    512x512, as with ``scale=0.8`` in 256x256, since the drawn diameter also scales with the field's side).
    ``haze`` adds faint cytoplasm around every nucleus: a soft halo out to ~1.9 radii at ``haze`` x the
    nucleus's brightness (real images show 0.1-0.3). The defaults (1.0, 0.0) reproduce the fields exactly.
    """
    rng = np.random.default_rng([seed, 7])
    side = min(shape) / 512.0
    area = shape[0] * shape[1] / 512.0**2
    count = int(rng.integers(80, 141) * area / scale**2) if count is None else count
    diameter = float(rng.uniform(18, 28) * side * scale) if diameter is None else diameter
    gradient = float(rng.uniform(0.1, 0.6)) if gradient is None else gradient
    arc = bool(rng.random() < 0.3) if arc is None else arc

    nuclei = _place(rng, shape, count, diameter, clump_fraction)
    height, width = shape
    signal = np.zeros(shape, dtype=np.float64)
    labels = np.zeros(shape, dtype=np.int32)
    best_rho = np.full(shape, np.inf)
    spatial = np.exp(0.25 * _smooth_field(rng, shape, 0.25 * min(shape)))  # smooth brightness field
    texture = 1.0 + 0.18 * _smooth_field(rng, shape, max(1.0, diameter / 12.0))
    for index, n in enumerate(nuclei, start=1):
        reach = int(math.ceil(n["a"] * (2.4 if haze > 0 else 1.25) + 4))
        y0, y1 = max(0, int(n["y"]) - reach), min(height, int(n["y"]) + reach + 1)
        x0, x1 = max(0, int(n["x"]) - reach), min(width, int(n["x"]) + reach + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        rho = _shape_mask(yy, xx, n["y"], n["x"], n["a"], n["b"], n["theta"], n["harmonics"])
        inside = rho <= 1.0
        level = n["brightness"] * spatial[int(np.clip(n["y"], 0, height - 1)), int(np.clip(n["x"], 0, width - 1))]
        # dome profile (thicker in the middle), soft 1-px edge
        body = (
            level
            * (0.75 + 0.25 * np.sqrt(np.clip(1.0 - rho**2, 0.0, 1.0)))
            / (1.0 + np.exp((rho - 1.0) * n["b"] / 0.6))
        )
        for _ in range(int(rng.integers(0, 4))):  # dark nucleoli
            ny = n["y"] + rng.uniform(-0.5, 0.5) * n["b"]
            nx = n["x"] + rng.uniform(-0.5, 0.5) * n["b"]
            nr = rng.uniform(0.12, 0.22) * n["b"]
            body *= 1.0 - 0.35 * np.exp(-0.5 * ((yy - ny) ** 2 + (xx - nx) ** 2) / nr**2)
        window = (slice(y0, y1), slice(x0, x1))
        if haze > 0:  # faint cytoplasm: a soft halo out to ~1.9 radii (no random draws: defaults unchanged)
            halo = haze * level / (1.0 + np.exp((rho - 1.9) * n["b"] / 1.5))
            signal[window] = np.maximum(signal[window], halo)
        signal[window] = np.maximum(signal[window], body * texture[window])
        closer = inside & (rho < best_rho[window])
        labels[window][closer] = index
        best_rho[window][closer] = rho[closer]
    image = _background(rng, shape, gradient) + NUCLEUS_CONTRAST * signal
    image += _debris(rng, shape, diameter)
    if arc:
        image += edge_arc(rng, shape, rng.uniform(0.8, 2.0))
    image = ndi.gaussian_filter(image, psf_sigma)
    return Field(_noisy(rng, image), _relabel(labels))


def _debris(rng: np.random.Generator, shape: tuple[int, int], diameter: float) -> np.ndarray:
    """Hot pixels / bright specks of 1-3 px, and faint smooth out-of-focus blobs (not nuclei)."""
    out = np.zeros(shape, dtype=np.float64)
    area = shape[0] * shape[1] / 512.0**2
    for _ in range(int(rng.integers(3, 9) * area)):
        y, x = int(rng.integers(shape[0])), int(rng.integers(shape[1]))
        size = int(rng.integers(1, 3))
        out[y : y + size, x : x + size] += rng.uniform(1.0, 4.0) * NUCLEUS_CONTRAST
    blobs = np.zeros(shape, dtype=np.float64)
    for _ in range(int(rng.integers(1, 4) * area)):
        blobs[int(rng.integers(shape[0])), int(rng.integers(shape[1]))] = 1.0
    sigma = 1.2 * diameter
    blobs = ndi.gaussian_filter(blobs, sigma) * (2 * math.pi * sigma**2)
    return out + rng.uniform(0.1, 0.2) * NUCLEUS_CONTRAST * blobs


def _noisy(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    photons = np.clip(image, 0.0, None) * GAIN
    noisy = (photons + np.sqrt(photons) * rng.normal(size=image.shape)) / GAIN
    noisy += rng.normal(0.0, READ_NOISE, image.shape)
    return np.clip(noisy, 0.0, None).astype(np.float32)


def _relabel(labels: np.ndarray) -> np.ndarray:
    values = np.unique(labels)
    values = values[values > 0]
    lookup = np.zeros(int(labels.max()) + 1, dtype=np.int32)
    lookup[values] = np.arange(1, values.size + 1, dtype=np.int32)
    return lookup[labels]


def empty_field(seed: int, shape: tuple[int, int] = (512, 512), arc_strength: float | None = None) -> Field:
    """A field with no nuclei: background, a gradient, a bright well-edge arc, hot pixels, noise."""
    rng = np.random.default_rng([seed, 11])
    image = _background(rng, shape, float(rng.uniform(0.3, 1.0)))
    strength = float(rng.uniform(1.0, 3.0)) if arc_strength is None else arc_strength
    image += edge_arc(rng, shape, strength)
    for _ in range(int(rng.integers(2, 6))):
        y, x = int(rng.integers(shape[0])), int(rng.integers(shape[1]))
        image[y, x] += rng.uniform(1.0, 4.0) * NUCLEUS_CONTRAST
    image = ndi.gaussian_filter(image, 1.5)
    return Field(_noisy(rng, image), np.zeros(shape, dtype=np.int32))
