"""The execution server and its client: screens submitted over the network run next to the data as one
Snakemake process each, with numbered, durable events and cancellation of one run."""
