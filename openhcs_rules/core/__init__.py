"""The bottom layer: utilities every other package may use, importing nothing of ours but ``errors``.

``arrays``: memory types (numpy on the host, cupy on a GPU) and the one place arrays move between them,
used by every processing function. ``files``: atomic writes (temporary name, then ``os.replace``), used
wherever a job writes an output. An import-linter contract (``pyproject.toml``) keeps this package a leaf.
"""
