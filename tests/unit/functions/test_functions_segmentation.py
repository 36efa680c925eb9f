"""segment_nuclei: unit cases with obvious answers, a synthetic plate with known counts, real DAPI images.

Accuracy numbers asserted here were measured first and the tolerances set honestly around them (see the
comments at each assertion).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
from skimage.filters import threshold_otsu

from openhcs_rules.demo.ground_truth import read_ground_truth
from openhcs_rules.demo.synthetic import generate_imagexpress_plate, image_path, synthesize_site
from openhcs_rules.functions.background import subtract_background
from openhcs_rules.functions.illumination import estimate_illumination, flatfield_correct
from openhcs_rules.functions.segmentation import count_objects, estimate_diameter, otsu_threshold, segment_nuclei
from openhcs_rules_testkit.paths import SHARED_FIXTURES

# the folder itself, not conftest's fixtures_dir (which skips): the marks below need it at import, and a user's
# clone has no ../shared/fixtures
FIXTURES = SHARED_FIXTURES
EXPORTED = FIXTURES / "imagexpress_exported"
needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason="real-image fixtures ../shared/fixtures are not present (a user's clone has none)"
)


def disc_image(shape: tuple[int, int], discs: list[tuple[float, float, float]], level: float = 1000.0) -> np.ndarray:
    """Soft-edged bright discs (y, x, radius) on a noisy dark background, as a (1, y, x) stack."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    image = np.zeros(shape, dtype=np.float32)
    for y, x, radius in discs:
        distance = np.hypot(yy - y, xx - x)
        image = np.maximum(image, level / (1.0 + np.exp(np.clip((distance - radius) / 0.7, -50, 50))))
    noise = np.random.default_rng(0).normal(0.0, 10.0, shape)
    return (image + 100.0 + noise).astype(np.float32)[None]


def label_at(labels: np.ndarray, points: Sequence[tuple[float, float]]) -> list[int]:
    return [int(labels[int(round(y)), int(round(x))]) for y, x in points]


# --------------------------------------------------------------------------------------------- unit cases
def test_otsu_matches_scikit_image() -> None:
    rng = np.random.default_rng(0)
    image = np.concatenate([rng.normal(100, 10, 5000), rng.normal(600, 50, 1000)]).reshape(100, 60)
    ours = otsu_threshold(image)
    bin_width = (image.max() - image.min()) / 1024
    assert ours == pytest.approx(threshold_otsu(image, nbins=1024), abs=bin_width)
    assert 100 < ours < 600  # between the two modes


def test_separate_nuclei_are_labelled_one_each() -> None:
    centres = [(20.0, 20.0), (20.0, 70.0), (70.0, 45.0)]
    labels = segment_nuclei(disc_image((96, 96), [(y, x, 8.0) for y, x in centres]))
    assert labels.shape == (1, 96, 96) and labels.dtype == np.int32
    assert sorted(label_at(labels[0], centres)) == [1, 2, 3]
    assert count_objects(labels) == 3


def test_touching_pair_is_split_and_an_elongated_nucleus_is_not() -> None:
    # two discs of radius 10 whose centres are 17 px apart (15% overlap): an obvious waist
    pair = [(40.0, 30.0), (40.0, 47.0)]
    # one ellipse twice as long as wide (semi-axes 18 x 9): no waist, must stay one object
    yy, xx = np.mgrid[0:80, 0:160].astype(np.float32)
    rho = np.hypot((xx - 120) / 18.0, (yy - 40) / 9.0)
    image = disc_image((80, 160), [(y, x, 10.0) for y, x in pair])
    image[0] = np.maximum(image[0], 100 + 1000.0 / (1.0 + np.exp(np.clip((rho - 1.0) * 9.0 / 0.7, -50, 50))))
    labels = segment_nuclei(image)[0]
    first, second = label_at(labels, pair)
    assert first and second and first != second
    ellipse_labels = set(np.unique(labels[rho <= 0.9])) - {0}
    assert len(ellipse_labels) == 1
    assert count_objects(labels) == 3


def test_bright_band_crossing_the_field_is_dropped_and_a_chain_of_touching_discs_kept() -> None:
    # a well edge: a soft band (Gaussian profile, sigma 6 px) along a circle centred outside the field, crossing
    # it from edge to edge, next to a straight chain of five touching discs (radius 10, centres 17 px apart);
    # without the band test the band came out as 3 "nuclei"
    shape = (192, 192)
    chain = [(130.0, 40.0 + 17.0 * k) for k in range(5)]
    image = disc_image(shape, [(y, x, 10.0) for y, x in chain])
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    distance = np.hypot(yy + 150.0, xx + 150.0) - 260.0
    image[0] += 900.0 * np.exp(-0.5 * (distance / 6.0) ** 2)
    labels = segment_nuclei(image)[0]
    assert not labels[np.abs(distance) < 2.0].any()  # nothing left on the band's crest
    assert sorted(label_at(labels, chain)) == [1, 2, 3, 4, 5]
    assert count_objects(labels) == 5


