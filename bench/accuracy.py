"""Benchmark: nuclei segmentation accuracy against annotations, before (a baseline revision) and after.

Data:
* real annotated images in tests/data/nuclei/ (see its README: sources, licences, which image was used for
  tuning and which is held out);
* the real DSB 2018 stage 1 fluorescence images (541, split by id into a tuning and a held-out half; see
  openhcs_rules_testkit/dsb2018.py): all of them from a local stage1_train folder given as ``--dsb-folder``, else
  the 77 kept in tests/data/nuclei/dsb2018_stage1/. Per half: mean and median F1 over images, pooled count error
  (all objects / all annotated nuclei - 1), median per-image |count error|, mean IoU, error types summed.
  ``count_error_real`` and ``f1_iou50_real`` in the JSON line are the held-out half's pooled count error and mean
  F1 (the single held-out image test256 keeps its own keys, ``..._test256``);
* realistic synthetic fields (openhcs_rules/demo/realistic_nuclei.py), ``--fields`` seeds of 512x512;
* empty fields (no nuclei: gradient, bright well-edge arc, hot pixels, noise), ``--empty`` seeds, and the
  same fields without the arc (noise + gradient + hot pixels; background subtraction clips half of their
  pixels to 0);
* time per 2048x2048 site: one synthetic 2048x2048 field, segmentation only, ``--repeats`` times.

Every image goes through what the default pipeline (config/pipelines/nuclei_count.py) does to a single
plane: subtract_background (radius 50), denoise (gaussian 0.5), segment_nuclei (defaults). Flat-field
correction is left out: it needs many images of a plate, and these are single images.

Small nuclei: the tuning image block-averaged 2x and 3x (nuclei ~12 and ~8 px wide; labels sampled at the
block centres) and ``--fields`` small synthetic fields (256x256, nuclei 7-11 px, faint cytoplasm haze, no arc).

Metrics per image: count error (objects - true) / true; F1 at IoU 0.5 (a predicted and a true object
match when their IoU > 0.5, which makes the matching one-to-one); mean IoU (over true objects, each with
its best-overlapping predicted object, 0 when missed); foreground area ratio (predicted / true pixels).
For empty fields: objects per field. Error types (:func:`error_types`), to show where the count and F1
errors come from: merges / splits / misses / false positives.

Well-edge arcs (measured while trying to merge the arc's pieces): the watershed cut a bright well-edge arc
into 4-8 pieces, each as large as a "typical nucleus" (its width sets the estimated diameter). Pairwise
merging does not separate them from touching nuclei: on the tuning image 11 of 55 pairs of touching
(different) nuclei show neither an intensity valley (boundary >= 0.85 of the lower piece's peak) nor a neck,
while ripple along the arc gives some arc boundaries a valley of 0.72-0.76; per-seed Hessian ratios overlap
(arc seeds 0.07-0.21, clump seeds 0.05-0.87), and so does the edge sharpness. What separates is a test on
the whole component before the split (segmentation module docstring, step 5b): the highest Hessian
eigenvalue ratio over its seeds (does any seed sit on a blob?) is 0.11-0.33 on 44 arcs (empty fields 0-39
at 512x512, 0-3 at 1024x1024) and 0.43-0.96 on 145 clumps of >= 3 nucleus areas (tuning image, synthetic
fields 0-15); such components that are also ridge-like on >= 80% of their core (arcs 0.91-1.00; clumps
overlap, up to 1.0) and touch the field's edge are dropped.

Baseline: segment_nuclei as of git revision ``--baseline`` (default HEAD, the committed revision before an
uncommitted change), loaded from ``git show`` into a module of its own. Ratios are after / before (time) and the
difference after - before (accuracy). Medians and spreads (min..max) over seeds / repeats.

Run: python bench/accuracy.py [--fields 8] [--empty 8] [--repeats 3] [--figures DIR] [--baseline REV]
     [--dsb-folder STAGE1_TRAIN]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from _paths import REPO  # noqa: E402

from openhcs_rules.demo.realistic_nuclei import empty_field, synthesize_field  # noqa: E402
from openhcs_rules.functions.segmentation import segment_nuclei  # noqa: E402
from openhcs_rules_testkit.accuracy import error_types, match, prepare_for_segmentation  # noqa: E402
from openhcs_rules_testkit.dsb2018 import AnnotatedImage, folder_images, sample_images  # noqa: E402

DATA = REPO / "tests" / "data" / "nuclei"
#: (file stem, role): the tuning image was looked at while choosing constants; the held-out one was not.
REAL_IMAGES = (("dsb2018_stardist_img2d", "tuning"), ("dsb2018_stardist_test256", "held-out"))
#: the committed segmenter (the revision before an uncommitted change); older revisions import modules that
#: have since moved and are reported as unavailable
DEFAULT_BASELINE = "HEAD"


def load_baseline(revision: str) -> Callable[..., Any] | None:
    """segment_nuclei of ``revision`` (git show into a temporary module); None when git cannot."""
    try:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{revision}:openhcs_rules/functions/segmentation.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "segmentation_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("segmentation_baseline", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError:
        return None
    return module.segment_nuclei


def pipeline(segment: Callable[..., Any], image: np.ndarray) -> np.ndarray:
    """The default pipeline's steps for one plane (flat field aside): background, denoise, segment."""
    return np.asarray(segment(prepare_for_segmentation(image)))[0]


