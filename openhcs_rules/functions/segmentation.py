"""Nuclei segmentation in the style of CellProfiler's IdentifyPrimaryObjects.

Steps per plane, and why:

1. **Light Gaussian smoothing** (sigma 1 px): shot noise otherwise breaks the foreground into speckle at
   the threshold.
2. **Detection threshold**, robust to a threefold spread of nucleus brightness: Otsu's two-class threshold
   from a histogram computed with ``xp`` (so it runs on the GPU too) is only a first split. The background
   level is the median of the pixels below it; the noise is the larger of their 1.4826 x MAD and the
   upper half-width of the histogram's background peak (background subtraction clips half the background
   to 0, which halves the lower side's spread but not the upper tail's; see ``_background_and_noise``);
   pixels are detected above ``max(background + 4 noise sigmas, background + half of Otsu's contrast)``
   (never above Otsu's own level, unless Otsu's level lies within 4 noise sigmas of the background: then
   it split the noise of an empty field and background + 4 sigmas applies), times ``threshold_scale``
   (CellProfiler's "correction factor"); or a fixed value. Otsu alone
   sits near the top of dim nuclei and drops or shrinks them (real DSB 2018 image: 9% of the nuclear area
   lost); half of Otsu's contrast keeps the dim cytoplasmic haze out. A component is kept only if its
   peak stands >= 8 noise sigmas above the background and >= 0.2 x the contrast of the typical (area-
   weighted median) component: nuclei of one field vary 3-5x, residual background bumps are fainter. A
   plane whose two Otsu classes are not separated by more than three background standard deviations
   holds no objects (an empty well: Otsu would otherwise split pure noise in two). Where nuclei vary
   several-fold, Otsu splits the bright ones from the rest and the pixels below it hold the dim nuclei too:
   background and noise are then read from the histogram's background peak alone (``_background_and_noise``;
   on crowded real fields the mixture's MAD had put the detection floor above the dim nuclei).
3. **Fill holes** (dim nucleoli) and **drop specks** smaller than 10 px (hot pixels, debris).
4. **Typical diameter** when not given: twice the area-weighted median of each foreground component's
   largest inscribed radius (maximum of the distance transform). Unlike the equivalent diameter of
   components, it is not inflated by clusters: a clump of touching nuclei is still one nucleus thick.
   For elongated nuclei it is the minor axis. Large images are first measured on a 2-4x block-averaged
   mask (exact enough for nuclei over ~12 px, and 10x cheaper).
5. **Working resolution**: when nuclei are wider than ~24 px the declumping below runs on a
   block-averaged copy in which they are 12-24 px wide (a 2048x2048 image at 40x is processed at
   ~400x400); the final boundaries are then redrawn at full resolution by a second watershed seeded
   with the working labels. Declumping needs the nucleus scale, not the pixel scale.
5b. **Drop bright bands** (a well's edge glowing where it crosses the field): the watershed below would cut
   such a band into nucleus-sized pieces (4-8 "nuclei" in a field without any). Before the split, each
   component of at least 4 typical nucleus areas that touches the field's edge (a well wall is a circle wider
   than the field, so it enters and leaves across the edge) is read through the Hessian of the image:
   it is a band when its core (pixels at least half its inscribed radius deep) is ridge-like almost
   everywhere (>= 80% of the pixels more than twice as curved across as along, at sigma = half its
   inscribed radius) **and** none of its seeds sits on a blob (at every seed, at the seeds' scale, the
   weaker Hessian eigenvalue < 0.4 x the stronger: a round nucleus gives ~1, even in a clump; a band's
   crest ~0). Measured on 44 synthetic well-edge arcs vs 145 clumps of >= 3 nucleus areas (the real
   tuning image and 16 synthetic fields): the highest seed ratio is 0.11-0.33 on arcs and 0.43-0.96 on
   clumps; the ridge fraction alone overlaps (clumps up to 1.0) and only guards the seed test. The
   Hessian is not read within 3 sigma of the field's edge (it would see the reflected image: a band
   leaving the field obliquely reflects into a V whose apex looks like a blob). A band that carries
   nuclei on it has blob-like seeds and is kept whole. Dropped bands are logged (``logging``, INFO).
   Runs on the host, on crops of the few large components; images without any pay one labelling.
6. **Split touching nuclei**: seeds are local maxima (at least ~0.3 diameter apart) of the
   scale-normalised Laplacian-of-Gaussian response at sigma = radius/2, which peaks at the centre of
   every blob of about nucleus size, even where two nuclei touch without any waist; a seeded watershed
   on that response splits the mask. LoG over-splits large or elongated nuclei, so two touching pieces
   are merged back when there is **no evidence of two objects**: the neck between them is as wide as
   the thinner piece (no waist; ratio >= 0.9), the LoG response does not dip between them (saddle >
   0.6 x the lower peak), and the smoothed image has no dark seam (dip < 15% of the object contrast).
   These constants were chosen on synthetic plates with known truth (over-split pieces: neck ratio
   >= 0.95 in 95% of cases; touching pairs: median 0.78) and checked on real 40x DAPI images. A **size
   prior** overrides them: two pieces that are each at least as large as a typical nucleus (pi r^2 with r
   the typical inscribed radius) are two nuclei, whatever the seam; touching nuclei of similar brightness
   often show no waist, valley or seam at all (on the real DSB 2018 image these merges held a fifth of
   the nuclei).
7. **Outlines at a fraction of each object's own peak**: each object keeps the pixels brighter than
   background + f x (its own peak - background), whatever the brightness (a global threshold draws bright
   nuclei too large and dim ones too small). f is 0.5 (full width at half maximum) for nuclei up to 10 px
   wide and falls linearly to 0.35 at 20 px and wider: large nuclei's edges ramp down over several pixels and
   annotators draw them where the ramp ends. Measured on the 264 tuning images of the real DSB 2018 set, mean
   IoU per nucleus-size group, f = 0.5 / 0.42 / 0.35: < 10 px 0.684 / 0.696 / 0.673, 14-20 px 0.670 / 0.715 /
   0.722, > 30 px 0.733 / 0.778 / 0.795; on small nuclei (the tuning image block-averaged 3x, small synthetic
   fields) 0.5 stays the best. The peak is read after a
   grey opening of width diameter / 4, so a bright chromatin spot does not stand for the whole nucleus
   (objects narrower than that window are read on the sharp copy). Holes inside an object are kept.
   **Halo**: some fields show nuclei whose edge falls off slowly, in a wide halo (thick, dome-shaped nuclei,
   defocus), and annotators draw those at the halo's foot: on 20 of the 264 DSB 2018 tuning images the median
   annotated edge lies at 11-27% of each nucleus' peak (on half of the images at 38-48%), and at the
   half-maximum rule's outline half of the nuclei fell below IoU 0.5 (F1 0.3-0.6 although the count was
   right). The field's edge ramp is read from all its objects at once (:func:`_halo_weight`): the area above
   15% of each object's peak over the area above 50% (1.1-1.3 for a sharp edge, 1.6-1.9 in a halo), and the
   ramp's width in pixels, which tells a halo from the optics' blur of a small, sharp nucleus (whose area ratio
   is high too: on small nuclei the first test alone took the small synthetic fields' F1 from 0.64 to 0.61).
   Where both are high (ratio 1.45-1.75 and width 1.6-2.0 px, ramping in) the fraction moves to 0.25, for fields
   of nuclei wider than 10 px. Chosen on the tuning half: one fraction for every field gives mean F1 0.847 at
   best (0.35), the best fraction per image 0.874, this rule 0.859; held-out half, looked at once the rule was
   fixed: mean F1 0.844 -> 0.853, pooled count -4.0% -> -3.9%.
8. **Size filter**: objects smaller than ``min_area`` (default: 1/16 of the typical nucleus area, and never
   at most ``POINT_AREA`` = 20 px, the half-maximum area of a blurred hot pixel or speck) or larger
   than ``max_area`` (default: no limit, so an unsplit clump is still counted once rather than lost) are
   removed; labels are renumbered 1..k per plane. (1/8 dropped condensed, mitotic nuclei, small and bright,
   which annotators count as nuclei: on the DSB tuning half 1/16 took the pooled count error from -3.7% to
   -2.5% without lowering F1.)

Memory types: thresholding, background/noise estimates, component peaks, hole filling, distance
transforms, the LoG response, the opened peak image and seed detection run with ``xp``/``ndi`` in the
input's memory (all with array operations that numpy and cupy/cupyx share: percentile/median, labelling,
``maximum.at``, slices and elementwise extremes). On numpy input (the **host path**) the two seeded floods are
scikit-image's watershed (:func:`_flood`), and the band test, the merge of over-split pieces, the half-maximum
outlines and the size filter run on the host too; these labels are pinned pixel for pixel by the tests.

On cupy input the **device path** keeps every step in device memory (issue #15, item 3): both floods are seeded
region growing in quantised landscape levels (:mod:`openhcs_rules.functions._region_growing`: gathers, scatters
and elementwise extremes only, with no data-dependent filter size, so cupy compiles its kernels once); touching
pairs, their passes and peaks for the merge come from shifted comparisons of the label image, unique pairs from
sorting a packed int64 key and ``maximum.at``, and only the union-find over the few pairs to merge runs on the
host; the full-resolution redraw, the half-maximum outlines and the size filter are the host path's own functions,
written with ``xp``. The band test's Hessian (a sigma per component) runs on the host, on crops, only when a
component is large enough and touches the field's edge to be a band at all (a labelling and a bincount on the
device decide). The floods differ from scikit-image's where landscape values differ by less than a level step or
tie, which can move a boundary by a pixel and so a merge decision: on the test planes the device path, run under
numpy (``_FORCE_DEVICE_PATH``), counts the host path's objects within 2 (max(2, 2%) is the tested tolerance) at a
median IoU of 0.99-1.0 (tests/unit/functions/test_segmentation_device_path.py, docs/benchmarks.md). Not yet
fixed for the device: the seed fields' Gaussian and LoG widths follow each plane's nucleus size, so cupyx still
compiles a filter per new width (cached on disk), and the floods' speed on a GPU has not been measured.

Speed: on one CPU core a 2048x2048 plane of the demo plate's nuclei took 1.3 s and a field of 1,100 small nuclei
4.1 s; both now take about half (docs/benchmarks.md, ``bench/kernels.py``), with the same labels, pixel for pixel
(tests/unit/functions/test_functions_fast_paths.py). Where the time had gone, and what replaced it:

* per-label maxima (component peaks, inscribed radii, the merge test's peaks and passes) by
  ``ndimage.maximum``, which sorts every pixel (0.5 s per 2048^2 image), or by ``np.maximum.at`` with a
  float32 -> float64 cast, which leaves numpy's indexed fast path (40x slower): now ``maximum.at`` in the
  values' own dtype (:func:`_label_maxima`; a maximum is exact in any dtype, widened afterwards);
* ``binary_fill_holes`` (dilating the outside inwards until nothing changes, ~0.1 s per mask, three masks per
  plane): now one labelling of the background (:func:`_fill_holes`);
* the grey opening and the LoG seeds' maximum filter (scipy's running extreme per pixel): now whole-array
  extremes of windows doubled in width (:func:`_extreme_filter`);
* scikit-image's watershed over the whole image, twice (it copies, pads and casts every pixel): now only the
  components that hold seeds of two or more labels are flooded, cut out and packed into one small image
  (:func:`_flood`);
* the half-maximum outlines read only the objects' pixels; the threshold histogram bins float32 pixels against
  float64 edges instead of copying the image to float64;
* the block means and the upsampled landscape (:mod:`openhcs_rules.functions._resample`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from openhcs_rules.core.arrays import CUPY, memory_type_of, modules_for, to_memory, to_numpy
from openhcs_rules.functions._region_growing import grow_regions
from openhcs_rules.functions._resample import block_mean, upsample
from openhcs_rules.functions._stack import as_float32, require_stack

logger = logging.getLogger(__name__)

#: components below this many pixels are noise, whatever the nucleus size.
SPECK_AREA = 10
#: final objects (half-maximum outlines) of at most this many pixels are point sources, not nuclei: a hot
#: pixel or a speck of debris blurred by the optics (sigma ~1.5 px), the pipeline's denoise (0.5 px) and
#: this function's smoothing (1 px), sigma ~1.9 px in all, has a half-maximum disc of radius 1.18 sigma,
#: ~2.2 px: ~16 px (20 with a margin for noise). A nucleus has to be several such widths across to be
#: resolved at all (the smallest annotated nuclei used here are ~9 px wide, ~60 px).
POINT_AREA = 20
#: objects smaller than this fraction of the typical nucleus area are dropped (min_area's default).
MIN_AREA_FRACTION = 0.0625
#: Otsu classes closer than this many background standard deviations mean "no objects".
MIN_SEPARATION = 3.0
#: merge two pieces only if neck half-width >= this x the thinner piece's inscribed radius ...
NECK_RATIO = 0.9
#: ... and the LoG response between them stays above this fraction of the lower LoG peak ...
SADDLE_RATIO = 0.6
#: ... and the intensity dip between them is below this fraction of the object contrast.
SEAM_DIP = 0.15
#: declumping runs at a resolution where the typical nucleus is this many pixels wide (or more).
WORKING_DIAMETER = 12.0
#: detection threshold: background + this many noise sigmas (capped at Otsu's threshold).
DETECT_SIGMAS = 4.0
#: ... and at least this fraction of the way from the background to Otsu's threshold (haze stays out).
OTSU_FRACTION = 0.5
#: a detected component is kept only if its peak is this many noise sigmas above the background.
PEAK_SIGMAS = 8.0
#: ... and only if its peak contrast is at least this fraction of the typical component's contrast.
MIN_RELATIVE_CONTRAST = 0.2
#: outlines of nuclei up to OUTLINE_SMALL px wide at this fraction of each object's peak above the background
#: (0.5: half maximum) ...
HALF_MAXIMUM = 0.5
#: ... of nuclei at least OUTLINE_LARGE px wide at this fraction, with a linear ramp between (module docstring, 7;
#: chosen on the real DSB 2018 tuning images).
HALF_MAXIMUM_LARGE = 0.35
OUTLINE_SMALL = 10.0
OUTLINE_LARGE = 20.0
#: halo test (module docstring, 7): a field's edge ramp is read from the area of its objects above these two
#: fractions of their peaks ...
HALO_PROBE_LOW = 0.15
HALO_PROBE_HIGH = 0.5
#: ... the outlines of fields of nuclei wider than OUTLINE_SMALL move to this fraction ...
HALO_FRACTION = 0.25
#: ... in full when the area ratio (low / high) is HALO_SOFTNESS + HALO_SOFTNESS_RAMP / 2 or more, not at all
#: below HALO_SOFTNESS - HALO_SOFTNESS_RAMP / 2, linearly between ...
HALO_SOFTNESS = 1.6
HALO_SOFTNESS_RAMP = 0.3
#: ... times the same ramp on the ramp's width in pixels (radius at the low fraction less radius at half
#: maximum), centred on HALO_WIDTH_PX: a ramp no wider than the optics' blur of a sharp edge (~1.5 px) is an
#: edge, not a halo.
HALO_WIDTH_PX = 1.8
HALO_WIDTH_RAMP = 0.4
#: the background histogram for the noise estimate spans +- this many MADs around the background ...
HISTOGRAM_SPAN = 10.0
#: ... in this many bins (0.1 MAD each: the half-width is read to ~5%).
HISTOGRAM_BINS = 200
#: the background is re-estimated from the pixels within this many noise widths above the histogram's mode ...
BACKGROUND_PEAK_WIDTHS = 3.0
#: ... when they are at least this share of the pixels below Otsu's threshold (see _background_and_noise).
BACKGROUND_PEAK_SHARE = 0.05
#: pieces are not merged when each is at least this many typical nucleus areas.
WHOLE_PIECE = 1.0
#: an object's peak is read after a grey opening of width diameter / PEAK_SMOOTHING (chromatin spots gone).
PEAK_SMOOTHING = 4.0
#: ... unless that opened peak is below this fraction of the sharp one (an object narrower than the window).
NARROW_PEAK = 0.75
#: band test (module docstring, 5b): only components of at least this many typical nucleus areas that touch
#: the field's edge are examined (no single nucleus is that large: the typical diameter is the minor axis, so
#: even a 3:1 nucleus is ~3 areas) ...
BAND_MIN_AREAS = 4.0
#: ... a pixel is ridge-like where the Hessian's weaker eigenvalue is below this fraction of the stronger
#: (negative) one, i.e. the intensity is more than twice as curved across as along: 0 on the crest of a
#: straight band, 1 at the centre of a round blob; a band's brightness ripple (+-15%) stays well below 0.5 ...
RIDGE_EIGEN_RATIO = 0.5
#: ... a band is ridge-like on at least this fraction of its core (measured: 44 well-edge arcs 0.91-1.00; clumps
#: of nuclei median 0.66, but up to 1.0: this test alone does not separate, it only guards the next one) ...
BAND_RIDGE_FRACTION = 0.8
#: ... and no seed of it sits on a blob: the eigenvalue ratio at every seed, at the seeds' own scale (sigma =
#: nucleus radius / 2), stays below this. A Gaussian blob of half-widths a >= b seen at sigma = b/2 has the
#: ratio (b^2 + sigma^2) / (a^2 + sigma^2): 1 for a round nucleus, 0.4 for one 1.7x as long as wide.
#: Measured (highest ratio over a component's seeds): 44 arcs 0.11-0.33; 145 clumps of >= 3 nucleus areas on
#: img2d and 16 synthetic fields 0.43-0.96 (median 0.76).
BAND_BLOB_RATIO = 0.4
#: ... read at seeds at least this many Hessian sigmas from the field's edge (the Gaussian second-derivative
#: kernel reaches ~3 sigma; closer, it reads the reflected image).
BORDER_SIGMAS = 3.0
#: run the device path (module docstring, "Memory types") on numpy arrays too: for its tests; cupy arrays always
#: take it.
_FORCE_DEVICE_PATH = False


# --------------------------------------------------------------------------------------------- threshold
def _histogram(image: Any, bins: int) -> tuple[Any, Any] | None:
    xp, _ = modules_for(image)
    data = xp.asarray(image).ravel()
    low, high = float(data.min()), float(data.max())
    if not high > low:
        return None
    # float64 edges (the range as float64 scalars: numpy would otherwise make float32 edges for float32 data),
    # so the pixels are binned in float64 without a float64 copy of the image: the same counts
    hist, edges = xp.histogram(data, bins=bins, range=(xp.float64(low), xp.float64(high)))
    return hist.astype(xp.float64), (edges[:-1] + edges[1:]) / 2.0


def _otsu_index(xp: Any, hist: Any, centres: Any) -> int:
    weight_low = xp.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    cum_mass = xp.cumsum(hist * centres)
    mean_low = cum_mass / xp.maximum(weight_low, 1.0)
    mean_high = (cum_mass[-1] - cum_mass) / xp.maximum(weight_high, 1.0)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return int(xp.argmax(between[:-1]))


def otsu_threshold(image: Any, bins: int = 1024) -> float:
    """Otsu's threshold of an image (numpy or cupy), from a ``bins``-bin histogram over its range.

    Pixels ``> threshold`` are foreground. Written with array operations only (histogram, cumulative
    sums, argmax) so it runs on the device that holds the image.
    """
    xp, _ = modules_for(image)
    histogram = _histogram(image, bins)
    if histogram is None:
        return float(xp.asarray(image).ravel()[0])
    hist, centres = histogram
    return float(centres[_otsu_index(xp, hist, centres)])


def _otsu_with_separation(image: Any, bins: int = 1024) -> tuple[float, float]:
    """Otsu threshold and (mean above - mean below) / std below, both from one histogram."""
    xp, _ = modules_for(image)
    histogram = _histogram(image, bins)
    if histogram is None:
        return float(xp.asarray(image).ravel()[0]), 0.0
    hist, centres = histogram
    index = _otsu_index(xp, hist, centres)
    low_w, high_w = float(hist[: index + 1].sum()), float(hist[index + 1 :].sum())
    if low_w == 0 or high_w == 0:
        return float(centres[index]), 0.0
    low_mean = float((hist[: index + 1] * centres[: index + 1]).sum()) / low_w
    high_mean = float((hist[index + 1 :] * centres[index + 1 :]).sum()) / high_w
    low_var = float((hist[: index + 1] * (centres[: index + 1] - low_mean) ** 2).sum()) / low_w
    bin_width = float(centres[1] - centres[0]) if centres.size > 1 else 0.0
    low_std = max(low_var, bin_width**2 / 12.0) ** 0.5
    return float(centres[index]), (high_mean - low_mean) / low_std if low_std > 0 else float("inf")


# ------------------------------------------------------------------------------------------ fast kernels
def _label_maxima(values: Any, labels: Any, count: int, initial: float) -> Any:
    """Maximum of ``values`` over each label ``0..count`` of a label image (``initial`` where a label has no pixel,
    and never below it), in the values' dtype.

    ``xp.maximum.at`` with the accumulator in the values' own dtype: numpy then takes its indexed fast path (~10 ms
    per 2048^2 image; with a float32 -> float64 cast on the way it is ~40x slower), cupy an atomic maximum.
    ``ndimage.maximum(values, labels, index)`` gives the same numbers but sorts every value first (0.5 s per
    2048^2 image on one core: most of the time of a diameter estimate).
    """
    xp, _ = modules_for(values)
    result = xp.full(count + 1, initial, dtype=values.dtype)
    xp.maximum.at(result, labels.ravel(), values.ravel())
    return result


def _fill_holes(mask: Any) -> Any:
    """``ndimage.binary_fill_holes`` of a 2D boolean mask (the same pixels), from one labelling of the background.

    A hole is a 4-connected background component (binary_fill_holes' default structure) that does not reach the
    image's edge. scipy finds the outside by dilating inwards from the border until nothing changes, 80-130 ms
    per 2048^2 mask on one core; labelling the background and dropping the components seen on the edge takes a
    third of that, and runs on cupy (``cupyx.scipy.ndimage.label``) the same way.
    """
    xp, ndi = modules_for(mask)
    background, count = ndi.label(xp.logical_not(mask))
    outside = xp.zeros(int(count) + 1, dtype=bool)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outside[edge] = True
    outside[0] = False  # label 0 is the mask itself
    return xp.logical_not(outside[background])


def _along(array: Any, axis: int, start: int, stop: int) -> Any:
    """``array[start:stop]`` along ``axis`` (a view)."""
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, stop)
    return array[tuple(index)]


def _extreme_filter(image: Any, size: int, maximum: bool) -> Any:
    """``ndimage.maximum_filter`` (or ``minimum_filter``) of an image with a ``size``-wide square window and mode
    ``"reflect"``: the same values (an extreme is exact whatever the order it is taken in).

    Per axis the image is reflected by ``size // 2`` (numpy's "symmetric" padding is ndimage's "reflect") and each
    window's extreme is built by doubling: extremes over 2, 4, 8, ... pixels, then two overlapping windows of the
    largest power of two that fits cover ``size``. That is log2(size) + 1 whole-array operations per axis, which
    numpy runs 2-3x faster than scipy's per-pixel running extreme and cupy runs as a few kernels.
    """
    xp, _ = modules_for(image)
    combine = xp.maximum if maximum else xp.minimum
    half = size // 2
    result = image
    for axis in range(image.ndim):
        length = result.shape[axis]
        widths = [(0, 0)] * image.ndim
        widths[axis] = (half, half)
        run = xp.pad(result, widths, mode="symmetric")
        span = 1
        while 2 * span <= size:
            kept = run.shape[axis] - span
            run = combine(_along(run, axis, 0, kept), _along(run, axis, span, span + kept))
            span *= 2
        rest = size - span
        result = combine(_along(run, axis, 0, length), _along(run, axis, rest, rest + length))
    return result


def _grey_opening(image: Any, size: int) -> Any:
    """``ndimage.grey_opening(image, size=size, mode="reflect")`` for an odd ``size`` (the same values): the erosion's
    minimum, then the dilation's maximum, both by :func:`_extreme_filter`."""
    return _extreme_filter(_extreme_filter(image, size, maximum=False), size, maximum=True)


# ---------------------------------------------------------------------------------------------- diameter
def estimate_diameter(mask: Any) -> float | None:
    """Typical object diameter (pixels) of a binary mask: 2 x area-weighted median inscribed radius.

    None when the mask is empty. See the module docstring for why inscribed radii and not equivalent
    diameters.
    """
    xp, ndi = modules_for(mask)
    labels, count = ndi.label(mask)
    count = int(count)
    if count == 0:
        return None
    distance = ndi.distance_transform_edt(mask)
    radii = xp.asarray(_label_maxima(distance, labels, count, 0.0)[1:], dtype=xp.float64)
    areas = xp.bincount(labels.ravel(), minlength=count + 1)[1:].astype(xp.float64)
    order = xp.argsort(radii)
    cumulative = xp.cumsum(areas[order])
    median_at = int(xp.searchsorted(cumulative, cumulative[-1] / 2.0))
    return 2.0 * float(radii[order][median_at])


def _typical_diameter(mask: Any) -> float | None:
    """:func:`estimate_diameter`, on a block-averaged mask for large images when that is exact enough."""
    coarse = max(1, max(mask.shape) // 512)
    if coarse > 1:
        small = block_mean(mask, coarse) >= 0.5
        estimate = estimate_diameter(small)
        if estimate is None:
            return None
        if estimate >= WORKING_DIAMETER:
            return estimate * coarse
    return estimate_diameter(mask)


# ------------------------------------------------------------------------------------------- declumping
def _seed_fields(work: Any, mask: Any, radius: float) -> dict[str, Any]:
    """Seeds (labelled LoG maxima) and the fields the merge step needs, computed with xp/ndi."""
    xp, ndi = modules_for(work)
    sigma = max(1.0, radius / 2.0)
    response = -ndi.gaussian_laplace(work, sigma=sigma, mode="reflect") * (sigma * sigma)
    window = max(3, int(round(1.2 * radius)) | 1)
    local_max = _extreme_filter(response, window, maximum=True)
    peaks = (response == local_max) & mask
    markers, _ = ndi.label(peaks, structure=xp.ones((3, 3), dtype=bool))
    distance = ndi.distance_transform_edt(mask)
    smooth = ndi.gaussian_filter(work, sigma=max(1.0, radius / 4.0), mode="reflect")
    return {"markers": markers, "response": response, "distance": distance, "smooth": smooth}


def _adjacent_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All 4-neighbour pixel pairs in two different objects: (label_a, label_b, index_a, index_b).

    Ordered so that ``label_a < label_b``; indices are flat pixel indices of each side. Shifted comparisons of
    the label image and boolean selections: the same lines run on numpy and cupy.
    """
    xp, _ = modules_for(labels)
    width = labels.shape[1]
    parts: list[tuple[Any, ...]] = []
    for first, second, step in ((labels[:, :-1], labels[:, 1:], 1), (labels[:-1, :], labels[1:, :], width)):
        border = (first != second) & (first > 0) & (second > 0)
        # flat indices of the border pixels in the whole image (raster order, as boolean indexing gives them)
        position = xp.flatnonzero(border)
        index = position // first.shape[1] * width + position % first.shape[1]
        parts.append((first[border], second[border], index, index + step))
    la, lb, ia, ib = (xp.concatenate([p[k] for p in parts]) for k in range(4))
    swap = la > lb
    la, lb = xp.where(swap, lb, la), xp.where(swap, la, lb)
    ia, ib = xp.where(swap, ib, ia), xp.where(swap, ia, ib)
    return la, lb, ia, ib


def _pass_and_peak(
    labels: np.ndarray, field: np.ndarray, inverse: np.ndarray, ia: np.ndarray, ib: np.ndarray, n_pairs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: highest point of ``field`` on the common border (the pass); per label: its peak (numpy or cupy)."""
    xp, _ = modules_for(field)
    flat = field.ravel()
    saddle = xp.full(n_pairs, -np.inf, dtype=xp.float64)
    xp.maximum.at(saddle, inverse, xp.minimum(flat[ia], flat[ib]).astype(xp.float64))
    # the per-label maximum in the field's own dtype, then widened: the same numbers as a float64 maximum
    return saddle, _label_maxima(flat, labels, int(labels.max()), -np.inf).astype(xp.float64)


def _merge_oversplit(
    labels: np.ndarray, fields: dict[str, np.ndarray], level: float, nucleus_radius: float | None = None
) -> np.ndarray:
    """Merge touching pieces that show no waist, no LoG valley and no dark seam (module docstring, 6).

    Vectorised over all touching pairs (``maximum.at`` in float64, numpy's fast path; unique pairs by sorting a
    packed int64 key), in the labels' memory (numpy or cupy); only the union-find over the (few) pairs to merge runs
    on the host, as a Python loop, and the roots go back as one small lookup table.
    """
    xp, _ = modules_for(labels)
    count = int(labels.max())
    if count < 2:
        return labels
    la, lb, ia, ib = _adjacent_pairs(labels)
    if la.size == 0:
        return labels
    pairs, inverse = xp.unique(la.astype(xp.int64) * (count + 1) + lb, return_inverse=True)
    pa, pb = pairs // (count + 1), pairs % (count + 1)
    neck, radius = _pass_and_peak(labels, fields["distance"], inverse, ia, ib, pairs.size)
    log_pass, log_peak = _pass_and_peak(labels, fields["response"], inverse, ia, ib, pairs.size)
    seam, bright = _pass_and_peak(labels, fields["smooth"], inverse, ia, ib, pairs.size)

    no_waist = neck >= NECK_RATIO * xp.minimum(radius[pa], radius[pb])
    no_valley = log_pass > SADDLE_RATIO * xp.minimum(log_peak[pa], log_peak[pb])
    lower = xp.minimum(bright[pa], bright[pb])
    no_seam = (lower - seam) < SEAM_DIP * xp.maximum(lower - level, 1e-6)
    merge = no_waist & no_valley & no_seam
    if nucleus_radius is not None:
        # size prior: two pieces that are each as large as a typical nucleus are two nuclei
        area = xp.bincount(labels.ravel(), minlength=count + 1).astype(xp.float64)
        merge &= xp.minimum(area[pa], area[pb]) < WHOLE_PIECE * np.pi * nucleus_radius**2
    if not bool(merge.any()):
        return labels
    parent = np.arange(count + 1)

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in zip(pa[merge].tolist(), pb[merge].tolist(), strict=True):
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    roots = np.array([find(node) for node in range(count + 1)])
    return to_memory(roots, memory_type_of(labels))[labels]


def _flood(landscape: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``watershed(landscape, markers, mask=mask)`` (scikit-image) where every mask component without a marker is
    first given its own (numbered after the highest marker), so no object is lost: int32 labels (host).

    The flooding is only run where it has a choice: on the components that hold markers of two or more labels. A
    component whose markers all carry one label is that label throughout (the flood fills every pixel it can
    reach, and it reaches the whole 4-connected component), so most nuclei, which touch no other, cost nothing;
    scikit-image's whole-image call copied, padded and cast every pixel (0.1-0.5 s per 2048^2 image). The
    components to flood are cut out and packed side by side, one background pixel apart, into one small image
    flooded by one call (a call per component costs ~0.4 ms of set-up: 600 clumps on a crowded field). A flood
    never crosses the background, so each component is flooded from its own markers by the same ordered queue
    (by landscape value, then by the order pixels were queued in). One difference remains possible, and was seen
    only on artificial flat landscapes: where two floods reach one pixel with exactly equal values and ages, the
    queue's layout picks the winner, and that layout depends on everything queued.
    """
    import scipy.ndimage as sndi
    from skimage.segmentation import watershed

    components, count = sndi.label(mask)
    count = int(count)
    seeded = markers > 0
    owner, seeds = components[seeded], markers[seeded].astype(np.int32)
    lowest = np.full(count + 1, np.iinfo(np.int32).max, dtype=np.int32)
    np.minimum.at(lowest, owner, seeds)
    highest = np.zeros(count + 1, dtype=np.int32)
    np.maximum.at(highest, owner, seeds)
    # a component without a marker is one object of its own, numbered after the markers
    unseeded = highest == 0
    own = np.arange(count + 1, dtype=np.int32) + np.int32(markers.max() if markers.size else 0)
    lowest = np.where(unseeded, own, lowest)
    highest = np.where(unseeded, own, highest)
    single = lowest == highest
    single[0], highest[0] = True, 0
    labels = np.where(single, highest, 0).astype(np.int32)[components]
    if single.all():
        return labels
    slices = sndi.find_objects(components)
    crops = [(index, slices[index - 1]) for index in np.flatnonzero(~single).tolist()]
    places, shape = _pack(
        [(crop[0].stop - crop[0].start, crop[1].stop - crop[1].start) for _, crop in crops], mask.shape[1]
    )
    packed_landscape = np.zeros(shape, dtype=landscape.dtype)
    packed_markers = np.zeros(shape, dtype=np.int32)
    packed_mask = np.zeros(shape, dtype=bool)
    insides = []
    for (index, crop), place in zip(crops, places, strict=True):
        inside = components[crop] == index
        insides.append(inside)
        packed_mask[place] = inside
        packed_markers[place] = np.where(inside, markers[crop], 0)
        packed_landscape[place] = landscape[crop]
    flooded = watershed(packed_landscape, packed_markers, mask=packed_mask)
    for (_, crop), place, inside in zip(crops, places, insides, strict=True):
        labels[crop][inside] = flooded[place][inside]
    return labels


def _pack(sizes: list[tuple[int, int]], width: int) -> tuple[list[tuple[slice, slice]], tuple[int, int]]:
    """Places (row and column slices) for rectangles of ``sizes`` (height, width) in rows ("shelves") of an image at
    least ``width`` wide, tallest first, with one empty row and column between any two; and that image's shape."""
    width = max(width, max(w for _, w in sizes) + 1)
    places: list[tuple[slice, slice]] = [(slice(0, 0), slice(0, 0))] * len(sizes)
    top = left = shelf = 0
    for item in sorted(range(len(sizes)), key=lambda i: -sizes[i][0]):
        height, wide = sizes[item]
        if left + wide > width:
            top, left, shelf = top + shelf + 1, 0, 0
        places[item] = (slice(top, top + height), slice(left, left + wide))
        left += wide + 1
        shelf = max(shelf, height)
    return places, (top + shelf, width)


def _hessian_eigenvalues(image: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (lower, higher) of the Gaussian-derivative Hessian of a host image at ``sigma``."""
    import scipy.ndimage as sndi

    rr = sndi.gaussian_filter(image, sigma, order=(2, 0), mode="reflect")
    cc = sndi.gaussian_filter(image, sigma, order=(0, 2), mode="reflect")
    rc = sndi.gaussian_filter(image, sigma, order=(1, 1), mode="reflect")
    mean = 0.5 * (rr + cc)
    deviation = np.sqrt((0.5 * (rr - cc)) ** 2 + rc**2)
    return mean - deviation, mean + deviation


def _away_from_edge(shape: tuple[int, ...], crop: tuple[slice, slice], margin: float) -> np.ndarray:
    """Pixels of ``crop`` (of an image of ``shape``) at least ``margin`` pixels from the image's edge."""
    rows = np.arange(crop[0].start, crop[0].stop)
    cols = np.arange(crop[1].start, crop[1].stop)
    row_ok = (rows >= margin) & (rows < shape[0] - margin)
    col_ok = (cols >= margin) & (cols < shape[1] - margin)
    return row_ok[:, None] & col_ok[None, :]


def _band_components(image: np.ndarray, mask: np.ndarray, markers: np.ndarray, radius: float) -> np.ndarray:
    """Mask of the components that are bright bands (a well edge), not nuclei (module docstring, 5b).

    Host arrays at working resolution. Only components of at least ``BAND_MIN_AREAS`` typical nucleus
    areas that touch the field's edge are examined, each on a crop around it, so a field of separate nuclei
    pays one labelling. A component whose seeds all lie within ``BORDER_SIGMAS`` of the edge is judged by its
    ridge fraction alone.
    """
    import scipy.ndimage as sndi

    band = np.zeros(mask.shape, dtype=bool)
    components, count = sndi.label(mask)
    if count == 0:
        return band
    areas = np.bincount(components.ravel())
    large = np.flatnonzero(areas >= BAND_MIN_AREAS * np.pi * radius**2)
    large = large[large > 0]
    if large.size == 0:
        return band
    slices = sndi.find_objects(components)
    image = np.asarray(image, dtype=np.float64)
    nucleus_sigma = max(1.0, radius / 2.0)
    for index in large.tolist():
        rows, cols = slices[index - 1]
        # a well wall is a circle wider than the field: where it shows, it enters and leaves across the edge
        if rows.start > 0 and cols.start > 0 and rows.stop < mask.shape[0] and cols.stop < mask.shape[1]:
            continue
        pad = int(3.0 * radius) + 2
        crop = (
            slice(max(0, rows.start - pad), min(mask.shape[0], rows.stop + pad)),
            slice(max(0, cols.start - pad), min(mask.shape[1], cols.stop + pad)),
        )
        inside = components[crop] == index
        distance = sndi.distance_transform_edt(inside)
        inscribed = float(distance.max())
        # ridge-ness of the core (at least half the inscribed radius deep), at the component's own scale
        own_sigma = max(1.0, inscribed / 2.0)
        low, high = _hessian_eigenvalues(image[crop], own_sigma)
        core = (distance >= 0.5 * inscribed) & _away_from_edge(mask.shape, crop, BORDER_SIGMAS * own_sigma)
        if not core.any():
            continue
        ridge = (low < 0) & (np.abs(high) < RIDGE_EIGEN_RATIO * np.abs(low))
        ridge_fraction = float(ridge[core].mean())
        if ridge_fraction < BAND_RIDGE_FRACTION:
            continue
        # ... and no seed on a blob (eigenvalue ratio at the nucleus scale the seeds were found at)
        # seeds within BORDER_SIGMAS of the field's edge are not read: there the Hessian sees the reflected
        # continuation, and a band that leaves the field obliquely reflects into a V whose apex is a "blob"
        seeds = (markers[crop] > 0) & inside & _away_from_edge(mask.shape, crop, BORDER_SIGMAS * nucleus_sigma)
        if seeds.any():
            low, high = _hessian_eigenvalues(image[crop], nucleus_sigma)
            ratio = np.where(low < 0, high / np.minimum(low, -1e-12), 0.0)
            blob = float(ratio[seeds].max())
        else:
            blob = 0.0
        if blob >= BAND_BLOB_RATIO:
            continue
        logger.info(
            "dropped a bright band (%d px at working resolution, %.1f nucleus areas): ridge-like on %.0f%% of "
            "its core, no seed on a blob (highest eigenvalue ratio %.2f); a well edge, not nuclei",
            int(areas[index]),
            float(areas[index]) / (np.pi * radius**2),
            100.0 * ridge_fraction,
            blob,
        )
        band[crop] |= inside
    return band


def _declump(work: Any, work_mask: Any, radius: float, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (host) of touching nuclei split at working resolution, the watershed landscape, and the mask
    of the bright bands that were dropped (:func:`_band_components`)."""
    fields = {key: to_numpy(value) for key, value in _seed_fields(work, work_mask, radius).items()}
    host_mask = to_numpy(work_mask)
    band = _band_components(to_numpy(work), host_mask, fields["markers"], radius)
    if band.any():
        host_mask = host_mask & ~band
        fields["markers"] = np.where(band, 0, fields["markers"])
    landscape = -fields["response"].astype(np.float32)
    labels = _flood(landscape, fields["markers"].astype(np.int32), host_mask)
    return _merge_oversplit(labels, fields, level, radius), landscape, band


def _bands_on_device(image: Any, mask: Any, markers: Any, radius: float) -> Any:
    """:func:`_band_components` for the device path: the arrays stay where they are unless a component could be a
    band at all (at least ``BAND_MIN_AREAS`` nucleus areas and touching the field's edge, found with a labelling
    and a bincount); only then are the (working-resolution) image, mask and markers read on the host. The Hessian
    test's sigma follows each component's size, so on the device it would compile a filter per size."""
    xp, ndi = modules_for(mask)
    components, count = ndi.label(mask)
    count = int(count)
    nothing = xp.zeros(mask.shape, dtype=bool)
    if count == 0:
        return nothing
    large = xp.bincount(components.ravel(), minlength=count + 1) >= BAND_MIN_AREAS * np.pi * radius**2
    on_edge = xp.zeros(count + 1, dtype=bool)
    for edge in (components[0], components[-1], components[:, 0], components[:, -1]):
        on_edge[edge] = True
    on_edge[0] = False
    if not bool((large & on_edge).any()):
        return nothing
    band = _band_components(to_numpy(image), to_numpy(mask), to_numpy(markers), radius)
    return to_memory(band, memory_type_of(mask))


def _declump_on_device(work: Any, work_mask: Any, radius: float, level: float) -> tuple[Any, Any, Any]:
    """:func:`_declump` with every array in the input's memory: the seeded flood by region growing
    (:func:`~openhcs_rules.functions._region_growing.grow_regions`) and the merge with array operations."""
    xp, _ = modules_for(work)
    fields = _seed_fields(work, work_mask, radius)
    mask = work_mask
    band = _bands_on_device(work, work_mask, fields["markers"], radius)
    if bool(band.any()):
        mask = mask & ~band
        fields["markers"] = xp.where(band, 0, fields["markers"])
    landscape = -fields["response"].astype(xp.float32)
    labels = grow_regions(landscape, fields["markers"].astype(xp.int32), mask)
    return _merge_oversplit(labels, fields, level, radius), landscape, band


def _interior(labels: np.ndarray) -> np.ndarray:
    """Labels with every pixel that touches another label or background (4-neighbours) cleared (numpy or cupy)."""
    xp, _ = modules_for(labels)
    padded = xp.pad(labels, 1, mode="edge")
    same = (
        (padded[:-2, 1:-1] == labels)
        & (padded[2:, 1:-1] == labels)
        & (padded[1:-1, :-2] == labels)
        & (padded[1:-1, 2:] == labels)
    )
    return xp.where(same, labels, 0)


def _without_bands(mask: np.ndarray, band: np.ndarray, factor: int) -> np.ndarray:
    """Full-resolution mask less its components that lie mostly in a working-resolution band (numpy or cupy)."""
    xp, ndi = modules_for(mask)
    rows = xp.minimum(xp.arange(mask.shape[0]) // factor, band.shape[0] - 1)
    cols = xp.minimum(xp.arange(mask.shape[1]) // factor, band.shape[1] - 1)
    in_band = band[rows[:, None], cols[None, :]] & mask
    components, count = ndi.label(mask)
    area = xp.bincount(components.ravel(), minlength=int(count) + 1)
    banded = xp.bincount(components[in_band], minlength=int(count) + 1)
    drop = 2 * banded >= area
    drop[0] = False
    return mask & ~drop[components]


def _to_full_resolution(
    labels: Any, landscape: Any, mask: Any, factor: int, flood: Callable[[Any, Any, Any], Any] | None = None
) -> Any:
    """Redraw working-resolution labels on the full-resolution mask (second, seeded flood: ``_flood`` on the
    host, or the device path's ``flood``; numpy or cupy arrays)."""
    xp, _ = modules_for(labels)
    # each working pixel's interior label over its factor x factor block (repeat: a copy, not a gather)
    blocks = xp.repeat(xp.repeat(_interior(labels), factor, axis=0)[: mask.shape[0]], factor, axis=1)
    markers = xp.where(mask, blocks[:, : mask.shape[1]], 0).astype(xp.int32, copy=False)
    full_landscape = xp.asarray(upsample(landscape, factor, mask.shape))
    return (flood or _flood)(full_landscape, markers, mask)


# ------------------------------------------------------------------------------------------------ planes
def _background_and_noise(smoothed: Any, otsu_level: float) -> tuple[float, float]:
    """Background level and noise of a smoothed plane, robust to clipping at 0 and to dim nuclei (see below).

    A first estimate takes the pixels at or below Otsu's threshold: their median, and the larger of two noise
    estimates, both computed with ``xp`` on every 2nd pixel of each axis (a quarter of the pixels: same estimate
    within ~1%, 4x cheaper on 2048x2048):

    * 1.4826 x MAD of those pixels (residual gradients and haze widen it, which only makes the tests
      stricter);
    * the **upper half-width of the background peak** of the histogram: the distance from its mode to
      where the histogram falls to half the peak height on the bright side, / 1.1774 (half width at half
      maximum of a normal distribution). Background subtraction clips about half of the background pixels
      to 0; after smoothing, the background is a rectified, right-skewed distribution whose lower side
      (and so the MAD of the pixels under Otsu's threshold, which in an empty field splits the noise
      itself) is about half as wide as its upper tail, and the upper tail is where false detections come
      from. Measured: on clipped noise fields the half-width is 1.6-2x the MAD.

    Then the **background peak itself** (module docstring, 2): when nuclei vary several-fold in brightness,
    Otsu's threshold splits the bright nuclei from the rest, and the pixels below it hold the dim nuclei too.
    Their median and MAD are then those of a mixture: on a crowded real field (DSB 2018, 369 nuclei) the "noise"
    came out at 12.7 for a background peak 1 wide, the detection floor (4 sigmas) and the peak test (8 sigmas)
    sat above the dim nuclei, and 60% of the nuclei were lost. So the estimate is made again from the pixels
    within ``BACKGROUND_PEAK_WIDTHS`` noise widths above the histogram's mode (the background peak), when they
    are at least ``BACKGROUND_PEAK_SHARE`` of the pixels below Otsu's threshold: median, and the larger of their
    MAD and the peak's half-width. In a field of background and bright nuclei alone this changes little (the
    pixels below Otsu's threshold are that peak already); on the 264 real DSB 2018 tuning images it took the
    pooled count error from -12.7% to -4.3%, and left the empty, noise and arc fields at 0 objects.
    """
    xp, _ = modules_for(smoothed)
    sample = smoothed[::2, ::2].ravel()
    low = sample[sample <= otsu_level]
    if low.size == 0:
        return float(otsu_level), 0.0
    background = float(xp.median(low))
    spread = 1.4826 * float(xp.median(xp.abs(low - background)))
    if spread <= 0:
        return background, spread
    # the histogram spans +-HISTOGRAM_SPAN MADs (bins of 0.1 MAD), boxcar-smoothed over 5 bins
    bin_width = 2.0 * HISTOGRAM_SPAN * spread / HISTOGRAM_BINS
    start = background - HISTOGRAM_SPAN * spread
    hist, _ = xp.histogram(sample, bins=HISTOGRAM_BINS, range=(start, background + HISTOGRAM_SPAN * spread))
    hist = xp.convolve(hist.astype(xp.float64), xp.ones(5) / 5.0, mode="same")
    mode = int(xp.argmax(hist))
    below_half = hist[mode:] < 0.5 * hist[mode]
    if not bool(below_half.any()):
        return background, spread
    half_width = max(float(xp.argmax(below_half)) * bin_width / 1.1774, bin_width)
    peak = low[low <= start + (mode + 0.5) * bin_width + BACKGROUND_PEAK_WIDTHS * half_width]
    if peak.size < BACKGROUND_PEAK_SHARE * low.size:
        return background, max(spread, half_width)
    peak_background = float(xp.median(peak))
    peak_spread = 1.4826 * float(xp.median(xp.abs(peak - peak_background)))
    return peak_background, max(peak_spread, half_width)


def _object_levels(
    labels: np.ndarray, smoothed: np.ndarray, peak_field: np.ndarray, background: float
) -> tuple[Any, Any, Any, Any]:
    """Every object pixel's flat index, owner and smoothed value, and each object's peak above the background
    (numpy or cupy): what outlines at a fraction of each object's peak are cut from (:func:`_half_maximum`)."""
    count = int(labels.max())
    xp, _ = modules_for(labels)
    # only the objects' pixels are read (a tenth of a typical field), by their flat indices
    inside = xp.flatnonzero(labels)
    owner = labels.ravel()[inside]
    values = smoothed.ravel()[inside]
    # per object, the highest value, never below the background (maxima in float32, then widened: the same
    # numbers as a float64 maximum starting from the background)
    peak = xp.maximum(_label_maxima(peak_field.ravel()[inside], owner, count, -np.inf).astype(xp.float64), background)
    sharp = xp.maximum(_label_maxima(values, owner, count, -np.inf).astype(xp.float64), background)
    # an object narrower than the opening window loses its top in the opened copy: read it on the sharp one
    narrow = peak - background < NARROW_PEAK * (sharp - background)
    peak[narrow] = sharp[narrow]
    return inside, owner, values, peak


def _half_maximum(
    labels: np.ndarray,
    smoothed: np.ndarray,
    peak_field: np.ndarray,
    background: float,
    fraction: float,
    levels: tuple[Any, Any, Any, Any] | None = None,
) -> np.ndarray:
    """Keep each object's pixels brighter than background + ``fraction`` x (its peak - background).

    The outline of a blurred object is where its intensity falls to half of its own peak above the
    background (full width at half maximum), whatever its brightness; a global threshold draws bright nuclei
    too large and dim ones too small. Holes (dim nucleoli) inside an object are kept. Numpy or cupy arrays.
    ``levels``: :func:`_object_levels` of these arrays, when already computed (the caller has then seen objects:
    no second pass over the labels to look for any).
    """
    xp, _ = modules_for(labels)
    if levels is None:
        if int(labels.max()) == 0:
            return labels
        levels = _object_levels(labels, smoothed, peak_field, background)
    inside, owner, values, peak = levels
    cut = background + fraction * (peak - background)
    kept = xp.zeros(labels.shape, dtype=labels.dtype)
    brighter = inside[values > cut[owner]]
    kept.ravel()[brighter] = labels.ravel()[brighter]
    filled = _fill_holes(kept > 0)
    holes = filled & (kept == 0) & (labels > 0)
    kept[holes] = labels[holes]
    return kept


def _halo_weight(levels: tuple[Any, Any, Any, Any], background: float) -> float:
    """How far (0..1) a field's outlines move from the half-maximum rule to ``HALO_FRACTION`` (module docstring, 7).

    Read on all objects of the field together: the area above ``HALO_PROBE_LOW`` of each object's peak over the
    area above ``HALO_PROBE_HIGH`` (1.1-1.3 for a sharp-edged nucleus, 1.6-1.9 for one in a wide halo), and the
    width of that ramp in pixels (radius of the low area less that of the high one, per object on average).
    """
    xp, _ = modules_for(levels[0])
    _, owner, values, peak = levels
    relative = (values - background) / xp.maximum(peak - background, 1e-12)[owner]
    low = float((relative > HALO_PROBE_LOW).sum())
    above_half = relative > HALO_PROBE_HIGH
    high = float(above_half.sum())
    objects = int((xp.bincount(owner[above_half]) > 0).sum()) if high else 0
    if objects == 0:
        return 0.0
    softness = low / high
    width_px = (np.sqrt(softness) - 1.0) * np.sqrt(high / (np.pi * objects))

    def ramp(value: float, centre: float, width: float) -> float:
        return min(max((value - centre) / width + 0.5, 0.0), 1.0)

    return ramp(softness, HALO_SOFTNESS, HALO_SOFTNESS_RAMP) * ramp(width_px, HALO_WIDTH_PX, HALO_WIDTH_RAMP)


def _outline_fraction(size: float) -> float:
    """The fraction of each object's peak contrast its outline is drawn at, for a typical nucleus ``size`` px wide
    (module docstring, 7)."""
    if size <= OUTLINE_SMALL:
        return HALF_MAXIMUM
    if size >= OUTLINE_LARGE:
        return HALF_MAXIMUM_LARGE
    return HALF_MAXIMUM + (HALF_MAXIMUM_LARGE - HALF_MAXIMUM) * (size - OUTLINE_SMALL) / (OUTLINE_LARGE - OUTLINE_SMALL)


def _segment_plane(
    plane: Any,
    diameter: float | None,
    threshold: str | float,
    threshold_scale: float,
    split_touching: bool,
    min_area: float | None,
    max_area: float | None,
    device_path: bool = False,
) -> Any:
    """Labels (int32) of one 2D plane; see the module docstring for the steps. On the host (numpy) unless
    ``device_path``: then every step runs in the plane's memory (module docstring, "Memory types")."""
    xp, ndi = modules_for(plane)
    empty = xp.zeros(plane.shape, dtype=xp.int32) if device_path else np.zeros(plane.shape, dtype=np.int32)
    smoothed = ndi.gaussian_filter(plane, sigma=1.0, mode="reflect")
    adaptive = isinstance(threshold, str)
    if adaptive:
        otsu, separation = _otsu_with_separation(smoothed)
        if separation < MIN_SEPARATION:
            return empty
        background, noise = _background_and_noise(smoothed, otsu)
        # detection threshold: well above the noise, and never above Otsu's (the threshold_scale applies) --
        # unless Otsu's threshold itself lies within DETECT_SIGMAS of the background: then it split the noise
        # (a field without objects, or with too few to weigh in the histogram) and the noise level applies
        floor = background + DETECT_SIGMAS * noise
        level = floor if otsu < floor else max(floor, background + OTSU_FRACTION * (otsu - background))
        level *= threshold_scale
    else:
        level = float(threshold) * threshold_scale
    mask = _fill_holes(smoothed > level)
    components, count = ndi.label(mask)
    if int(count) == 0:
        return empty
    areas = xp.bincount(components.ravel(), minlength=int(count) + 1)
    keep = areas >= SPECK_AREA
    if adaptive:
        # a component is an object only if its peak stands PEAK_SIGMAS noise sigmas above the background
        # (label 0, the background, reads 0: it is never kept)
        peaks = _label_maxima(smoothed, components, int(count), -np.inf)
        peaks[0] = 0.0
        keep &= peaks >= background + PEAK_SIGMAS * noise
        # ... and at least MIN_RELATIVE_CONTRAST of the typical (area-weighted median) component's contrast:
        # nuclei of one field vary ~3-5x in brightness, residual background bumps are far fainter
        contrast = peaks - background
        weights = areas * keep
        if int(keep[1:].sum()) > 0:
            order = xp.argsort(contrast)
            cumulative = xp.cumsum(weights[order])
            typical = float(contrast[order][int(xp.searchsorted(cumulative, cumulative[-1] / 2.0))])
            keep &= contrast >= MIN_RELATIVE_CONTRAST * typical
    keep[0] = False
    mask = keep[components]
    if adaptive:
        size_mask = mask & (smoothed > otsu)
        size = float(diameter) if diameter is not None else _typical_diameter(size_mask)
    else:
        size = float(diameter) if diameter is not None else _typical_diameter(mask)
    if size is None:
        return empty

    if split_touching:
        labels = _split_touching(plane, mask, size, level, device_path)
    else:
        labels = ndi.label(mask if device_path else to_numpy(mask))[0]
    if adaptive:
        # the peak of an object is read on a copy smoothed at 1/8 of the nucleus diameter, so that one bright
        # chromatin spot does not stand for the whole nucleus
        peak_field = _grey_opening(smoothed, max(3, int(size / PEAK_SMOOTHING) | 1))
        if not device_path:
            smoothed, peak_field = to_numpy(smoothed), to_numpy(peak_field)
        fraction = _outline_fraction(size)
        if int(labels.max()) > 0:
            levels = _object_levels(labels, smoothed, peak_field, background)
            if size > OUTLINE_SMALL:
                fraction += _halo_weight(levels, background) * (HALO_FRACTION - fraction)
            labels = _half_maximum(labels, smoothed, peak_field, background, fraction, levels)

    lx, _ = modules_for(labels)
    lower = max(np.pi * (size / 2.0) ** 2 * MIN_AREA_FRACTION, POINT_AREA + 1) if min_area is None else float(min_area)
    areas = lx.bincount(labels.ravel())
    keep = areas >= lower
    if max_area is not None:
        keep &= areas <= float(max_area)
    keep[0] = False
    new_ids = lx.zeros(areas.size, dtype=lx.int32)
    new_ids[keep] = lx.arange(1, int(keep.sum()) + 1, dtype=lx.int32)
    return new_ids[labels]


def _split_touching(plane: Any, mask: Any, size: float, level: float, device_path: bool) -> Any:
    """Labels of the detected mask with touching nuclei split (module docstring, 5-6).

    Host path: scikit-image's watershed and the merge on host arrays, labels on the host. Device path: region
    growing for both floods and the merge with array operations, in the plane's memory ("Memory types").
    """
    declump = _declump_on_device if device_path else _declump
    out_mask = mask if device_path else to_numpy(mask)
    factor = max(1, int(size // WORKING_DIAMETER))
    if factor == 1:
        labels, _, _ = declump(plane, mask, size / 2.0, level)
        return labels
    work = block_mean(plane, factor)
    work_mask = _fill_holes(block_mean(mask, factor) >= 0.5)
    work_labels, landscape, band = declump(work, work_mask, size / factor / 2.0, level)
    if bool(band.any()):
        out_mask = _without_bands(out_mask, band, factor)
    if device_path:
        return _to_full_resolution(work_labels, landscape, out_mask, factor, flood=grow_regions)
    return _to_full_resolution(work_labels, landscape, out_mask, factor)


def segment_nuclei(
    stack: Any,
    diameter: float | None = None,
    threshold: str | float = "otsu",
    threshold_scale: float = 1.0,
    split_touching: bool = True,
    min_area: float | None = None,
    max_area: float | None = None,
) -> Any:
    """Label the nuclei in every plane of a ``(n, y, x)`` stack; returns int32 labels of the same shape.

    Labels are numbered 1..k independently in each plane (0 is background). ``diameter`` is the typical
    nucleus diameter in pixels (its minor axis for elongated nuclei; estimated per plane when None);
    ``threshold`` is ``"otsu"`` or a fixed intensity; ``threshold_scale`` multiplies it (>1 is
    stricter); ``split_touching`` turns declumping on/off; ``min_area``/``max_area`` (pixels) filter the
    final objects. Run flat-field and background correction first for uneven images: the threshold is
    global.
    """
    require_stack(stack)
    if isinstance(threshold, str) and threshold != "otsu":
        raise ValueError(f"unknown threshold method {threshold!r}; use 'otsu' or a number")
    if threshold_scale <= 0:
        raise ValueError(f"threshold_scale must be > 0, got {threshold_scale}")
    if diameter is not None and diameter <= 0:
        raise ValueError(f"diameter must be > 0 pixels, got {diameter}")
    data = as_float32(stack)
    device_path = _FORCE_DEVICE_PATH or memory_type_of(data) == CUPY
    planes = [
        _segment_plane(data[i], diameter, threshold, threshold_scale, split_touching, min_area, max_area, device_path)
        for i in range(data.shape[0])
    ]
    if device_path:
        xp, _ = modules_for(data)
        labels = xp.stack(planes).astype(xp.int32) if planes else xp.zeros(data.shape, dtype=xp.int32)
    else:
        labels = np.stack(planes).astype(np.int32) if planes else np.zeros(data.shape, dtype=np.int32)
    return to_memory(labels, memory_type_of(stack))


def count_objects(labels: Any) -> int:
    """Number of objects in a label image or stack: distinct non-zero labels, summed over planes.

    Planes are counted separately because :func:`segment_nuclei` numbers each plane from 1.
    """
    xp, _ = modules_for(labels)
    if labels.ndim == 2:
        labels = labels[None]
    total = 0
    for plane in labels:
        values = xp.unique(plane)
        total += int((values != 0).sum())
    return total
