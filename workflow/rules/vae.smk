# Image autoencoder -> latent cache (what the DiT trains on, never pixels).
# A split's latent folder is complete when its manifest.json exists: the rules name manifests,
# so a failed caching run keeps its finished shards and the rerun resumes from them.


rule train_vae:
    """Train the small VAE (vae.source: train) or take the pretrained one; held-out PSNR."""
    priority: 90
    input:
        images=f"{DATA}/images.parquet",
    output:
        report=f"{VAE_DIR}/vae.json",
        grid=report(
            f"{VAE_DIR}/vae_recon.png",
            caption="../report/vae.rst",
            category="Codes",
        ),
    params:
        preset=PRESET,
        settings={key: value for key, value in VAE.items() if key != "cache"},
        run=lambda wildcards, output: os.path.dirname(output.report),
    log:
        f"{LOGS}/{PRESET}/train_vae.log",
    threads: VAE["train"]["threads"] if VAE["train"] else 1
    resources:
        **resources("train_vae", mem_mb=8000, runtime=60),
    conda:
        ENV
    shell:
        launch("train_vae")
        + "dlc train-vae --preset {params.preset} --images {input.images} --out {params.run}"
        " --log {log}"


rule cache_latents:
    """Encode every split of vae.cache.splits into float16 latent shards + a Parquet index."""
    priority: 80
    input:
        images=f"{DATA}/images.parquet",
        vae=rules.train_vae.output.report,
    output:
        manifests=[f"{LATENTS}/{split}/manifest.json" for split in VAE["cache"]["splits"]],
    params:
        preset=PRESET,
        settings=VAE["cache"],
        vae=lambda wildcards, input: os.path.dirname(input.vae),
        # results/<preset>/latents/<split>/manifest.json -> results/<preset>/latents
        folder=lambda wildcards, output: Path(output.manifests[0]).parents[1],
    log:
        f"{LOGS}/{PRESET}/cache_latents.log",
    threads: VAE["train"]["threads"] if VAE["train"] else 2
    resources:
        **resources("cache_latents", mem_mb=8000, runtime=120),
    conda:
        ENV
    shell:
        launch("cache_latents")
        + "dlc cache-latents --preset {params.preset} --images {input.images} --vae {params.vae}"
        " --out {params.folder} --log {log}"