def spread(values: list[float]) -> str:
    return f"{np.median(values):+.3f} ({min(values):+.3f}..{max(values):+.3f})"


def row_figures(score: dict[str, float], truth: np.ndarray, labels: np.ndarray) -> dict[str, str]:
    """The table's figures for one image: scores and the error types (merges/splits/misses/false positives)."""
    errors = error_types(truth, labels)
    return {
        "objects": f"{score['objects']}",
        "count err": f"{score['count_error']:+.3f}",
        "F1@0.5": f"{score['f1']:.3f}",
        "mean IoU": f"{score['mean_iou']:.3f}",
        "area ratio": f"{score['area_ratio']:.3f}",
        "merge/split/miss/fp": "/".join(str(errors[key]) for key in ("merges", "splits", "misses", "false_pos")),
    }


def synthetic_rows(
    title: str, fields: list[Any], versions: dict[str, Callable[..., Any]]
) -> tuple[list[tuple[str, str, dict[str, str]]], dict[str, dict[str, list[float]]]]:
    """Table rows (median and min..max over fields, error types summed) and the scores per version."""
    scores: dict[str, dict[str, list[float]]] = {name: {} for name in versions}
    for field in fields:
        for name, segment in versions.items():
            lab = pipeline(segment, field.image)
            for key, value in {**match(field.labels, lab), **error_types(field.labels, lab)}.items():
                scores[name].setdefault(key, []).append(float(value))
    rows = []
    for name, score in scores.items():
        rows.append(
            (
                title,
                name,
                {
                    "objects": f"{np.median(score['objects']):.0f}/{np.median(score['true']):.0f}",
                    "count err": spread(score["count_error"]),
                    "F1@0.5": spread(score["f1"]),
                    "mean IoU": spread(score["mean_iou"]),
                    "area ratio": spread(score["area_ratio"]),
                    "merge/split/miss/fp (sums)": "/".join(
                        f"{sum(score[key]):.0f}" for key in ("merges", "splits", "misses", "false_pos")
                    ),
                },
            )
        )
    return rows, scores


