"""openhcs-rules: high-content screening plates processed well by well through Snakemake."""

__version__ = "0.1.0"
