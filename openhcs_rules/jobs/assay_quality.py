"""Assay quality from a plate's controls: Z'-factor and SSMD, and wells normalised to the negative controls.

The plate map (:mod:`openhcs_rules.plate.platemap`) says which wells are positive and negative controls; a
chosen wells-table feature (``controls.feature``, default ``Nuclei_Count_PerSite``) is compared between them,
per timepoint (a time-lapse plate's controls drift apart or together over time, and that is the point):

- **Z'-factor** (Zhang, Chung & Oldenburg 1999): ``1 - 3 (sd_p + sd_n) / |mean_p - mean_n|``. Above 0.5 an
  excellent assay, 0 to 0.5 usable, below 0 the controls overlap.
- **SSMD** (Zhang 2007), strictly standardised mean difference: ``(mean_p - mean_n) / sqrt(sd_p^2 + sd_n^2)``,
  signed (negative when the positive control lowers the feature, as a cytotoxic one lowers the count).
- **Percent of negative control** for every well: ``100 * value / mean_n``, the usual per-plate
  normalisation of a screen's readout (``<feature>_PercentOfNegative`` in the wells table).

Sample standard deviations (``ddof=1``); fewer than two wells of either control, or controls whose means
are equal, give no figure (empty), with the reason in ``note``: never a number computed from too little.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from openhcs_rules.plate.platemap import PlateMap

#: the wells-table feature compared between controls unless the config names another
DEFAULT_FEATURE = "Nuclei_Count_PerSite"
#: the suffix of the normalised column
PERCENT_SUFFIX = "_PercentOfNegative"


def z_prime(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """Z'-factor of two control groups; None with fewer than 2 values in either, or equal means."""
    if len(positive) < 2 or len(negative) < 2:
        return None
    spread = abs(float(np.mean(positive)) - float(np.mean(negative)))
    if spread == 0:
        return None
    return 1.0 - 3.0 * (float(np.std(positive, ddof=1)) + float(np.std(negative, ddof=1))) / spread


def ssmd(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """SSMD of two control groups; None with fewer than 2 values in either, or no variance at all."""
    if len(positive) < 2 or len(negative) < 2:
        return None
    variance = float(np.var(positive, ddof=1)) + float(np.var(negative, ddof=1))
    if variance == 0:
        return None
    return (float(np.mean(positive)) - float(np.mean(negative))) / math.sqrt(variance)


def _numbers(rows: Sequence[Mapping[str, Any]], feature: str) -> list[float]:
    values = [row.get(feature) for row in rows]
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]


def assay_quality(
    rows: Sequence[Mapping[str, Any]], platemap: PlateMap | None, feature: str = DEFAULT_FEATURE
) -> list[dict[str, Any]]:
    """One row per timepoint: the controls' counts, means and SDs of ``feature``, Z' and SSMD.

    ``rows`` are wells-table rows (``Metadata_Well``, ``Metadata_Timepoint``, the feature); without a plate
    map, or without control wells, every timepoint gets a row saying so (the report shows why there is no Z').
    """
    timepoints = sorted({int(row["Metadata_Timepoint"]) for row in rows})
    result = []
    for t in timepoints:
        at_t = [row for row in rows if int(row["Metadata_Timepoint"]) == t]
        entry: dict[str, Any] = {"Metadata_Plate": at_t[0]["Metadata_Plate"], "Metadata_Timepoint": t}
        entry["feature"] = feature
        groups: dict[str, list[float]] = {}
        for role in ("positive", "negative"):
            chosen = [
                row for row in at_t if platemap is not None and platemap.control_role(row["Metadata_Well"]) == role
            ]
            values = _numbers(chosen, feature)
            groups[role] = values
            entry[f"n_{role}"] = len(values)
            entry[f"mean_{role}"] = float(np.mean(values)) if values else None
            entry[f"sd_{role}"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        entry["z_prime"] = z_prime(groups["positive"], groups["negative"])
        entry["ssmd"] = ssmd(groups["positive"], groups["negative"])
        entry["note"] = _note(platemap, groups, entry, feature, at_t)
        result.append(entry)
    return result


def _note(
    platemap: PlateMap | None,
    groups: Mapping[str, list[float]],
    entry: Mapping[str, Any],
    feature: str,
    rows: Sequence[Mapping[str, Any]],
) -> str:
    if platemap is None:
        return "no plate map: set plates.<plate>.platemap to a CSV with a control column"
    if rows and feature not in rows[0]:
        return f"the wells table has no column {feature}"
    short = [role for role in ("positive", "negative") if len(groups[role]) < 2]
    if short:
        return f"fewer than 2 {' and '.join(short)} control wells with a value"
    if entry["z_prime"] is None:
        return "the controls have the same mean"
    return ""


def add_percent_of_negative(rows: list[dict[str, Any]], platemap: PlateMap | None, feature: str) -> None:
    """``<feature>_PercentOfNegative`` on every row: 100 x value / the negative controls' mean at that
    timepoint (empty without negative controls, or when their mean is 0)."""
    column = feature + PERCENT_SUFFIX
    timepoints = {int(row["Metadata_Timepoint"]) for row in rows}
    for t in timepoints:
        at_t = [row for row in rows if int(row["Metadata_Timepoint"]) == t]
        negative = [
            row for row in at_t if platemap is not None and platemap.control_role(row["Metadata_Well"]) == "negative"
        ]
        values = _numbers(negative, feature)
        reference = float(np.mean(values)) if values else 0.0
        for row in at_t:
            value = row.get(feature)
            if isinstance(value, int | float) and not isinstance(value, bool) and reference != 0:
                row[column] = 100.0 * float(value) / reference
            else:
                row[column] = None
