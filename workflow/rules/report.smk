# The run's report: every number a user reads, read back from the results files (dlc report).


rule report:
    """results/<preset>/report.md, report.json (dvc metrics) and eta_curve.csv (dvc plots)."""
    input:
        report_inputs(),
    output:
        report=f"{RESULTS}/report.md",
        figures=directory(f"{RESULTS}/report"),
        metrics=f"{RESULTS}/report.json",
        curve=f"{RESULTS}/eta_curve.csv",
    params:
        preset=PRESET,
        results=lambda wildcards, output: os.path.dirname(output.report),
        logs=LOGS,
    log:
        f"{LOGS}/{PRESET}/report.log",
    threads: 1
    resources:
        **resources("report", mem_mb=2000, runtime=10),
    conda:
        ENV
    shell:
        launch("report")
        + "dlc report --preset {params.preset} --results {params.results} --logs {params.logs}"
        " --out {output.report} --log {log}"
