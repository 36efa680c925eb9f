"""Image quality control: per-image focus, saturation and background, and the plate's flags with their reasons.

Two stages, because a flag needs the plate's distribution and a well job sees one well:

1. **Per image, in the well job** (:func:`measure_images`, on the planes *as read*, before flat-field or any
   other step: QC judges the acquisition, not the processing). One entry per site, channel and timepoint
   goes into the well's ``summary.json`` under ``"images"``. For a z-stack every plane is scored for focus and
   the entry describes the sharpest one (``z``, the plane :func:`~openhcs_rules.functions.projection.project_z`
   ``best_focus`` picks by the same ranking): that is the plane the pipeline measures, and scoring the other
   planes would flag every stack's deliberately defocused planes. Saturation is the largest over the planes
   (a maximum projection carries any plane's clipped pixels).
2. **Per plate, in the assembly** (:func:`image_rows`, then :func:`flag_images`): CellProfiler's Image table
   layout, one row per site and timepoint with one column per channel, and a flag with its reasons.

Measures (all per image, comparable between the images of one plate):

- ``FocusScore``: variance of the Laplacian of the image smoothed with a Gaussian of sigma 1 px, divided by
  the variance of the smoothed image: the share of the image's contrast that is fine detail. Blur removes
  fine detail first, so the score falls with defocus. Dividing by the image's own variance (rather than the
  squared mean, as the projection's ranking within one stack does) makes it independent of brightness,
  offset and of how many objects there are: on the demo plate, fields of 11 and 70 nuclei score within 10%
  while one z step of defocus divides the score by 4. An empty field (noise only) scores high, so it is
  flagged empty, not out of focus. Planes of 1024 px or more are scored on 2x2 block means (every image of
  a plate has the same size, so the rule is the same for all of them).
- ``SaturationFraction``: the fraction of pixels at the camera's full scale. The full scale is found from the
  data, because a 12-bit camera writes 16-bit files that saturate at 4095, not 65535: for integer images it
  is the smallest of 2^8-1, 2^10-1, 2^12-1, 2^14-1, 2^16-1 (capped at the type's maximum) that is at least
  the stack's largest value. An unsaturated 12-bit image (max < 4095) then has no pixel at 4095, and a
  clipped one has a pile of them; a 16-bit camera image whose largest value happens to be 4095 holds one or
  a few such pixels, far below the flag's threshold. Float images have no full scale: their largest value
  is used, so a pile-up there is clipping too. ``SaturationLevel`` (the full scale used) is kept.
- ``Background``: the 5th percentile of the image's pixels (of a regular subsample of at most ~1 M pixels):
  the floor under the objects, which holds for sparse and confluent fields alike (a median would be the
  objects' level in a confluent field).
- ``Image_Count_Nuclei``: objects the pipeline segmented in the site at that timepoint.

Flags (:class:`QCThresholds`, each decided per channel against the plate's images of that channel; a
distribution needs at least ``min_images`` values, else that check is skipped rather than guessed):

- **out of focus**: ``FocusScore`` below half the plate's median *and* more than 3 robust standard deviations
  (1.4826 x MAD) below it in log scale. Both must hold: on a plate of uniform focus the MAD is tiny and the
  first condition keeps ordinary spread unflagged; on a plate of widely varying focus the second does.
- **saturated**: ``SaturationFraction`` above 1% of the pixels.
- **empty field**: no object while the plate's median count per image is at least 5.
- **bright background**: ``Background`` at least 25% above the plate's median *and* more than 5 robust standard
  deviations above it (debris, a fluorescent medium, a light leak).

Column names follow CellProfiler: ``Image_Quality_FocusScore_<channel>``,
``Image_Quality_SaturationFraction_<channel>``, ``Image_Intensity_Background_<channel>``, ``Image_Count_Nuclei``,
with ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``, ``Metadata_Timepoint``; the flag is
``Metadata_QCFlag`` (bool) with ``Metadata_QCFlagReason`` (text, empty when not flagged).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from openhcs_rules.pipeline.executor import PlaneKey
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules.plate.naming import parse_well_name

#: the summary.json key of a well's per-image measurements
SUMMARY_KEY = "images"
#: Gaussian smoothing before the Laplacian: keeps single-pixel camera noise from counting as detail
FOCUS_SMOOTHING_SIGMA = 1.0
#: planes with both sides at least this are focus-scored on 2x2 block means (same ranking, 1/4 the cost)
FOCUS_BLOCK_MEAN_FROM_PX = 1024
#: the camera bit depths a full scale is looked for at (12-bit cameras in 16-bit files are the usual case)
FULL_SCALE_BITS = (8, 10, 12, 14, 16)
#: the percentile of an image's pixels that is its background level
BACKGROUND_PERCENTILE = 5.0
#: the background percentile is taken on a regular subsample of at most about this many pixels
BACKGROUND_MAX_PIXELS = 1 << 20
#: robust standard deviation = MAD x this (for normally distributed values)
MAD_TO_SD = 1.4826

#: CellProfiler's Image-table columns
PLATE, WELL, SITE, TIMEPOINT = "Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Timepoint"
COUNT = "Image_Count_Nuclei"
FOCUS, SATURATION, BACKGROUND = (
    "Image_Quality_FocusScore_",
    "Image_Quality_SaturationFraction_",
    "Image_Intensity_Background_",
)
FLAG, REASON = "Metadata_QCFlag", "Metadata_QCFlagReason"
#: per-image summary field -> its Image-table column prefix (the channel's name follows)
SUMMARY_COLUMNS = {"FocusScore": FOCUS, "SaturationFraction": SATURATION, "Background": BACKGROUND}


# -- per image (the well job) ------------------------------------------------------------------------------------
def _block_mean_2(plane: np.ndarray) -> np.ndarray:
    """2x2 block means (float32) of the plane cropped to even sides.

    The same values as ``reshape(y/2, 2, x/2, 2).mean(axis=(1, 3), dtype=float32)``, bit for bit, summed from
    strided views instead (functions._resample.block_mean): numpy's reduction over two non-adjacent axes took
    32 of the focus score's 72 ms per 2048^2 plane, 7 ms this way, and a well job scores every raw plane.
    """
    from openhcs_rules.functions._resample import block_mean

    y, x = plane.shape[0] // 2 * 2, plane.shape[1] // 2 * 2
    return np.asarray(block_mean(plane[:y, :x], 2))


def focus_score(plane: np.ndarray) -> float:
    """Variance of the Laplacian of the smoothed plane over the smoothed plane's variance (see the module).

    0 for a flat plane (nothing to be sharp).
    """
    import scipy.ndimage as ndi

    data = np.asarray(plane, dtype=np.float32)
    if min(data.shape) >= FOCUS_BLOCK_MEAN_FROM_PX:
        data = _block_mean_2(data)
    smooth = ndi.gaussian_filter(data, FOCUS_SMOOTHING_SIGMA)
    variance = float(smooth.var(dtype=np.float64))
    if variance <= 0.0:
        return 0.0
    return float(ndi.laplace(smooth).var(dtype=np.float64)) / variance


def saturation_level(maximum: float, dtype: Any) -> float:
    """The camera's full scale for images of ``dtype`` whose largest value is ``maximum`` (see the module)."""
    kind = np.dtype(dtype)
    if kind.kind not in "ui":
        return float(maximum)
    top = int(np.iinfo(kind).max)
    for bits in FULL_SCALE_BITS:
        level = 2**bits - 1
        if level >= top:
            break
        if maximum <= level:
            return float(level)
    return float(top)


