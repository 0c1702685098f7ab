# Productive generation: codes composed from source images, measured on the built-in data's
# held-out attribute combinations (a report that says "skipped" for data without them).


FEATURES_DIT_DIR = f"{RESULTS}/dit_features"


rule train_dit_features:
    """The paper's composition baseline: the same DiT, steps and batch, conditioned on the SEM
    encoder's continuous features instead of its codes."""
    priority: 50
    input:
        latents=f"{LATENTS}/{DIT['train_split']}/manifest.json",
        codes=f"{CODES}/{DIT['train_split']}/manifest.json",
        vae=rules.train_vae.output.report,
        encoder=rules.train_sem.output.encoder,  # REPA's targets (dit.repa)
        images=f"{DATA}/images.parquet",
    output:
        model=f"{FEATURES_DIT_DIR}/model.safetensors",
        meta=f"{FEATURES_DIT_DIR}/meta.json",
        loss=f"{FEATURES_DIT_DIR}/loss.csv",
        curve=f"{FEATURES_DIT_DIR}/loss.png",
        grid=f"{FEATURES_DIT_DIR}/samples.png",
    params:
        preset=PRESET,
        settings={key: value for key, value in DIT.items() if key != "sample"},
        latents=lambda wildcards, input: Path(input.latents).parents[1],
        codes=lambda wildcards, input: Path(input.codes).parents[1],
        vae=lambda wildcards, input: os.path.dirname(input.vae),
        sem=lambda wildcards, input: os.path.dirname(input.encoder),
        run=lambda wildcards, output: os.path.dirname(output.model),
    log:
        f"{LOGS}/{PRESET}/train_dit_features.log",
    threads: DIT["train"]["threads"]
    resources:
        **resources("train_dit_features", mem_mb=16000, runtime=120),
    conda:
        ENV
    shell:
        launch("train_dit_features")
        + "dlc train-dit --preset {params.preset} --latents {params.latents} --codes {params.codes}"
        " --vae {params.vae} --condition features --sem {params.sem} --images {input.images}"
        " --out {params.run} --log {log}"


rule composition_study:
    """Token-mixed codes of source pairs around each held-out (shape, colour), decoded and
    judged, beside reconstructions (upper bound), random codes (lower bound) and, with
    compose.continuous_baseline, averaged continuous features through their own DiT."""
    input:
        unpack(features_dit),
        codes=f"{CODES}/{COMPOSE['source_split']}/manifest.json",
        model=rules.train_dit.output.model,
        meta=rules.train_dit.output.meta,
        vae=rules.train_vae.output.report,
        images=f"{DATA}/images.parquet",
        judge=rules.train_judge.output.report,
    output:
        result=f"{RESULTS}/composition.json",
        grid=report(
            f"{RESULTS}/composition_grid.png",
            caption="../report/composition.rst",
            category="Composition",
        ),
        position_map=report(
            f"{RESULTS}/position_map.png",
            caption="../report/position_map.rst",
            category="Composition",
        ),
    params:
        preset=PRESET,
        settings={"compose": COMPOSE, "sample": DIT["sample"]},
        codes=lambda wildcards, input: Path(input.codes).parents[1],
        dit=lambda wildcards, input: os.path.dirname(input.model),
        vae=lambda wildcards, input: os.path.dirname(input.vae),
        judge=lambda wildcards, input: os.path.dirname(input.judge),
        baseline=lambda wildcards, input: (f" --features-dit {os.path.dirname(input.features_dit)}"
                                           if "features_dit" in input.keys() else ""),
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
        " --out {output.result} --grid {output.grid} --position-map {output.position_map}"
        "{params.baseline} --log {log}"
