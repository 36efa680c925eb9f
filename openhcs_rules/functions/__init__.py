"""The processing library: flat-field, background, projections, denoise, segmentation, measurements (numpy and cupy)."""

from openhcs_rules.functions.background import estimate_background, subtract_background
from openhcs_rules.functions.denoise import denoise
from openhcs_rules.functions.illumination import estimate_illumination, flatfield_correct
from openhcs_rules.functions.measurement import measure_objects, sanitize_channel_name
from openhcs_rules.functions.projection import project_z
from openhcs_rules.functions.segmentation import count_objects, estimate_diameter, otsu_threshold, segment_nuclei

__all__ = [
    "count_objects",
    "denoise",
    "estimate_background",
    "estimate_diameter",
    "estimate_illumination",
    "flatfield_correct",
    "measure_objects",
    "otsu_threshold",
    "project_z",
    "sanitize_channel_name",
    "segment_nuclei",
    "subtract_background",
]