def saturation_fraction(plane: np.ndarray, level: float) -> float:
    """The fraction of the plane's pixels at or above ``level``; 0 for a flat plane (nothing clipped there)."""
    data = np.asarray(plane)
    if data.size == 0 or data.min() == data.max():
        return 0.0
    return float(np.count_nonzero(data >= level)) / data.size


def background_level(plane: np.ndarray) -> float:
    """The :data:`BACKGROUND_PERCENTILE` percentile of the plane (on a regular subsample of large planes)."""
    data = np.asarray(plane)
    step = max(1, math.ceil(math.sqrt(data.size / BACKGROUND_MAX_PIXELS)))
    return float(np.percentile(data[::step, ::step], BACKGROUND_PERCENTILE))


def measure_images(planes: Mapping[PlaneKey, Any], channel_names: Mapping[int, str]) -> list[dict[str, Any]]:
    """One entry per (site, channel, timepoint) of a well's planes as read, keyed ``(site, channel, z, t)``.

    Each entry: ``site``, ``t``, ``channel`` (index), ``channel_name``, ``z`` (the sharpest plane, which the
    focus score and background describe), ``FocusScore``, ``SaturationFraction`` (the largest over the
    stack's planes), ``SaturationLevel``, ``Background``, ``MaxIntensity``. Plain numbers: it goes into JSON.
    """
    stacks: dict[tuple[int, int, int], list[tuple[int, np.ndarray]]] = {}
    for key, plane in planes.items():
        site, channel, z, t = (int(v) for v in key)
        stacks.setdefault((site, channel, t), []).append((z, np.asarray(plane)))
    entries = []
    for (site, channel, t), stack in sorted(stacks.items()):
        stack.sort(key=lambda item: item[0])
        scores = [focus_score(plane) for _, plane in stack]
        best = int(np.argmax(scores))
        z, sharpest = stack[best]
        maximum = max(float(plane.max()) for _, plane in stack)
        level = saturation_level(maximum, sharpest.dtype)
        entries.append(
            {
                "site": site,
                "t": t,
                "channel": channel,
                "channel_name": channel_names.get(channel, f"w{channel}"),
                "z": z,
                "FocusScore": scores[best],
                "SaturationFraction": max(saturation_fraction(plane, level) for _, plane in stack),
                "SaturationLevel": level,
                "Background": background_level(sharpest),
                "MaxIntensity": maximum,
            }
        )
    return entries


