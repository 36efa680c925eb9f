# One job per chunk of wells (config wells_per_job): run the pipeline on each well in turn (GPU where
# available), writing its images, objects and summary under wells/<well>/; the chunk's manifest last.


rule process_wells:
    input:
        plate=f"{OUT}/{{plate}}/plate.json",
        illumination=f"{OUT}/{{plate}}/illumination.npz",
        pipeline=SCREEN["pipeline"],
        viewers=ancient(VIEWER_SETTINGS),  # the live viewers' block, streaming on or off (rules/viewers.smk)
    output:
        manifest=f"{OUT}/{{plate}}/chunks/{{chunk}}.json",
    params:
        options=well_job_args,
        wells_dir=lambda wc: f"{OUT}/{wc.plate}/wells",
    threads: SCREEN["resources"]["threads"]
    resources:
        mem_mb=lambda wc, attempt: SCREEN["resources"]["mem_mb"] * attempt,
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
