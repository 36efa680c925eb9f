# Per plate: the OME-Zarr plate (or TIFF folder), objects.csv, wells.csv (per well and timepoint) and a heatmap
# (a panel per timepoint) for the report.


rule assemble_plate:
    input:
        plate=f"{OUT}/{{plate}}/plate.json",
        chunks=chunk_manifests,
    output:
        images=directory(plate_images_output()),
        objects=f"{OUT}/{{plate}}/objects.csv",
        wells=report(
            f"{OUT}/{{plate}}/wells.csv",
            caption="../report/wells.rst",
            category="Plates",
            subcategory="{plate}",
            labels={"plate": "{plate}", "figure": "per-well and timepoint table"},
        ),
        heatmap=report(
            f"{OUT}/{{plate}}/heatmap.png",
            caption="../report/heatmap.rst",
            category="Plates",
            subcategory="{plate}",
            labels={"plate": "{plate}", "figure": "objects per site heatmap"},
        ),
    params:
        wells_dir=lambda wc: f"{OUT}/{wc.plate}/wells",
        out_dir=lambda wc: f"{OUT}/{wc.plate}",
        backend=BACKEND,
    conda:
        "../envs/openhcs.yaml"
    log:
        "logs/{plate}/assemble_plate.log",
    benchmark:
        "benchmarks/{plate}/assemble_plate.tsv"
    shell:
        "\"$OPENHCS_RULES_PYTHON\" -m openhcs_rules assemble"
        " --plate-json {input.plate:q} --wells-dir {params.wells_dir:q}"
        " --out-dir {params.out_dir:q} --backend {params.backend:q} > {log:q} 2>&1"
