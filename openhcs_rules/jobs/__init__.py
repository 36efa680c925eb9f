"""The work of each workflow rule (discover, illumination, process_well, assemble), callable without Snakemake."""
