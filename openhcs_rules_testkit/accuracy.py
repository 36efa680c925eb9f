"""Object-level scores of a segmentation (label image) against annotated labels.

Used by the accuracy tests (floors) and by ``bench/accuracy.py`` (the before/after table). Metrics
(:func:`match`): count error (objects - true) / true; F1 at IoU 0.5 (a predicted and a true object match when
their IoU > 0.5, which makes the matching one-to-one); mean IoU (over true objects, each with its
best-overlapping predicted object, 0 when missed); foreground area ratio (predicted / true pixels). Error
types (:func:`error_types`), to show where the count and F1 errors come from: merges / splits / misses /
false positives.

The planes they segment come through :func:`prepare_for_segmentation` (what the default pipeline does to one
plane before ``segment_nuclei``), and the demo plate's nuclei through :func:`demo_nuclei_site`, so the accuracy
tests, the fast-path and device-path tests and the benchmark all segment the same input.
"""

from __future__ import annotations

import numpy as np

__all__ = ["demo_nuclei_site", "error_types", "match", "prepare_for_segmentation"]


def prepare_for_segmentation(image: np.ndarray) -> np.ndarray:
    """The default pipeline's steps before segmentation for one plane (flat field aside, it needs a plate):
    background subtraction (radius 50) and denoising (sigma 0.5); a ``(1, y, x)`` float32 stack."""
    from openhcs_rules.functions.background import subtract_background
    from openhcs_rules.functions.denoise import denoise

    stack = subtract_background(np.asarray(image, dtype=np.float32)[None], radius=50)
    return np.asarray(denoise(stack, sigma=0.5))


def demo_nuclei_site(well: str, site: int) -> np.ndarray:
    """The demo plate's nuclei plane of ``well``/``site`` at 1024 px as the pipeline sees it before
    segmentation (flat field, background radius 100): nuclei big enough to be declumped at half resolution and
    redrawn at full resolution. A ``(1, y, x)`` float32 stack."""
    from openhcs_rules.demo.synthetic import synthesize_site
    from openhcs_rules.functions.background import subtract_background
    from openhcs_rules.functions.illumination import flatfield_correct

    data = synthesize_site(well, site, shape=(1024, 1024), channels=1, z_planes=3)
    stack = flatfield_correct(data.images[0], np.ones((1024, 1024), dtype=np.float32))
    return np.asarray(subtract_background(stack[1:2], radius=100))


def _overlaps(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both label images renumbered 1..n (0 = background) and their (n_true + 1, n_pred + 1) pixel overlaps."""
    t = np.unique(truth.ravel(), return_inverse=True)[1].reshape(truth.shape)
    p = np.unique(predicted.ravel(), return_inverse=True)[1].reshape(predicted.shape)
    if not (truth == 0).any():
        t = t + 1
    if not (predicted == 0).any():
        p = p + 1
    n_true, n_pred = int(t.max()), int(p.max())
    inter = np.bincount(t.ravel() * (n_pred + 1) + p.ravel(), minlength=(n_true + 1) * (n_pred + 1))
    return t, p, inter.reshape(n_true + 1, n_pred + 1)


def match(truth: np.ndarray, predicted: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Object-level scores of ``predicted`` labels against ``truth`` labels (see the module docstring)."""
    t, p, inter = _overlaps(truth, predicted)
    n_true, n_pred = inter.shape[0] - 1, inter.shape[1] - 1
    inter = inter.astype(np.float64)
    area_t, area_p = inter.sum(1), inter.sum(0)
    iou = inter[1:, 1:] / np.maximum(area_t[1:, None] + area_p[None, 1:] - inter[1:, 1:], 1.0)
    tp = int((iou > threshold).sum())
    best = iou.max(1) if n_pred else np.zeros(n_true)
    return {
        "true": n_true,
        "objects": n_pred,
        "count_error": (n_pred - n_true) / n_true if n_true else float(n_pred),
        "f1": 2.0 * tp / (n_true + n_pred) if n_true + n_pred else 1.0,
        "mean_iou": float(best.mean()) if n_true else 1.0,
        "area_ratio": float((p > 0).sum() / max((t > 0).sum(), 1)),
    }


def error_types(truth: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    """Where the count and F1 errors come from: merges, splits, misses and false positives.

    A true object is *covered* by the predicted object holding >= half of its pixels, and a predicted object
    *lies on* the true object holding >= half of its pixels (each has at most one). ``merges``: true nuclei
    lost because they are covered by a predicted object that covers another one too (a prediction covering k
    nuclei counts k - 1); ``splits``: extra predicted pieces lying on one true nucleus (k pieces count k - 1);
    ``misses``: true nuclei covered by no predicted object (not detected, or cut into pieces none of which
    holds half of it); ``false_pos``: predicted objects lying on no true nucleus (background, or straddling).
    """
    t, p, inter = _overlaps(truth, predicted)
    n_true, n_pred = inter.shape[0] - 1, inter.shape[1] - 1
    inter = inter[1:, 1:]
    if n_true == 0 or n_pred == 0:
        return {"merges": 0, "splits": 0, "misses": n_true, "false_pos": n_pred}
    area_t, area_p = np.bincount(t.ravel())[1:], np.bincount(p.ravel())[1:]
    cover = np.where(inter.max(1) * 2 >= area_t, inter.argmax(1), -1)  # per true object
    lies = np.where(inter.max(0) * 2 >= area_p, inter.argmax(0), -1)  # per predicted object
    covered = np.bincount(cover[cover >= 0], minlength=n_pred)
    pieces = np.bincount(lies[lies >= 0], minlength=n_true)
    return {
        "merges": int(np.maximum(covered - 1, 0).sum()),
        "splits": int(np.maximum(pieces - 1, 0).sum()),
        "misses": int((cover < 0).sum()),
        "false_pos": int((lies < 0).sum()),
    }
