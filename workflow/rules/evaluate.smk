# Generation from nothing and its evaluation (the paper's Tables 1 and 3, Appendix A):
#   SEDD's codes (sedd/codes) -> DiT -> VAE     generate/dlc/            fid_dlc.json
#   codes of real images -> DiT (encode-decode) dit/decoded/             fid_encode_decode.json
#   the unconditional DiT, same size and steps  generate/unconditional/  fid_unconditional.json
#   the same as dlc for each eta and seed       eta_sweep/part<k>/       fid_eta_sweep.{json,png}
#   floors: real images of another split        floors/real/             fid_real.json
#           and their VAE reconstructions       floors/vae/              fid_vae.json
# and results/fid_dlc<L>.json, the headline (results/fid_dlc512.json on ImageNet).


wildcard_constraints:
    evaluation=r"dlc|encode_decode|unconditional|real|vae",


UNCONDITIONAL_DIR = f"{RESULTS}/dit_unconditional"
SAMPLES = {
    "dlc": f"{GENERATE_DIR}/dlc/samples.npz",
    "encode_decode": f"{DIT_DIR}/decoded/samples.npz",
    "unconditional": f"{GENERATE_DIR}/unconditional/samples.npz",
    "real": f"{RESULTS}/floors/real/samples.npz",
    "vae": f"{RESULTS}/floors/vae/samples.npz",
}


rule train_dit_unconditional:
    """The baseline: the same DiT, steps and batch with no condition (no code at all)."""
    priority: 50
    input:
        latents=f"{LATENTS}/{DIT['train_split']}/manifest.json",
        codes=f"{CODES}/{DIT['train_split']}/manifest.json",
        vae=rules.train_vae.output.report,
        encoder=rules.train_sem.output.encoder,  # REPA's targets (dit.repa)
        images=f"{DATA}/images.parquet",
    output:
        model=f"{UNCONDITIONAL_DIR}/model.safetensors",
        meta=f"{UNCONDITIONAL_DIR}/meta.json",
        loss=f"{UNCONDITIONAL_DIR}/loss.csv",
        curve=f"{UNCONDITIONAL_DIR}/loss.png",
        grid=f"{UNCONDITIONAL_DIR}/samples.png",
    params:
        preset=PRESET,
        settings={key: value for key, value in DIT.items() if key != "sample"},
        latents=lambda wildcards, input: Path(input.latents).parents[1],
        codes=lambda wildcards, input: Path(input.codes).parents[1],
        vae=lambda wildcards, input: os.path.dirname(input.vae),
        sem=lambda wildcards, input: os.path.dirname(input.encoder),
        run=lambda wildcards, output: os.path.dirname(output.model),
    log:
        f"{LOGS}/{PRESET}/train_dit_unconditional.log",
    threads: DIT["train"]["threads"]
    resources:
        **resources("train_dit_unconditional", mem_mb=16000, runtime=120),
    conda:
        ENV
    shell:
        launch("train_dit_unconditional")
        + "dlc train-dit --preset {params.preset} --latents {params.latents} --codes {params.codes}"
        " --vae {params.vae} --condition none --sem {params.sem} --images {input.images}"
        " --out {params.run} --log {log}"


rule generate_dlc:
    """Images from nothing: SEDD's sampled codes (sample_codes, sedd.sample.*) -> DiT
    (dit.sample.*) -> VAE."""
    priority: 55
    input:
        codes=rules.sample_codes.output.manifest,
        dit=rules.train_dit.output.model,
        dit_meta=rules.train_dit.output.meta,
        vae=rules.train_vae.output.report,
    output:
        samples=SAMPLES["dlc"],
        summary=f"{GENERATE_DIR}/dlc/samples.json",
        grid=report(
            f"{GENERATE_DIR}/dlc/grid.png",
            caption="../report/generated_dlc.rst",
            category="Generation",
        ),
    params:
        preset=PRESET,
        settings=DIT["sample"],
        codes=lambda wildcards, input: os.path.dirname(input.codes),
        dit=lambda wildcards, input: os.path.dirname(input.dit),
        vae=lambda wildcards, input: os.path.dirname(input.vae),
        folder=lambda wildcards, output: os.path.dirname(output.samples),
    log:
        f"{LOGS}/{PRESET}/generate_dlc.log",
    threads: DIT["train"]["threads"]
    resources:
        **resources("generate_dlc", mem_mb=16000, runtime=120),
    conda:
        ENV
    shell:
        launch("generate_dlc")
        + "dlc sample-dit --preset {params.preset} --model {params.dit} --codes {params.codes}"
        " --vae {params.vae} --out {params.folder} --log {log}"


