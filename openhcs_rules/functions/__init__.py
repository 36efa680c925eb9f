"""The processing library: flat-field, background, projections, denoise, segmentation, measurements (numpy and cupy)."""
