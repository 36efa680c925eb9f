# Plate sources: generate synthetic demo plates; discover every plate's structure once (a checkpoint).


rule generate_synthetic_plate:
    output:
        "resources/synthetic/{plate}/ground_truth.csv",
    params:
        folder=lambda wc: plate_folder(wc.plate),
        spec=lambda wc: plate_source(wc.plate)["synthetic"],
    conda:
        "../envs/openhcs.yaml"
    log:
        "logs/{plate}/generate_synthetic_plate.log",
    benchmark:
        "benchmarks/{plate}/generate_synthetic_plate.tsv"
    shell:
        "\"$OPENHCS_RULES_PYTHON\" -m openhcs_rules generate-demo"
        " --out {params.folder:q} --name {wildcards.plate:q}"
        " --wells {params.spec[wells]:q} --sites {params.spec[sites]:q} --channels {params.spec[channels]:q}"
        " --z-planes {params.spec[z_planes]:q} --timepoints {params.spec[timepoints]:q}"
        " --size {params.spec[size]:q} --seed {params.spec[seed]:q} > {log:q} 2>&1"


checkpoint discover:
    input:
        generated_plate_marker,
    output:
        json=f"{OUT}/{{plate}}/plate.json",
    params:
        folder=lambda wc: plate_folder(wc.plate),
        format=lambda wc: plate_source(wc.plate)["format"],
        nuclei_channel=lambda wc: nuclei_channel_args(wc.plate),
        pattern=lambda wc: pattern_args(wc.plate),
        # a param, not an input: editing the pipeline must not rediscover every plate (and redo its flat field)
        pipeline=SCREEN["pipeline"],
    conda:
        "../envs/openhcs.yaml"
    log:
        f"logs/{{plate}}/discover.log",
    benchmark:
        "benchmarks/{plate}/discover.tsv"
    shell:
        "\"$OPENHCS_RULES_PYTHON\" -m openhcs_rules discover"
        " --name {wildcards.plate:q} --path {params.folder:q} --format {params.format:q}"
        " {params.pattern:q} {params.nuclei_channel:q} --pipeline {params.pipeline:q} --out {output.json:q} > {log:q} 2>&1"


rule estimate_illumination:
    input:
        plate=f"{OUT}/{{plate}}/plate.json",
    output:
        f"{OUT}/{{plate}}/illumination.npz",
    params:
        max_images=SCREEN["illumination"]["max_images"],
    conda:
        "../envs/openhcs.yaml"
    log:
        "logs/{plate}/estimate_illumination.log",
    benchmark:
        "benchmarks/{plate}/estimate_illumination.tsv"
    shell:
        "\"$OPENHCS_RULES_PYTHON\" -m openhcs_rules illumination"
        " --plate-json {input.plate:q} --out {output:q} --max-images {params.max_images:q}"
        " > {log:q} 2>&1"
