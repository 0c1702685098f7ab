rule data:
    """The preset's images as one Parquet table (shapes generated, or folders indexed)."""
    priority: 100
    output:
        table=f"{DATA}/images.parquet",
        report=f"{DATA}/report.json",
        preview=f"{DATA}/preview.png",
    params:
        preset=PRESET,
        data=config["presets"][PRESET]["data"],
    log:
        f"{LOGS}/{PRESET}/data.log",
    threads: 1
    resources:
        **resources("data", mem_mb=4000, runtime=120),
    conda:
        ENV
    shell:
        launch("data")
        + "dlc data --preset {params.preset} --out {output.table} --report {output.report}"
        " --preview {output.preview} --log {log}"
