# Text -> code: a masked diffusion language model over (code, caption) sequences, and the
# built-in data's test of it on held-out attribute combinations.


if TEXT["captions"] is not None:

    rule caption_codes:
        """The codes of the captioned dataset text.captions (the paper's LAION path)."""
        input:
            encoder=rules.train_sem.output.encoder,
        output:
            manifest=f"{CODES}/{TEXT['train']['split']}/manifest.json",
        params:
            preset=PRESET,
            captions=TEXT["captions"],
            folder=lambda wildcards, output: os.path.dirname(output.manifest),
        log:
            f"{LOGS}/{PRESET}/caption_codes.log",
        threads: SEM["train"]["threads"]
        resources:
            **resources("caption_codes", mem_mb=8000, runtime=60),
        conda:
            ENV
        shell:
            launch("caption_codes")
            + "dlc caption-codes --preset {params.preset} --encoder {input.encoder}"
            " --out {params.folder} --log {log}"


rule train_text2code:
    """LLaDA's objective on the training codes and their captions (text.* params)."""
    input:
        codes=f"{CODES}/{TEXT['train']['split']}/manifest.json",
    output:
        meta=f"{TEXT_DIR}/meta.json",
        loss=f"{TEXT_DIR}/loss.csv",
        curve=f"{TEXT_DIR}/loss.png",
    params:
        preset=PRESET,
        section="text",
        settings={key: value for key, value in TEXT.items() if key != "sample"},
        codes=lambda wildcards, input: Path(input.codes).parents[1],
        run=lambda wildcards, output: os.path.dirname(output.meta),
    log:
        f"{LOGS}/{PRESET}/train_text2code.log",
    threads: TEXT["train"]["threads"]
    resources:
        **resources("train_text2code", mem_mb=8000, runtime=120),
    conda:
        ENV
    shell:
        launch("train_text2code")
        + "dlc train-text2code --preset {params.preset} --section {params.section}"
        " --codes {params.codes} --out {params.run} --log {log}"


rule text2code_study:
    """Codes for prompts of held-out and seen (shape, colour) combinations, decoded, judged."""
    input:
        meta=rules.train_text2code.output.meta,
        codes=f"{CODES}/{TEXT['train']['split']}/manifest.json",
        model=rules.train_dit.output.model,
        vae=rules.train_vae.output.report,
        judge=rules.train_judge.output.report,
        images=f"{DATA}/images.parquet",
    output:
        result=f"{RESULTS}/text2code.json",
        grid=report(
            f"{RESULTS}/text2code_grid.png",
            caption="../report/text2code.rst",
            category="Text to code",
        ),
        novelty=report(
            f"{RESULTS}/text2code_novelty.png",
            caption="../report/text2code_novelty.rst",
            category="Text to code",
        ),
    params:
        preset=PRESET,
        section="text",
        settings={"sample": TEXT["sample"], "dit": DIT["sample"], "probe": PROBE,
                  "study": config["presets"][PRESET]["text_study"]},
        run=lambda wildcards, input: os.path.dirname(input.meta),
        codes=lambda wildcards, input: Path(input.codes).parents[1],
        dit=lambda wildcards, input: os.path.dirname(input.model),
        vae=lambda wildcards, input: os.path.dirname(input.vae),
        judge=lambda wildcards, input: os.path.dirname(input.judge),
    log:
        f"{LOGS}/{PRESET}/text2code_study.log",
    threads: TEXT["train"]["threads"]
    resources:
        **resources("text2code_study", mem_mb=8000, runtime=60),
    conda:
        ENV
    shell:
        launch("text2code_study")
        + "dlc text2code-study --preset {params.preset} --section {params.section}"
        " --model {params.run} --codes {params.codes} --dit {params.dit} --vae {params.vae}"
        " --judge {params.judge} --images {input.images} --out {output.result}"
        " --grid {output.grid} --novelty-grid {output.novelty} --log {log}"


if TEXT_PRETRAINED is not None:
    # A pretrained language model (tiny: all-MiniLM-L6-v2 from its wheel) on the same pairs and
    # prompts: its own target, results/<preset>/text2code_pretrained.json, not in `all`. Its
    # logs go to a subfolder, which the report (of `all`'s run) does not read.

    use rule train_text2code as train_text2code_pretrained with:
        output:
            meta=f"{TEXT_PRETRAINED_DIR}/meta.json",
            loss=f"{TEXT_PRETRAINED_DIR}/loss.csv",
            curve=f"{TEXT_PRETRAINED_DIR}/loss.png",
        params:
            preset=PRESET,
            section="text_pretrained",
            settings={k: v for k, v in TEXT_PRETRAINED.items() if k != "sample"},
            codes=lambda wildcards, input: Path(input.codes).parents[1],
            run=lambda wildcards, output: os.path.dirname(output.meta),
        log:
            f"{LOGS}/{PRESET}/text_pretrained/train_text2code.log",
        threads: TEXT_PRETRAINED["train"]["threads"]
        conda:
            ENV

    use rule text2code_study as text2code_study_pretrained with:
        input:
            meta=rules.train_text2code_pretrained.output.meta,
            codes=f"{CODES}/{TEXT['train']['split']}/manifest.json",
            model=rules.train_dit.output.model,
            vae=rules.train_vae.output.report,
            judge=rules.train_judge.output.report,
            images=f"{DATA}/images.parquet",
        output:
            result=f"{RESULTS}/text2code_pretrained.json",
            grid=f"{RESULTS}/text2code_pretrained_grid.png",
            novelty=f"{RESULTS}/text2code_pretrained_novelty.png",
        params:
            preset=PRESET,
            section="text_pretrained",
            settings={"sample": TEXT_PRETRAINED["sample"], "dit": DIT["sample"],
                      "probe": PROBE, "study": config["presets"][PRESET]["text_study"]},
            run=lambda wildcards, input: os.path.dirname(input.meta),
            codes=lambda wildcards, input: Path(input.codes).parents[1],
            dit=lambda wildcards, input: os.path.dirname(input.model),
            vae=lambda wildcards, input: os.path.dirname(input.vae),
            judge=lambda wildcards, input: os.path.dirname(input.judge),
        log:
            f"{LOGS}/{PRESET}/text_pretrained/text2code_study.log",
        threads: TEXT_PRETRAINED["train"]["threads"]
        conda:
            ENV
