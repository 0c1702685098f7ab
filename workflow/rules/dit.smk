# DiT conditioned on codes: p(x | c), trained on (latent, code) pairs, then codes of real
# images decoded back into images (encode-decode), scored by the attribute judge.


rule train_judge:
    """The attribute classifier that scores generated images (a 'none' report when the preset
    has no judge: ImageNet is scored by Inception)."""
    priority: 75
    input:
        images=f"{DATA}/images.parquet",
    output:
        report=f"{JUDGE_DIR}/judge.json",
    params:
        preset=PRESET,
        settings=JUDGE,
        resolution=VAE["resolution"],
        run=lambda wildcards, output: os.path.dirname(output.report),
    log:
        f"{LOGS}/{PRESET}/train_judge.log",
    threads: JUDGE["threads"] if JUDGE else 1
    resources:
        **resources("train_judge", mem_mb=4000, runtime=30),
    conda:
        ENV
    shell:
        launch("train_judge")
        + "dlc train-judge --preset {params.preset} --images {input.images} --out {params.run}"
        " --log {log}"


rule train_dit:
    """Train the code-conditioned DiT (null code with probability dit.null_code_prob)."""
    priority: 70
    input:
        latents=f"{LATENTS}/{DIT['train_split']}/manifest.json",
        codes=f"{CODES}/{DIT['train_split']}/manifest.json",
        vae=rules.train_vae.output.report,
        encoder=rules.train_sem.output.encoder,  # REPA's targets (dit.repa)
        images=f"{DATA}/images.parquet",
    output:
        model=f"{DIT_DIR}/model.safetensors",
        meta=f"{DIT_DIR}/meta.json",
        loss=f"{DIT_DIR}/loss.csv",
        curve=f"{DIT_DIR}/loss.png",
        grid=f"{DIT_DIR}/samples.png",
    params:
        preset=PRESET,
        settings={key: value for key, value in DIT.items() if key != "sample"},
        shape=[SEM["length"], SEM["vocab"]],
        latents=lambda wildcards, input: Path(input.latents).parents[1],
        codes=lambda wildcards, input: Path(input.codes).parents[1],
        vae=lambda wildcards, input: os.path.dirname(input.vae),
        sem=lambda wildcards, input: os.path.dirname(input.encoder),
        run=lambda wildcards, output: os.path.dirname(output.model),
    log:
        f"{LOGS}/{PRESET}/train_dit.log",
    threads: DIT["train"]["threads"]
    resources:
        **resources("train_dit", mem_mb=16000, runtime=120),
    conda:
        ENV
    shell:
        launch("train_dit")
        + "dlc train-dit --preset {params.preset} --latents {params.latents} --codes {params.codes}"
        " --vae {params.vae} --sem {params.sem} --images {input.images}"
        " --out {params.run} --log {log}"


rule sample_dit:
    """Decode the codes of dit.sample.split (real images' codes) into images."""
    input:
        model=rules.train_dit.output.model,
        meta=rules.train_dit.output.meta,
        codes=f"{CODES}/{DIT['sample']['split']}/manifest.json",
        vae=rules.train_vae.output.report,
        images=f"{DATA}/images.parquet",
        judge=rules.train_judge.output.report,
    output:
        samples=f"{DIT_DIR}/decoded/samples.npz",
        summary=f"{DIT_DIR}/decoded/samples.json",
        grid=report(
            f"{DIT_DIR}/decoded/grid.png",
            caption="../report/decoded.rst",
            category="Image follows code",
        ),
    params:
        preset=PRESET,
        settings=DIT["sample"],
        run=lambda wildcards, input: os.path.dirname(input.model),
        codes=lambda wildcards, input: Path(input.codes).parents[1],
        vae=lambda wildcards, input: os.path.dirname(input.vae),
        judge=lambda wildcards, input: os.path.dirname(input.judge),
        folder=lambda wildcards, output: os.path.dirname(output.samples),
    log:
        f"{LOGS}/{PRESET}/sample_dit.log",
    threads: DIT["train"]["threads"]
    resources:
        **resources("sample_dit", mem_mb=16000, runtime=120),
    conda:
        ENV
    shell:
        launch("sample_dit")
        + "dlc sample-dit --preset {params.preset} --model {params.run} --codes {params.codes}"
        " --vae {params.vae} --images {input.images} --judge {params.judge}"
        " --out {params.folder} --log {log}"
