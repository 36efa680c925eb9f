"""Live viewers: frame senders (shared memory on one host, compressed inline across hosts), the pipeline hook,
viewer start-up, and the napari and Fiji viewer processes."""
