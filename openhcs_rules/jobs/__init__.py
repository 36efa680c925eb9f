"""The work of each workflow rule (discover, illumination, process_wells, assemble), callable without Snakemake."""
