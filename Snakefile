"""The dlc study as a Snakemake workflow: thin rules, each one `dlc <stage>` command.

    snakemake -c2                                  # the active preset's default targets
    snakemake -c2 results/toy/kld.json             # the paper's Section 3 study
    snakemake --profile slurm results/toy/kld.json # the same, every job a SLURM job (submitit)

Every value comes from params.yaml (checked against the schema generated from
src/dlc/config/); dvc.yaml runs the same commands (tests/test_workflow.py keeps them equal).
"""

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "params.yaml"


# Where the dlc commands run: here (local), or each as a submitit job (`--config launcher=slurm`,
# which the slurm profile sets). Not a study parameter, so it leaves the config before checks.
LAUNCHER = config.pop("launcher", "local")


validate(config, "workflow/schemas/params.schema.json")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sem.smk"
include: "workflow/rules/sedd.smk"
include: "workflow/rules/vae.smk"
include: "workflow/rules/dit.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/compose.smk"
include: "workflow/rules/text.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        default_targets(),
    default_target: True
