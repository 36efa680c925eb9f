# Per plate: the OME-Zarr plate (or TIFF folder); the objects and wells tables (Parquet and CSV, pycytominer
# names, the plate map joined); Z' and SSMD of the controls; a heatmap (a panel per timepoint) for the report.


rule assemble_plate:
    input:
        plate=f"{OUT}/{{plate}}/plate.json",
        chunks=chunk_manifests,
        platemap=platemap_input,
        illumination=f"{OUT}/{{plate}}/illumination.npz",
    output:
        images=directory(plate_images_output()),
        objects=f"{OUT}/{{plate}}/objects.csv",
        objects_parquet=f"{OUT}/{{plate}}/objects.parquet",
        wells_parquet=f"{OUT}/{{plate}}/wells.parquet",
        images_table=f"{OUT}/{{plate}}/images.csv",
        images_parquet=f"{OUT}/{{plate}}/images.parquet",
        flagged=f"{OUT}/{{plate}}/flagged_images.csv",
        page=report(
            f"{OUT}/{{plate}}/plate.html",
            caption="../report/plate_page.rst",
            category="Plates",
            subcategory="{plate}",
            labels={"plate": "{plate}", "figure": "tables: assay quality, wells, flagged images"},
        ),
        montage=report(
            f"{OUT}/{{plate}}/qc_montage.png",
            caption="../report/qc_montage.rst",
            category="Plates",
            subcategory="{plate}",
            labels={"plate": "{plate}", "figure": "quality-control montage"},
        ),
        flatfield=report(
            f"{OUT}/{{plate}}/flatfield.png",
            caption="../report/flatfield.rst",
            category="Plates",
            subcategory="{plate}",
            labels={"plate": "{plate}", "figure": "flat-field profiles"},
        ),
        assay_quality=f"{OUT}/{{plate}}/assay_quality.csv",
        wells=f"{OUT}/{{plate}}/wells.csv",
        heatmap=report(
            f"{OUT}/{{plate}}/heatmap.png",
            caption="../report/heatmap.rst",
            category="Plates",
            subcategory="{plate}",
            labels={"plate": "{plate}", "figure": "objects per site heatmap"},
        ),
    params:
        wells_dir=plate_wells_folder,
        out_dir=lambda wc: f"{OUT}/{wc.plate}",
        backend=BACKEND,
        # already shell-quoted, argument by argument (used without :q below): as lists with :q they would be
        # stored differently by Snakemake, whose params trigger would then reassemble every finished plate
        platemap=lambda wc: " ".join(f"--platemap {shlex.quote(path)}" for path in platemap_input(wc)),
        feature=SCREEN["controls"]["feature"],
        nuclei=lambda wc: " ".join(shlex.quote(arg) for arg in nuclei_channel_args(wc.plate)),
    conda:
        "../envs/openhcs.yaml"
    log:
        "logs/{plate}/assemble_plate.log",
    benchmark:
        "benchmarks/{plate}/assemble_plate.tsv"
    shell:
        "\"$OPENHCS_RULES_PYTHON\" -m openhcs_rules assemble"
        " --plate-json {input.plate:q} --wells-dir {params.wells_dir:q}"
        " --out-dir {params.out_dir:q} --backend {params.backend:q} {params.platemap}"
        " --control-feature {params.feature:q} {params.nuclei} --illumination {input.illumination:q}"
        " > {log:q} 2>&1"