def dsb_rows(
    images: list[AnnotatedImage], versions: dict[str, Callable[..., Any]], source: str
) -> tuple[list[tuple[str, str, dict[str, str]]], dict[str, dict[str, float]]]:
    """Table rows per split and version over the DSB 2018 images, and their summary figures by "split/version"."""
    rows: list[tuple[str, str, dict[str, str]]] = []
    summary: dict[str, dict[str, float]] = {}
    for split in ("tuning", "held_out"):
        chosen = [item for item in images if item.split == split]
        if not chosen:
            continue
        for name, segment in versions.items():
            scores, errors = [], {"merges": 0, "splits": 0, "misses": 0, "false_pos": 0}
            for item in chosen:
                labels = pipeline(segment, item.image)
                scores.append(match(item.labels, labels))
                for key, value in error_types(item.labels, labels).items():
                    errors[key] += value
            f1 = np.array([score["f1"] for score in scores])
            count_error = np.array([score["count_error"] for score in scores])
            true, found = sum(score["true"] for score in scores), sum(score["objects"] for score in scores)
            figures = {
                "f1_mean": float(f1.mean()),
                "f1_median": float(np.median(f1)),
                "count_error_pooled": (found - true) / true,
                "abs_count_error_median": float(np.median(np.abs(count_error))),
                "mean_iou": float(np.mean([score["mean_iou"] for score in scores])),
                "images": len(chosen),
            }
            summary[f"{split}/{name}"] = figures
            rows.append(
                (
                    f"real DSB 2018 stage 1 {split} ({source}, {len(chosen)} images, {true} nuclei)",
                    name,
                    {
                        "objects": f"{found}",
                        "count err pooled": f"{figures['count_error_pooled']:+.3f}",
                        "median |count err|": f"{figures['abs_count_error_median']:.3f}",
                        "F1@0.5 mean/median": f"{figures['f1_mean']:.3f}/{figures['f1_median']:.3f}",
                        "mean IoU": f"{figures['mean_iou']:.3f}",
                        "merge/split/miss/fp (sums)": "/".join(str(errors[key]) for key in errors),
                    },
                )
            )
    return rows, summary


