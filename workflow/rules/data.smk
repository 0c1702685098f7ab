# Presets that read files outside the run (data trees, weights, reference batch) check them
# first, on this machine, before any job is submitted: a missing file fails in seconds.
PREFLIGHT = external_paths(load_params("params.yaml", PRESET).active)


rule preflight:
    """Every path the preset names exists and loads; the planned GPU jobs and GPU-hours."""
    localrule: True
    output:
        f"{RESULTS}/preflight.json",
    params:
        preset=PRESET,
        benchmarks=" --benchmarks benchmarks/results" if os.path.isdir("benchmarks/results")
        else "",
    log:
        f"{LOGS}/{PRESET}/preflight.log",
    conda:
        ENV
    shell:
        "dlc preflight --preset {params.preset} --out {output}{params.benchmarks} --log {log}"


rule data:
    """The preset's images as one Parquet table (shapes generated, or folders indexed)."""
    priority: 100
    input:
        **({"preflight": rules.preflight.output[0]} if PREFLIGHT else {}),
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
