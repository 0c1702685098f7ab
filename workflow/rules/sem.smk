# SEM encoder -> Discrete Latent Codes -> linear probe (the first half of the DLC idea).
# A split's codes folder is complete when its manifest.json exists: the rules name manifests,
# so a failed extraction keeps its finished shards and the rerun resumes from them.


rule train_sem:
    """DINOv2-style self-distillation of the SEM encoder on the train split."""
    priority: 90
    input:
        images=f"{DATA}/images.parquet",
    output:
        encoder=f"{SEM_DIR}/encoder.safetensors",
        meta=f"{SEM_DIR}/meta.json",
        loss=f"{SEM_DIR}/loss.csv",
        curve=f"{SEM_DIR}/loss.png",
    params:
        preset=PRESET,
        settings={key: value for key, value in SEM.items() if key != "extract"},
        run=lambda wildcards, output: os.path.dirname(output.encoder),
    log:
        f"{LOGS}/{PRESET}/train_sem.log",
    threads: SEM["train"]["threads"]
    resources:
        **resources("train_sem", mem_mb=16000, runtime=60),
    conda:
        ENV
    shell:
        launch("train_sem")
        + "dlc train-sem --preset {params.preset} --images {input.images} --out {params.run}"
        " --log {log}"


rule extract_codes:
    """Encode every split into Parquet code shards (argmax of the SEM at every position)."""
    priority: 80
    input:
        images=f"{DATA}/images.parquet",
        encoder=rules.train_sem.output.encoder,
    output:
        manifests=[f"{CODES}/{split}/manifest.json" for split in SEM["extract"]["splits"]],
    params:
        preset=PRESET,
        settings=SEM["extract"],
        # results/<preset>/codes/<split>/manifest.json -> results/<preset>/codes
        folder=lambda wildcards, output: Path(output.manifests[0]).parents[1],
    log:
        f"{LOGS}/{PRESET}/extract_codes.log",
    threads: SEM["train"]["threads"]
    resources:
        **resources("extract_codes", mem_mb=8000, runtime=60),
    conda:
        ENV
    shell:
        launch("extract_codes")
        + "dlc extract-codes --preset {params.preset} --images {input.images}"
        " --encoder {input.encoder} --out {params.folder} --log {log}"


rule probe:
    """Linear probes on one-hot codes and on the backbone's continuous features."""
    input:
        train=f"{CODES}/{PROBE['train_split']}/manifest.json",
        test=f"{CODES}/{PROBE['test_split']}/manifest.json",
    output:
        f"{RESULTS}/probe.json",
    params:
        preset=PRESET,
        settings=PROBE,
        codes=lambda wildcards, input: Path(input.train).parents[1],
    log:
        f"{LOGS}/{PRESET}/probe.log",
    threads: SEM["train"]["threads"]
    resources:
        **resources("probe", mem_mb=8000, runtime=60),
    conda:
        ENV
    shell:
        launch("probe")
        + "dlc probe --preset {params.preset} --codes {params.codes} --out {output} --log {log}"
