# Productive generation: codes composed from source images, measured on the built-in data's
# held-out attribute combinations (a report that says "skipped" for data without them).


rule composition_study:
    """Token-mixed codes of source pairs around each held-out (shape, colour), decoded and
    judged, beside reconstructions (upper bound) and random codes (lower bound)."""
    input:
        codes=f"{CODES}/{COMPOSE['source_split']}/manifest.json",
        model=rules.train_dit.output.model,
        meta=rules.train_dit.output.meta,
        vae=rules.train_vae.output.report,
        images=f"{DATA}/images.parquet",
        judge=rules.train_judge.output.report,
    output:
        result=f"{RESULTS}/composition.json",
        grid=f"{RESULTS}/composition_grid.png",
    params:
        preset=PRESET,
        settings={"compose": COMPOSE, "sample": DIT["sample"]},
        codes=lambda wildcards, input: Path(input.codes).parents[1],
        dit=lambda wildcards, input: os.path.dirname(input.model),
        vae=lambda wildcards, input: os.path.dirname(input.vae),
        judge=lambda wildcards, input: os.path.dirname(input.judge),
    log:
        f"{LOGS}/{PRESET}/composition_study.log",
    threads: DIT["train"]["threads"]
    resources:
        **resources("composition_study", mem_mb=8000, runtime=60),
    conda:
        ENV
    shell:
        launch("composition_study")
        + "dlc composition-study --preset {params.preset} --codes {params.codes}"
        " --dit {params.dit} --vae {params.vae} --images {input.images} --judge {params.judge}"
        " --out {output.result} --grid {output.grid} --log {log}"
