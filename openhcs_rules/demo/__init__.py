"""Synthetic demo data: an ImageXpress-style plate with known nuclei counts, for demos, tests and benchmarks."""
