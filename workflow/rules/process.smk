# One job per chunk of wells (config wells_per_job): run the pipeline on each well in turn (GPU where
# available), writing its images, objects and summary under wells/<well>/; the chunk's manifest last.


# The plate's wells/ folder (every well's pixels, objects.csv, summary.json) as one declared output, so that
# Snakemake knows it: --delete-all-output removes it, --summary lists it, --forceall recomputes every well.
# Its own job, not the chunk jobs' outputs: Snakemake deletes a job's outputs before running it, and a rerun
# chunk must keep its finished wells. This job has no input, no params, no conda and no container, so it only
# runs when wells/ is missing (or with --forceall / --forcerun well_folders, which delete it first). Keep its
# code as it is: a change of a rule's code makes Snakemake rerun it, i.e. delete every well. (`run:`, not
# `shell:`: a software definition, which lint asks of shell rules, would make a new env rerun it as well.)
localrules:
    well_folders,


rule well_folders:
    output:
        directory(f"{OUT}/{{plate}}/wells"),
    log:
        "logs/{plate}/well_folders.log",
    container: False
    run:
        os.makedirs(output[0], exist_ok=True)


rule process_wells:
    input:
        plate=f"{OUT}/{{plate}}/plate.json",
        # ancient: the chunk jobs write into it; only its existence (and the order of jobs) matters
        wells=ancient(f"{OUT}/{{plate}}/wells"),
        illumination=f"{OUT}/{{plate}}/illumination.npz",
        pipeline=SCREEN["pipeline"],
        viewers=ancient(VIEWER_SETTINGS),  # the live viewers' block, streaming on or off (rules/viewers.smk)
    output:
        manifest=f"{OUT}/{{plate}}/chunks/{{chunk}}.json",
    params:
        options=well_job_args,
        wells_dir=plate_wells_folder,
    threads: SCREEN["resources"]["threads"]
    resources:
        mem_mb=chunk_mem_mb,
        runtime=chunk_runtime,
        gpu=SCREEN["resources"]["gpu"],
    conda:
        "../envs/openhcs.yaml"
    log:
        "logs/{plate}/chunks/{chunk}.log",
    benchmark:
        "benchmarks/{plate}/chunks/{chunk}.tsv"
    shell:
        "OMP_NUM_THREADS={threads:q} \"$OPENHCS_RULES_PYTHON\" -m openhcs_rules process-wells"
        " --plate-json {input.plate:q}"
        " --chunk {wildcards.chunk:q} --pipeline {input.pipeline:q} --wells-dir {params.wells_dir:q}"
        " --manifest {output.manifest:q} {params.options:q} --streaming \"$(cat {input.viewers:q})\" > {log:q} 2>&1"