rule sample_unconditional:
    """dit.sample.samples images from the unconditional DiT (the codes only fix n and ids)."""
    input:
        model=rules.train_dit_unconditional.output.model,
        meta=rules.train_dit_unconditional.output.meta,
        codes=f"{CODES}/{DIT['sample']['split']}/manifest.json",
        vae=rules.train_vae.output.report,
    output:
        samples=f"{GENERATE_DIR}/unconditional/samples.npz",
        summary=f"{GENERATE_DIR}/unconditional/samples.json",
        grid=report(
            f"{GENERATE_DIR}/unconditional/grid.png",
            caption="../report/generated_unconditional.rst",
            category="Generation",
        ),
    params:
        preset=PRESET,
        settings=DIT["sample"],
        run=lambda wildcards, input: os.path.dirname(input.model),
        codes=lambda wildcards, input: Path(input.codes).parents[1],
        vae=lambda wildcards, input: os.path.dirname(input.vae),
        folder=lambda wildcards, output: os.path.dirname(output.samples),
    log:
        f"{LOGS}/{PRESET}/sample_unconditional.log",
    threads: DIT["train"]["threads"]
    resources:
        **resources("sample_unconditional", mem_mb=16000, runtime=120),
    conda:
        ENV
    shell:
        launch("sample_unconditional")
        + "dlc sample-dit --preset {params.preset} --model {params.run} --codes {params.codes}"
        " --vae {params.vae} --out {params.folder} --log {log}"


rule real_samples:
    """Floor: evaluate.samples real images of evaluate.floor_split."""
    input:
        images=f"{DATA}/images.parquet",
    output:
        samples=SAMPLES["real"],
        summary=f"{RESULTS}/floors/real/samples.json",
    params:
        preset=PRESET,
        settings=EVALUATE,
        folder=lambda wildcards, output: os.path.dirname(output.samples),
    log:
        f"{LOGS}/{PRESET}/real_samples.log",
    threads: EVALUATE["threads"]
    resources:
        **resources("real_samples", mem_mb=8000, runtime=60),
    conda:
        ENV
    shell:
        launch("real_samples")
        + "dlc real-samples --preset {params.preset} --images {input.images}"
        " --out {params.folder} --log {log}"


rule vae_samples:
    """Floor: the same real images through the VAE (encode, decode)."""
    input:
        images=f"{DATA}/images.parquet",
        vae=rules.train_vae.output.report,
    output:
        samples=SAMPLES["vae"],
        summary=f"{RESULTS}/floors/vae/samples.json",
    params:
        preset=PRESET,
        settings={"evaluate": EVALUATE, "vae": VAE},
        vae=lambda wildcards, input: os.path.dirname(input.vae),
        folder=lambda wildcards, output: os.path.dirname(output.samples),
    log:
        f"{LOGS}/{PRESET}/vae_samples.log",
    threads: EVALUATE["threads"]
    resources:
        **resources("vae_samples", mem_mb=8000, runtime=60),
    conda:
        ENV
    shell:
        launch("vae_samples")
        + "dlc real-samples --preset {params.preset} --images {input.images}"
        " --vae {params.vae} --out {params.folder} --log {log}"


