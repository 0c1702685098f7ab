# SEDD-absorb over the codes: p(c), then generated codes compared with held-out real ones.


rule train_sedd:
    """Learn the distribution of the training codes (score entropy, absorbing graph)."""
    priority: 70
    input:
        codes=f"{CODES}/{SEDD['train_split']}/manifest.json",
    output:
        model=f"{SEDD_DIR}/model.safetensors",
        meta=f"{SEDD_DIR}/meta.json",
        loss=f"{SEDD_DIR}/loss.csv",
        curve=f"{SEDD_DIR}/loss.png",
    params:
        preset=PRESET,
        settings={key: value for key, value in SEDD.items() if key != "sample"},
        shape=[SEM["length"], SEM["vocab"]],
        codes=lambda wildcards, input: Path(input.codes).parents[1],
        run=lambda wildcards, output: os.path.dirname(output.model),
    log:
        f"{LOGS}/{PRESET}/train_sedd.log",
    threads: SEDD["train"]["threads"]
    resources:
        **resources("train_sedd", mem_mb=8000, runtime=60),
    conda:
        ENV
    shell:
        launch("train_sedd")
        + "dlc train-sedd --preset {params.preset} --codes {params.codes} --out {params.run}"
        " --log {log}"


rule sample_codes:
    """Generate codes with the trained model; compare them with the held-out real codes."""
    priority: 60
    input:
        model=rules.train_sedd.output.model,
        meta=rules.train_sedd.output.meta,
        train=f"{CODES}/{SEDD['train_split']}/manifest.json",
        reference=f"{CODES}/{SEDD['reference_split']}/manifest.json",
    output:
        manifest=f"{SEDD_DIR}/codes/manifest.json",
        report=f"{SEDD_DIR}/samples.json",
        figure=report(
            f"{SEDD_DIR}/marginals.png",
            caption="../report/sedd_marginals.rst",
            category="Codes",
        ),
    params:
        preset=PRESET,
        settings=SEDD["sample"],
        codes=lambda wildcards, input: Path(input.train).parents[1],
        run=lambda wildcards, input: os.path.dirname(input.model),
        folder=lambda wildcards, output: os.path.dirname(output.manifest),
    log:
        f"{LOGS}/{PRESET}/sample_codes.log",
    threads: SEDD["train"]["threads"]
    resources:
        **resources("sample_codes", mem_mb=8000, runtime=60),
    conda:
        ENV
    shell:
        launch("sample_codes")
        + "dlc sample-codes --preset {params.preset} --model {params.run} --out {params.folder}"
        " --codes {params.codes} --report {output.report} --figure {output.figure} --log {log}"