def test_split_touching_false_keeps_the_clump() -> None:
    pair = [(40.0, 30.0), (40.0, 47.0)]
    labels = segment_nuclei(disc_image((80, 80), [(y, x, 10.0) for y, x in pair]), split_touching=False)
    assert count_objects(labels) == 1


def test_area_filters_and_fixed_threshold() -> None:
    image = disc_image((100, 100), [(25.0, 25.0, 10.0), (70.0, 70.0, 3.0)])
    assert count_objects(segment_nuclei(image, diameter=40)) == 1  # r=3 is < 1/16 of a d=40 nucleus' area
    assert count_objects(segment_nuclei(image, diameter=20, min_area=20)) == 2
    assert count_objects(segment_nuclei(image, diameter=20, min_area=20, max_area=100)) == 1
    assert count_objects(segment_nuclei(image, threshold=600.0, min_area=1)) == 2
    assert count_objects(segment_nuclei(image, threshold=600.0, threshold_scale=2.0, min_area=1)) == 0


def test_empty_and_constant_planes_have_no_objects() -> None:
    noise = np.random.default_rng(1).normal(100.0, 10.0, (1, 64, 64)).astype(np.float32)
    assert count_objects(segment_nuclei(noise)) == 0  # Otsu alone would split pure noise in two
    assert count_objects(segment_nuclei(np.full((1, 32, 32), 5.0))) == 0


def test_clipped_noise_and_hot_pixels_have_no_objects() -> None:
    # background subtraction clips half of a noise plane to 0: the lower half of the smoothed background is
    # then ~half as wide as its upper tail, and a noise estimate from the lower side let noise bumps through
    rng = np.random.default_rng(3)
    plane = np.clip(rng.normal(0.0, 6.0, (256, 256)), 0.0, None)
    plane[[40, 200], [60, 180]] += 240.0  # hot pixels, blurred by the optics below: point sources
    stack = ndi.gaussian_filter(plane, 0.5).astype(np.float32)[None]
    assert count_objects(segment_nuclei(stack)) == 0
    # ... while one real nucleus in such a field is found
    yy, xx = np.mgrid[0:256, 0:256]
    nucleus = 60.0 / (1.0 + np.exp((np.hypot(yy - 128, xx - 100) - 10.0) / 0.7))
    assert count_objects(segment_nuclei(plane + nucleus.astype(np.float32)[None])) == 1


def test_planes_are_labelled_independently() -> None:
    stack = np.concatenate(
        [disc_image((64, 64), [(20.0, 20.0, 8.0)]), disc_image((64, 64), [(20.0, 20.0, 8.0), (45.0, 45.0, 8.0)])]
    )
    labels = segment_nuclei(stack)
    assert labels[0].max() == 1 and labels[1].max() == 2
    assert count_objects(labels) == 3


def test_diameter_estimate_ignores_clumping() -> None:
    yy, xx = np.mgrid[0:200, 0:200]
    discs = [(40, 40), (40, 140), (140, 40)]
    mask = np.zeros((200, 200), dtype=bool)
    for y, x in discs:
        mask |= np.hypot(yy - y, xx - x) <= 10
    # a clump of three touching nuclei is still one nucleus thick
    for y, x in ((140, 130), (140, 148), (156, 139)):
        mask |= np.hypot(yy - y, xx - x) <= 10
    assert estimate_diameter(mask) == pytest.approx(20.0, abs=2.0)
    assert estimate_diameter(np.zeros((8, 8), dtype=bool)) is None


def test_invalid_arguments() -> None:
    image = disc_image((32, 32), [(16.0, 16.0, 5.0)])
    with pytest.raises(ValueError, match="'otsu' or a number"):
        segment_nuclei(image, threshold="li")
    with pytest.raises(ValueError, match="threshold_scale"):
        segment_nuclei(image, threshold_scale=0)
    with pytest.raises(ValueError, match="diameter"):
        segment_nuclei(image, diameter=-3)
    with pytest.raises(ValueError, match="3D"):
        segment_nuclei(image[0])


def test_numpy_path_is_deterministic() -> None:
    image = synthesize_site("B02", 1, shape=(256, 256), channels=1, z_planes=1).images[0].astype(np.float32)
    first = segment_nuclei(image)
    np.testing.assert_array_equal(first, segment_nuclei(image.copy()))


