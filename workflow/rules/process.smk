# One job per well: read its planes, run the pipeline (GPU where available), write images and objects.


rule process_well:
    input:
        plate=f"{OUT}/{{plate}}/plate.json",
        illumination=f"{OUT}/{{plate}}/illumination.npz",
        pipeline=SCREEN["pipeline"],
    output:
        summary=f"{OUT}/{{plate}}/wells/{{well}}/summary.json",
        objects=f"{OUT}/{{plate}}/wells/{{well}}/objects.csv",
        images=directory(well_images_output()),
    params:
        openhcs=OPENHCS,
        nuclei_channel=SCREEN["nuclei_channel"] if SCREEN["nuclei_channel"] is not None else "",
        gpu=SCREEN["gpu"],
        backend=BACKEND,
        levels=SCREEN["output"]["pyramid_levels"],
        out_dir=lambda wc: f"{OUT}/{wc.plate}/wells/{wc.well}",
        streaming=json.dumps(SCREEN["streaming"]),
    threads: SCREEN["resources"]["threads"]
    resources:
        mem_mb=SCREEN["resources"]["mem_mb"],
        runtime=SCREEN["resources"]["runtime"],
        gpu=SCREEN["resources"]["gpu"],
    conda:
        "../envs/openhcs.yaml"
    log:
        "logs/{plate}/wells/{well}.log",
    benchmark:
        "benchmarks/{plate}/wells/{well}.tsv"
    shell:
        "OMP_NUM_THREADS={threads} {params.openhcs} process-well --plate-json {input.plate}"
        " --well {wildcards.well} --pipeline {input.pipeline:q} --out-dir {params.out_dir:q}"
        " --illumination {input.illumination} --nuclei-channel '{params.nuclei_channel}' --gpu {params.gpu}"
        " --backend {params.backend} --pyramid-levels {params.levels} --streaming {params.streaming:q}"
        " > {log} 2>&1"
