"""Run events written where they happen (the Snakemake logger plugin, the chunk jobs) and read by the
execution server: JSON lines in the run's folder, one file per writing process."""
