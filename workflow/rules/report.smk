# The run's report: every number a user reads, read back from the results files (dlc report).
from dlc.stages.report import FIGURES, INPUTS


def report_inputs():
    """The report's inputs as this preset's paths (toy/ lives beside the preset's folder)."""
    return [f"results/{path}" if path.startswith("toy/") else f"{RESULTS}/{path}"
            for path in [*INPUTS.values(), *FIGURES.values()]]


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
        results=RESULTS,
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