# -- per plate (the assembly) -----------------------------------------------------------------------------------
def _counts_per_site(summary: Mapping[str, Any], plate: PlateStructure) -> dict[tuple[int, int], int | None]:
    """(site, t) -> objects found, for every site imaged at t, from a well's summary (any version of it)."""
    if "timepoints" in summary:
        return {
            (int(site), int(entry["t"])): int(n)
            for entry in summary["timepoints"]
            for site, n in entry.get("objects_per_site", {}).items()
        }
    # summaries before per-timepoint figures: their per-site counts add timepoints together
    single = len(plate.timepoints) <= 1
    t = plate.timepoints[0] if plate.timepoints else 1
    return {(int(site), t): (int(n) if single else None) for site, n in summary.get("objects_per_site", {}).items()}


def image_rows(plate: PlateStructure, summaries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The plate's Image table: one row per well, site and timepoint imaged, wells in plate order, then t, site.

    Columns: the ``Metadata_*`` identifiers, ``Image_Count_Nuclei`` and, when any well recorded per-image
    measurements, the three quality columns of every channel. Wells written before those measurements existed
    (no ``"images"`` in their summary) give rows with the count and empty (None) quality columns.
    """
    names = [plate.channel(i).name for i in plate.channel_indices]
    measured = any(SUMMARY_KEY in summary for summary in summaries.values())
    rows = []
    for well in sorted(summaries, key=parse_well_name):
        summary = summaries[well]
        counts = _counts_per_site(summary, plate)
        images: dict[tuple[int, int], dict[str, Any]] = {}
        for entry in summary.get(SUMMARY_KEY, []):
            site_t = (int(entry["site"]), int(entry["t"]))
            images.setdefault(site_t, {})[str(entry["channel_name"])] = entry
            counts.setdefault(site_t, None)
        for site, t in sorted(counts, key=lambda st: (st[1], st[0])):
            row: dict[str, Any] = {PLATE: plate.name, WELL: well, SITE: site, TIMEPOINT: t, COUNT: counts[(site, t)]}
            if measured:
                channels = images.get((site, t), {})
                for name in names:
                    entry = channels.get(name, {})
                    for field_name, prefix in SUMMARY_COLUMNS.items():
                        row[prefix + name] = entry.get(field_name)
            rows.append(row)
    return rows


@dataclass(frozen=True)
class QCThresholds:
    """When an image is flagged (see the module's text for why each is what it is)."""

    #: out of focus: below this fraction of the plate's median focus score ...
    focus_fraction_of_median: float = 0.5
    #: ... and this many robust standard deviations below the median of log10(focus score)
    focus_robust_sd: float = 3.0
    #: saturated: more than this fraction of the pixels at full scale
    saturated_fraction: float = 0.01
    #: empty field: no object while the plate's median objects per image is at least this
    empty_median_count: float = 5.0
    #: bright background: this fraction above the plate's median background ...
    background_fraction_above_median: float = 0.25
    #: ... and this many robust standard deviations above it
    background_robust_sd: float = 5.0
    #: fewer values than this on the plate (per channel) give no distribution: that check is skipped
    min_images: int = 4


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _median_and_sd(values: Iterable[float]) -> tuple[float, float]:
    array = np.asarray(list(values), dtype=np.float64)
    median = float(np.median(array))
    return median, MAD_TO_SD * float(np.median(np.abs(array - median)))


def _channels(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({key[len(FOCUS) :] for row in rows for key in row if key.startswith(FOCUS)})


def _focus_limits(rows: Sequence[Mapping[str, Any]], channel: str, limits: QCThresholds) -> tuple[float, float] | None:
    """(limit, median) of the channel's focus score, or None with too few scores to judge."""
    scores = [v for row in rows if (v := _number(row.get(FOCUS + channel))) is not None and v > 0]
    if len(scores) < limits.min_images:
        return None
    median = float(np.median(scores))
    log_median, log_sd = _median_and_sd(math.log10(v) for v in scores)
    limit = min(limits.focus_fraction_of_median * median, 10 ** (log_median - limits.focus_robust_sd * log_sd))
    return limit, median


def _background_limits(
    rows: Sequence[Mapping[str, Any]], channel: str, limits: QCThresholds
) -> tuple[float, float] | None:
    values = [v for row in rows if (v := _number(row.get(BACKGROUND + channel))) is not None]
    if len(values) < limits.min_images:
        return None
    median, sd = _median_and_sd(values)
    excess = max(limits.background_fraction_above_median * abs(median), limits.background_robust_sd * sd)
    return median + excess, median


def _g(value: float) -> str:
    return f"{value:.3g}"


def flag_images(rows: Sequence[Mapping[str, Any]], thresholds: QCThresholds | None = None) -> list[dict[str, Any]]:
    """Copies of the Image-table rows with ``Metadata_QCFlag`` (bool) and ``Metadata_QCFlagReason`` (text).

    Each reason names the check, the channel and the numbers that decided it, e.g. ``out of focus: DAPI
    (focus score 0.0021 < 0.0055; plate median 0.011)``; several reasons are joined with ``"; "``. Rows without
    quality columns (wells of earlier versions) can still be flagged empty.
    """
    limits = thresholds or QCThresholds()
    channels = _channels(rows)
    focus = {c: _focus_limits(rows, c, limits) for c in channels}
    background = {c: _background_limits(rows, c, limits) for c in channels}
    counts = [v for row in rows if (v := _number(row.get(COUNT))) is not None]
    median_count = float(np.median(counts)) if len(counts) >= limits.min_images else None
    flagged = []
    for row in rows:
        reasons = []
        count = _number(row.get(COUNT))
        if count == 0 and median_count is not None and median_count >= limits.empty_median_count:
            reasons.append(f"empty field: no nuclei (plate median {_g(median_count)} per image)")
        for channel in channels:
            score = _number(row.get(FOCUS + channel))
            found = focus[channel]
            if score is not None and found is not None and score < found[0]:
                reasons.append(
                    f"out of focus: {channel} (focus score {_g(score)} < {_g(found[0])}; plate median {_g(found[1])})"
                )
            fraction = _number(row.get(SATURATION + channel))
            if fraction is not None and fraction > limits.saturated_fraction:
                reasons.append(
                    f"saturated: {channel} ({100 * fraction:.2g}% of pixels at full scale > "
                    f"{100 * limits.saturated_fraction:.2g}%)"
                )
            level = _number(row.get(BACKGROUND + channel))
            found = background[channel]
            if level is not None and found is not None and level > found[0]:
                reasons.append(
                    f"bright background: {channel} (background {_g(level)} > {_g(found[0])}; "
                    f"plate median {_g(found[1])})"
                )
        flagged.append({**row, FLAG: bool(reasons), REASON: "; ".join(reasons)})
    return flagged


def flagged_wells(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Well -> the reasons of its flagged images (``s<site> t<t>: <reason>``), for lists and the plate montage."""
    wells: dict[str, list[str]] = {}
    for row in rows:
        if row.get(FLAG):
            wells.setdefault(str(row[WELL]), []).append(f"s{row[SITE]} t{row[TIMEPOINT]}: {row[REASON]}")
    return wells
