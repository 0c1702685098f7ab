# The paper's Section 3: K-mode Gaussian grids, one model per (K, variant), then a report.


wildcard_constraints:
    modes=r"\d+",
    variant="unconditional|oracle|gmm",


rule toy_train:
    """Train one improved-DDPM MLP on a K-mode grid."""
    output:
        model=f"{TOY}/runs/K{{modes}}/{{variant}}/model.safetensors",
        meta=f"{TOY}/runs/K{{modes}}/{{variant}}/meta.json",
        loss=f"{TOY}/runs/K{{modes}}/{{variant}}/loss.csv",
    params:
        settings={
            key: config["toy"][key]
            for key in (
                "std", "spacing", "normalize", "seed", "model", "diffusion", "train", "gmm"
            )
        },
        run=lambda wildcards, output: os.path.dirname(output.model),
    log:
        f"{LOGS}/toy/train-K{{modes}}-{{variant}}.log",
    threads: config["toy"]["train"]["threads"]
    resources:
        **resources("toy_train", mem_mb=2000, runtime=60),
    conda:
        ENV
    shell:
        launch("toy_train")
        + "dlc toy-train --modes {wildcards.modes} --variant {wildcards.variant}"
        " --out {params.run} --log {log}"


rule toy_eval:
    """Sample one model; KL(true || model) by KDE and kNN, mode coverage, each with its floor."""
    input:
        model=rules.toy_train.output.model,
        meta=rules.toy_train.output.meta,
    output:
        metrics=f"{TOY}/runs/K{{modes}}/{{variant}}/metrics.json",
        samples=f"{TOY}/runs/K{{modes}}/{{variant}}/samples.npy",
    params:
        settings=config["toy"]["eval"],
        run=lambda wildcards, input: os.path.dirname(input.model),
    log:
        f"{LOGS}/toy/eval-K{{modes}}-{{variant}}.log",
    threads: config["toy"]["train"]["threads"]
    resources:
        **resources("toy_eval", mem_mb=2000, runtime=30),
    conda:
        ENV
    shell:
        launch("toy_eval")
        + "dlc toy-eval --model {params.run} --out {params.run} --log {log}"


rule toy_report:
    """Gather every (K, variant) into kld.json and the figures."""
    input:
        metrics=toy_runs("metrics.json"),
        samples=toy_runs("samples.npy"),
        loss=toy_runs("loss.csv"),
    output:
        kld=f"{TOY}/kld.json",
        curve=report(
            f"{TOY}/kld_vs_modes.png",
            caption="../report/toy.rst",
            category="Section 3",
        ),
        samples=f"{TOY}/samples.png",
        loss=f"{TOY}/loss.png",
    params:
        scatter_modes=config["toy"]["scatter_modes"],
        # results/toy/runs/K<K>/<variant>/metrics.json -> results/toy/runs
        runs=lambda wildcards, input: Path(input.metrics[0]).parents[2],
        out=lambda wildcards, output: os.path.dirname(output.kld),
    log:
        f"{LOGS}/toy/report.log",
    threads: 1
    resources:
        **resources("toy_report", mem_mb=2000, runtime=10),
    conda:
        ENV
    shell:
        launch("toy_report")
        + "dlc toy-report --runs {params.runs} --out {params.out} --log {log}"