rule evaluate:
    """FD/FID, KID, precision/recall, Vendi (and sFID, IS with Inception) of one sample set."""
    priority: 58  # fid_dlc.json opens the eta sweep
    input:
        samples=lambda wildcards: SAMPLES[wildcards.evaluation],
        images=f"{DATA}/images.parquet",
        judge=rules.train_judge.output.report,
    output:
        result=f"{RESULTS}/fid_{{evaluation}}.json",
    params:
        preset=PRESET,
        settings=EVALUATE,
        judge=lambda wildcards, input: os.path.dirname(input.judge),
        cache=f"{RESULTS}/reference_features",
    log:
        f"{LOGS}/{PRESET}/evaluate_{{evaluation}}.log",
    threads: EVALUATE["threads"]
    resources:
        **resources("evaluate", mem_mb=16000, runtime=60),
    conda:
        ENV
    shell:
        launch("evaluate")
        + "dlc evaluate --preset {params.preset} --samples {input.samples}"
        " --name {wildcards.evaluation} --images {input.images} --judge {params.judge}"
        " --cache {params.cache} --out {output.result} --log {log}"


ETA_PARTS = 2  # jobs sharing the eta sweep's points (two cores, or two SLURM jobs)


rule eta_sweep_part:
    """Generate and evaluate the points p of evaluate.eta_sweep x evaluate.eta_seeds with
    p mod ETA_PARTS = part (fid_dlc.json stands for its own point when it has the sweep's n)."""
    priority: 60
    input:
        sedd=rules.train_sedd.output.model,
        dit=rules.train_dit.output.model,
        vae=rules.train_vae.output.report,
        images=f"{DATA}/images.parquet",
        judge=rules.train_judge.output.report,
        dlc=f"{RESULTS}/fid_dlc.json",
    output:
        points=f"{RESULTS}/eta_sweep/part{{part}}/points.json",
    params:
        preset=PRESET,
        settings={"sedd": SEDD["sample"], "dit": DIT["sample"], "evaluate": EVALUATE},
        sedd=lambda wildcards, input: os.path.dirname(input.sedd),
        dit=lambda wildcards, input: os.path.dirname(input.dit),
        vae=lambda wildcards, input: os.path.dirname(input.vae),
        judge=lambda wildcards, input: os.path.dirname(input.judge),
        cache=f"{RESULTS}/reference_features",
        folder=lambda wildcards, output: os.path.dirname(output.points),
        parts=ETA_PARTS,
    log:
        f"{LOGS}/{PRESET}/eta_sweep_part{{part}}.log",
    threads: DIT["train"]["threads"]
    resources:
        **resources("eta_sweep", mem_mb=16000, runtime=240),
    conda:
        ENV
    shell:
        launch("eta_sweep")
        + "dlc eta-sweep --preset {params.preset} --sedd {params.sedd} --dit {params.dit}"
        " --vae {params.vae} --images {input.images} --judge {params.judge}"
        " --cache {params.cache} --include {input.dlc} --task {wildcards.part}"
        " --tasks {params.parts} --out {params.folder} --log {log}"


rule eta_sweep:
    """Distance vs eta, mean and std over seeds: the paper's Appendix A U-curve."""
    priority: 60
    input:
        parts=expand(f"{RESULTS}/eta_sweep/part{{part}}/points.json", part=range(ETA_PARTS)),
    output:
        summary=f"{RESULTS}/fid_eta_sweep.json",
        figure=report(
            f"{RESULTS}/fid_eta_sweep.png",
            caption="../report/eta_sweep.rst",
            category="Generation",
        ),
    params:
        preset=PRESET,
    log:
        f"{LOGS}/{PRESET}/eta_curve.log",
    threads: 1
    resources:
        **resources("eta_curve", mem_mb=2000, runtime=10),
    conda:
        ENV
    shell:
        launch("eta_curve")
        + "dlc eta-curve --preset {params.preset} --parts {input.parts}"
        " --summary {output.summary} --figure {output.figure} --log {log}"


rule headline:
    """The preset's DLC result under the name the paper's users ask for (fid_dlc512.json)."""
    input:
        result=f"{RESULTS}/fid_dlc.json",
    output:
        result=f"results/fid_dlc{SEM['length']}.json",
    log:
        f"{LOGS}/{PRESET}/headline.log",
    conda:
        ENV
    shell:
        "(cp {input.result} {output.result}.tmp && mv {output.result}.tmp {output.result})"
        " 2> {log}"