# ---------------------------------------------------------------------------------------- synthetic plate
@pytest.fixture(scope="module")
def demo_plate(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return generate_imagexpress_plate(tmp_path_factory.mktemp("plate") / "demo_plate")


def pipeline_counts(info: dict) -> dict[tuple[str, int], int]:
    """What a pipeline does: flat-field from every in-focus DAPI image of the plate, background, segment."""
    paths = {
        (well, site): image_path(info["plate_dir"], info["plate_name"], well, site, 1, info["in_focus_z"], 1, 3)
        for well in info["wells"]
        for site in range(1, info["sites"] + 1)
    }
    planes = {key: tifffile.imread(path) for key, path in paths.items()}
    illumination = estimate_illumination(planes.values())
    counts = {}
    for key, plane in planes.items():
        corrected = subtract_background(flatfield_correct(plane[None], illumination), radius=50)
        counts[key] = count_objects(segment_nuclei(corrected))
    return counts


def test_counts_on_the_synthetic_plate(demo_plate: dict) -> None:
    truth = read_ground_truth(demo_plate["plate_dir"])
    counts = pipeline_counts(demo_plate)
    errors = {key: counts[key] - truth[key[0]][key[1]] for key in counts}
    # measured (seed 0): errors 0, -2, 0, -2, +1, +1, 0, -1 on 59-75 nuclei per site (<= 3%); seeds 1 and 2
    # gave at most 3 per site (4.5%) and -2.2% on the plate total (misses are mostly touching pairs left
    # whole). Tolerance per site: max(2, 6% of the true count); plate total: 3%.
    for (well, site), error in errors.items():
        true = truth[well][site]
        assert abs(error) <= max(2, round(0.06 * true)), f"{well} s{site}: {counts[(well, site)]} vs {true}"
    total_true = sum(c for per_site in truth.values() for c in per_site.values())
    assert abs(sum(errors.values())) <= 0.03 * total_true


def split_statistics(shape: tuple[int, int], sites: list[tuple[str, int]]) -> tuple[int, int, int, int]:
    """(touching pairs, pairs split, true nuclei, nuclei cut in two) after the pipeline steps."""
    data = [synthesize_site(well, site, 1, shape, 0, channels=1, z_planes=3) for well, site in sites]
    illumination = estimate_illumination(d.images[0, 1] for d in data)
    pairs = split = nuclei = cut = 0
    for d in data:
        image = subtract_background(flatfield_correct(d.images[0, 1][None], illumination), radius=50 * shape[0] / 512)
        labels = segment_nuclei(image)[0]
        truth = d.labels
        touching = set()
        for a, b in ((truth[:, :-1], truth[:, 1:]), (truth[:-1, :], truth[1:, :])):
            border = (a != b) & (a > 0) & (b > 0)
            touching |= {(int(min(p, q)), int(max(p, q))) for p, q in zip(a[border], b[border], strict=True)}
        centre_label = [0] + label_at(labels, [(n.y, n.x) for n in d.nuclei])
        pairs += len(touching)
        split += sum(
            1 for p, q in touching if centre_label[p] and centre_label[q] and centre_label[p] != centre_label[q]
        )
        # a nucleus is cut in two when two predicted objects each cover >= 20% of it
        inside = (truth > 0) & (labels > 0)
        overlap = Counter(zip(truth[inside].tolist(), labels[inside].tolist(), strict=True))
        area = np.bincount(truth.ravel())
        big_parts = Counter(t for (t, _), n in overlap.items() if n >= 0.2 * area[t])
        nuclei += d.count
        cut += sum(1 for parts in big_parts.values() if parts > 1)
    return pairs, split, nuclei, cut


def test_touching_nuclei_are_split_and_single_nuclei_are_not_cut() -> None:
    sites = [(well, site) for well in ("B02", "B03", "C02", "C03") for site in (1, 2)]
    pairs, split, nuclei, cut = split_statistics((512, 512), sites)
    # measured: 96 of 107 touching pairs split (90%), 10 of 534 nuclei cut in two (1.9%)
    assert pairs > 80
    assert split >= 0.85 * pairs
    assert cut <= 0.03 * nuclei


def test_large_images_use_the_working_resolution_path() -> None:
    # at 1024 px the nuclei are ~32 px wide, so declumping runs on a 2x block-averaged copy
    pairs, split, nuclei, cut = split_statistics((1024, 1024), [("B02", 1), ("C03", 2)])
    # measured: 27 of 27 pairs split, 1 of 130 nuclei cut (all 8 sites at 1024 px: 99 of 107, 3 of 534)
    assert split >= 0.8 * pairs
    assert cut <= 0.03 * nuclei


# ------------------------------------------------------------------------------------- real DAPI images
# Counted by eye on renderings zoomed 8x with a 16-px grid (contrast-stretched and gamma-brightened copies
# to find dim nuclei), listing each nucleus' centre (row, column).
#
# 9987_Plate_3434 B02 s1 w1 ZStep_1 (256x256, 40x, 8x8 binning): 15 nuclei, 14 inside the image and one
# touching the left border (170, 5). Eleven form one curved cluster with a dim DAPI haze around it; the
# bright square one at (116, 94) (probably mitotic) touches (122, 104). A 3-px hot speck at (168, 226) and
# a faint fibre at (115, 73) are not nuclei.
EYE_CENTRES_3434 = [
    (70, 121), (75, 131), (73, 147), (82, 158), (84, 109), (101, 109), (116, 94), (122, 104),
    (117, 117), (113, 131), (129, 133), (135, 64), (153, 72), (159, 11), (170, 5),
]  # fmt: skip
# 9987_Plate_3420 B02 (256x256): 30 nuclei = 16 in the left cluster, 10 in the middle cluster, a touching
# pair on the right and two nuclei cut by the bottom-right border (the one at (219, 254) is only a faint
# rim). Three touching pairs are ambiguous even by eye: a peanut-shaped object (117, 65)+(124, 68), a
# diagonal double-lobed object (101, 131)+(107, 137), and (93, 121)+(92, 133) separated by a faint seam;
# each could be one large nucleus. Count: 30, plausible range 27-30.
EYE_CENTRES_3420 = [
    (83, 11), (84, 24), (92, 30), (95, 5), (101, 20), (108, 38), (118, 50), (117, 65), (124, 68),
    (115, 77), (120, 93), (126, 28), (133, 10), (143, 10), (134, 50), (145, 38), (79, 129), (90, 108),
    (93, 121), (92, 133), (85, 145), (99, 145), (101, 131), (107, 137), (110, 151), (114, 113),
    (124, 234), (131, 242), (219, 254), (232, 254),
]  # fmt: skip
AMBIGUOUS_3420 = {(117, 65), (124, 68), (101, 131), (107, 137), (93, 121), (92, 133), (219, 254)}


def real_labels(relative: str) -> np.ndarray:
    return segment_nuclei(tifffile.imread(EXPORTED / relative)[None])[0]


@needs_fixtures
def test_real_dapi_3434_matches_the_eye_count_one_to_one() -> None:
    labels = real_labels("9987_Plate_3434/TimePoint_1/ZStep_1/9987_B02_s1_w1.TIF")
    hits = label_at(labels, EYE_CENTRES_3434)
    # measured: 15 objects, each eye-counted nucleus in its own object, no object without a nucleus
    assert abs(count_objects(labels) - len(EYE_CENTRES_3434)) <= 1
    assert 0 not in hits
    assert len(set(hits)) == len(hits), "two nuclei counted by eye share one object (under-split)"
    assert set(np.unique(labels).tolist()) - {0} <= set(hits), "an object that is no nucleus (over-split)"


@needs_fixtures
def test_real_dapi_3420_clustered_nuclei() -> None:
    labels = real_labels("9987_Plate_3420/TimePoint_1/9987_B02.TIF")
    count = count_objects(labels)
    # measured: 27 objects vs 30 by eye; the three ambiguous pairs' peanut and diagonal objects stay
    # whole and the faint border rim is missed. Tolerance: eye count - 4 .. eye count + 2.
    assert len(EYE_CENTRES_3420) - 4 <= count <= len(EYE_CENTRES_3420) + 2
    confident = [c for c in EYE_CENTRES_3420 if c not in AMBIGUOUS_3420]
    hits = label_at(labels, confident)
    assert 0 not in hits
    assert len(set(hits)) == len(hits), "two clearly separate nuclei share one object"
    # every object holds at least one eye-counted nucleus: nothing is split off a nucleus
    all_hits = set(label_at(labels, EYE_CENTRES_3420))
    assert set(np.unique(labels).tolist()) - {0} <= all_hits


@needs_fixtures
def test_real_split_lines_run_between_nuclei() -> None:
    """Where two touching nuclei are split, the boundary runs through the dim seam, not a nucleus."""
    image = tifffile.imread(EXPORTED / "9987_Plate_3434/TimePoint_1/ZStep_1/9987_B02_s1_w1.TIF").astype(float)
    labels = real_labels("9987_Plate_3434/TimePoint_1/ZStep_1/9987_B02_s1_w1.TIF")
    smooth = ndi.gaussian_filter(image, 1.0)
    boundary = np.zeros(labels.shape, dtype=bool)
    boundary[:, :-1] |= (labels[:, :-1] != labels[:, 1:]) & (labels[:, :-1] > 0) & (labels[:, 1:] > 0)
    boundary[:-1, :] |= (labels[:-1, :] != labels[1:, :]) & (labels[:-1, :] > 0) & (labels[1:, :] > 0)
    assert boundary.sum() > 10  # the cluster has split lines
    cores = [smooth[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2].mean() for y, x in EYE_CENTRES_3434]
    # split lines are dimmer than the centres of the nuclei they separate
    assert np.median(smooth[boundary]) < 0.85 * np.median(cores)