def save_figure(path: Path, image: np.ndarray, truth: np.ndarray, panels: dict[str, np.ndarray]) -> None:
    """Image with outlines: truth (green) and each segmentation (magenta), side by side; PNG."""
    from skimage.io import imsave
    from skimage.segmentation import find_boundaries

    low, high = np.percentile(image, [1, 99.7])
    grey = np.clip((image - low) / max(high - low, 1e-6), 0, 1)
    tiles = []
    for labels in [truth, *panels.values()]:
        rgb = np.stack([grey] * 3, axis=-1)
        rgb[find_boundaries(truth, mode="inner")] = (0.0, 1.0, 0.0)
        if labels is not truth:
            rgb[find_boundaries(labels, mode="inner")] = (1.0, 0.0, 1.0)
        tiles.append(rgb)
    imsave(path, (np.concatenate(tiles, axis=1) * 255).astype(np.uint8), check_contrast=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fields", type=int, default=8, help="synthetic 512x512 fields (seeds 0..n-1)")
    parser.add_argument("--empty", type=int, default=8, help="empty fields (seeds 0..n-1)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats of the 2048x2048 site")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision of the baseline segmenter")
    parser.add_argument("--figures", type=Path, default=None, help="folder for before/after PNG overlays")
    parser.add_argument(
        "--dsb-folder", type=Path, default=None, help="DSB 2018 stage1_train folder: score all its fluorescence images"
    )
    args = parser.parse_args()

    versions: dict[str, Callable[..., Any]] = {}
    baseline = load_baseline(args.baseline)
    if baseline is not None:
        versions["before"] = baseline
    else:
        print(f"baseline revision {args.baseline} not available (no git): after only")
    versions["after"] = segment_nuclei
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)

    rows: list[tuple[str, str, dict[str, str]]] = []
    results: dict[str, dict[str, Any]] = {}

    def record(key: str, truth: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """Score ``labels`` against ``truth`` and keep the score under ``key`` for the JSON line."""
        results[key] = match(truth, labels)
        return results[key]

    for stem, role in REAL_IMAGES:
        image = tifffile.imread(DATA / f"{stem}_image.tif").astype(np.float32)
        truth = tifffile.imread(DATA / f"{stem}_labels.tif")
        labels = {name: pipeline(segment, image) for name, segment in versions.items()}
        for name, lab in labels.items():
            score = record(f"{stem}/{name}", truth, lab)
            rows.append((f"real {stem} ({role}, {score['true']} nuclei)", name, row_figures(score, truth, lab)))
        if args.figures:
            save_figure(args.figures / f"{stem}.png", image, truth, labels)
        if role != "tuning":
            continue
        # the tuning image block-averaged 2x and 3x (labels sampled at block centres): nuclei ~12 and ~8 px
        # wide, a proxy for small nuclei that does not look at the held-out image
        for factor in (2, 3):
            height, width = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
            small = image[:height, :width].reshape(height // factor, factor, width // factor, factor).mean((1, 3))
            small_truth = truth[factor // 2 : height : factor, factor // 2 : width : factor]
            for name, segment in versions.items():
                lab = pipeline(segment, small)
                score = record(f"{stem}/{factor}/{name}", small_truth, lab)
                title = f"real {stem} block mean /{factor} ({score['true']} nuclei)"
                rows.append((title, name, row_figures(score, small_truth, lab)))

    if args.dsb_folder is not None:
        dsb_images, dsb_source = list(folder_images(args.dsb_folder)), "whole set"
    else:
        dsb_images, dsb_source = list(sample_images(DATA / "dsb2018_stage1")), "kept sample"
    table, dsb = dsb_rows(dsb_images, versions, dsb_source)
    rows += table

    fields = [synthesize_field(seed) for seed in range(args.fields)]
    if args.figures and fields:
        save_figure(
            args.figures / "synthetic_seed0.png",
            fields[0].image,
            fields[0].labels,
            {name: pipeline(segment, fields[0].image) for name, segment in versions.items()},
        )
    table, synthetic = synthetic_rows(f"synthetic, {args.fields} fields (median, min..max)", fields, versions)
    rows += table
    # small nuclei (7-11 px wide, as at a lower magnification) with faint cytoplasm haze, no well-edge arc:
    # 256x256 fields at scale 0.8 (the generator scales the nuclei with the field's side too)
    small_fields = [
        synthesize_field(seed, shape=(256, 256), scale=0.8, haze=0.15, arc=False) for seed in range(args.fields)
    ]
    table, small_synthetic = synthetic_rows(
        f"small synthetic 7-11 px + haze, {args.fields} x 256^2 (median)", small_fields, versions
    )
    rows += table

    empty_objects: dict[str, list[int]] = {name: [] for name in versions}
    for seed in range(args.empty):
        field = empty_field(seed)
        labels = {name: pipeline(segment, field.image) for name, segment in versions.items()}
        for name, lab in labels.items():
            empty_objects[name].append(int(np.unique(lab[lab > 0]).size))
        if args.figures and seed == 0:
            save_figure(args.figures / "empty_seed0.png", field.image, field.labels, labels)
    for name, counts in empty_objects.items():
        rows.append(
            (
                f"empty fields, {args.empty} (objects per field)",
                name,
                {"objects": f"median {np.median(counts):.0f}, max {max(counts)}", "per field": str(counts)},
            )
        )

    noise_objects: dict[str, list[int]] = {name: [] for name in versions}
    for seed in range(args.empty):
        image = empty_field(seed, arc_strength=0.0).image
        for name, segment in versions.items():
            lab = pipeline(segment, image)
            noise_objects[name].append(int(np.unique(lab[lab > 0]).size))
    for name, counts in noise_objects.items():
        rows.append(
            (
                f"noise+gradient fields, {args.empty} (objects per field)",
                name,
                {"objects": f"median {np.median(counts):.0f}, max {max(counts)}", "per field": str(counts)},
            )
        )

    # a 2048x2048 camera at ~20x: the same nuclei (24 px) as the 512x512 fields, 16x as many
    site = synthesize_field(0, shape=(2048, 2048), diameter=24.0)
    stack = prepare_for_segmentation(site.image)
    times: dict[str, list[float]] = {}
    for name, segment in versions.items():
        segment(stack)  # warm-up (imports, caches)
        times[name] = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            segment(stack)
            times[name].append(time.perf_counter() - start)
        score = match(site.labels, np.asarray(segment(stack))[0])
        rows.append(
            (
                f"2048x2048 site, segment_nuclei s (median, min..max of {args.repeats})",
                name,
                {
                    "seconds": f"{np.median(times[name]):.3f} ({min(times[name]):.3f}..{max(times[name]):.3f})",
                    "F1@0.5": f"{score['f1']:.3f}",
                    "count err": f"{score['count_error']:+.3f}",
                },
            )
        )

    print(f"{'data':62} {'version':7} figures")
    for data, name, figures in rows:
        print(f"{data:62} {name:7} " + "; ".join(f"{k} {v}" for k, v in figures.items()))
    if "before" in times:
        print(
            f"time ratio after/before per 2048x2048 site: {np.median(times['after']) / np.median(times['before']):.2f}"
        )

    held = results[f"{REAL_IMAGES[1][0]}/after"]
    tuned = results[f"{REAL_IMAGES[0][0]}/after"]
    before_held = results.get(f"{REAL_IMAGES[1][0]}/before")
    held_dsb, tuning_dsb = dsb["held_out/after"], dsb["tuning/after"]
    summary = {
        "count_error_real": round(held_dsb["count_error_pooled"], 4),
        "f1_iou50_real": round(held_dsb["f1_mean"], 4),
        "f1_iou50_real_median": round(held_dsb["f1_median"], 4),
        "abs_count_error_real_median": round(held_dsb["abs_count_error_median"], 4),
        "mean_iou_real": round(held_dsb["mean_iou"], 4),
        "real_images_held_out": held_dsb["images"],
        "real_images_source": dsb_source,
        "count_error_real_dsb_tuning": round(tuning_dsb["count_error_pooled"], 4),
        "f1_iou50_real_dsb_tuning": round(tuning_dsb["f1_mean"], 4),
        "count_error_real_test256": round(held["count_error"], 4),
        "f1_iou50_real_test256": round(held["f1"], 4),
        "mean_iou_real_test256": round(held["mean_iou"], 4),
        "count_error_real_tuning": round(tuned["count_error"], 4),
        "f1_iou50_real_tuning": round(tuned["f1"], 4),
        "mean_iou_real_tuning": round(tuned["mean_iou"], 4),
        "count_error_synthetic": round(float(np.median(synthetic["after"]["count_error"])), 4),
        "f1_iou50_synthetic": round(float(np.median(synthetic["after"]["f1"])), 4),
        "count_error_synthetic_small": round(float(np.median(small_synthetic["after"]["count_error"])), 4),
        "f1_iou50_synthetic_small": round(float(np.median(small_synthetic["after"]["f1"])), 4),
        "f1_iou50_real_tuning_block3": round(results[f"{REAL_IMAGES[0][0]}/3/after"]["f1"], 4),
        "count_error_real_tuning_block3": round(results[f"{REAL_IMAGES[0][0]}/3/after"]["count_error"], 4),
        "empty_field_objects": int(max(empty_objects["after"])) if empty_objects["after"] else None,
        "empty_field_objects_median": float(np.median(empty_objects["after"])) if empty_objects["after"] else None,
        "noise_field_objects": int(max(noise_objects["after"])) if noise_objects["after"] else None,
        "site_s_2048": round(float(np.median(times["after"])), 4),
    }
    if before_held is not None:
        summary.update(
            {
                "count_error_real_before": round(dsb["held_out/before"]["count_error_pooled"], 4),
                "f1_iou50_real_before": round(dsb["held_out/before"]["f1_mean"], 4),
                "mean_iou_real_before": round(dsb["held_out/before"]["mean_iou"], 4),
                "count_error_real_test256_before": round(before_held["count_error"], 4),
                "f1_iou50_real_test256_before": round(before_held["f1"], 4),
                "count_error_synthetic_before": round(float(np.median(synthetic["before"]["count_error"])), 4),
                "noise_field_objects_before": int(max(noise_objects["before"])) if noise_objects["before"] else None,
                "empty_field_objects_before": int(max(empty_objects["before"])) if empty_objects["before"] else None,
                "site_s_2048_before": round(float(np.median(times["before"])), 4),
                "site_time_ratio_after_before": round(float(np.median(times["after"]) / np.median(times["before"])), 3),
            }
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
