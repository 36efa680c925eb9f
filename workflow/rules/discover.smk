# Plate sources: generate synthetic demo plates; discover every plate's structure once (a checkpoint).


rule generate_synthetic_plate:
    output:
        "resources/synthetic/{plate}/ground_truth.csv",
    params:
        openhcs=OPENHCS,
        folder=lambda wc: plate_folder(wc.plate),
        spec=lambda wc: plate_source(wc.plate)["synthetic"],
    conda:
        "../envs/openhcs.yaml"
    log:
        "logs/{plate}/generate_synthetic_plate.log",
    benchmark:
        "benchmarks/{plate}/generate_synthetic_plate.tsv"
    shell:
        "{params.openhcs} generate-demo --out {params.folder} --name {wildcards.plate}"
        " --wells {params.spec[wells]} --sites {params.spec[sites]} --channels {params.spec[channels]}"
        " --z-planes {params.spec[z_planes]} --timepoints {params.spec[timepoints]}"
        " --size {params.spec[size]} --seed {params.spec[seed]} > {log} 2>&1"


checkpoint discover:
    input:
        generated_plate_marker,
    output:
        json=f"{OUT}/{{plate}}/plate.json",
    params:
        openhcs=OPENHCS,
        folder=lambda wc: plate_folder(wc.plate),
        format=lambda wc: plate_source(wc.plate)["format"],
    conda:
        "../envs/openhcs.yaml"
    log:
        f"logs/{{plate}}/discover.log",
    benchmark:
        "benchmarks/{plate}/discover.tsv"
    shell:
        "{params.openhcs} discover --name {wildcards.plate} --path {params.folder:q} --format {params.format}"
        " --out {output.json} > {log} 2>&1"


rule estimate_illumination:
    input:
        plate=f"{OUT}/{{plate}}/plate.json",
    output:
        f"{OUT}/{{plate}}/illumination.npz",
    params:
        openhcs=OPENHCS,
        max_images=SCREEN["illumination"]["max_images"],
    conda:
        "../envs/openhcs.yaml"
    log:
        "logs/{plate}/estimate_illumination.log",
    benchmark:
        "benchmarks/{plate}/estimate_illumination.tsv"
    shell:
        "{params.openhcs} illumination --plate-json {input.plate} --out {output} --max-images {params.max_images}"
        " > {log} 2>&1"
