# Paths and checks shared by every rule. The layout is the data contract between stages:
#   results/<preset>/...   everything the image pipeline of a preset makes
#   results/toy/...        the Section 3 study (independent of the preset)
#   results/logs/...       one log file per job
import os
from pathlib import Path

import yaml
from dlc.config import load as load_params
from dlc.stages.preflight import external_paths
from dlc.stages.report import FIGURES, INPUTS

PRESET = config["preset"]
RESULTS = f"results/{PRESET}"
DATA = f"{RESULTS}/data"
SEM_DIR = f"{RESULTS}/sem"
CODES = f"{RESULTS}/codes"
SEM = config["presets"][PRESET]["sem"]
PROBE = config["presets"][PRESET]["probe"]
SEDD_DIR = f"{RESULTS}/sedd"
SEDD = config["presets"][PRESET]["sedd"]
VAE_DIR = f"{RESULTS}/vae"
VAE = config["presets"][PRESET]["vae"]
LATENTS = f"{RESULTS}/latents"
DIT_DIR = f"{RESULTS}/dit"
DIT = config["presets"][PRESET]["dit"]
JUDGE_DIR = f"{RESULTS}/judge"
JUDGE = config["presets"][PRESET]["judge"]
EVALUATE = config["presets"][PRESET]["evaluate"]
COMPOSE = config["presets"][PRESET]["compose"]
TEXT = config["presets"][PRESET]["text"]
TEXT_DIR = f"{RESULTS}/text2code_model"
TEXT_PRETRAINED = config["presets"][PRESET]["text_pretrained"]
TEXT_PRETRAINED_DIR = f"{RESULTS}/text2code_pretrained_model"
GENERATE_DIR = f"{RESULTS}/generate"
RESOURCES = config["presets"][PRESET]["resources"]
TOY = "results/toy"
LOGS = "results/logs"
ENV = "../../envs/dlc.yaml"


def _without_preset(params):
    return {key: value for key, value in params.items() if key != "preset"}


# The dlc commands read params.yaml themselves and get only the preset from here, so any other
# --config override would be silently ignored by them: refuse it.
with open("params.yaml") as _handle:
    if _without_preset(yaml.safe_load(_handle)) != _without_preset(config):
        raise ValueError(
            "only `--config preset=...` (and launcher=...) may override params.yaml; edit "
            "params.yaml for the rest "
            "(the dlc commands read it directly)"
        )


# `priority:` of the rules: the image chain's longest path (data, SEM and VAE, codes and latents,
# the code DiT and SEDD, then the eta sweep) starts first; the toy study, text and the
# evaluations fill the other core around it (the tiny preset runs one thread per job).


# LAUNCHER (Snakefile): under `snakemake --profile slurm` every dlc command submits itself as a
# SLURM job through submitit and waits for it (src/dlc/launch/jobs.py).
_RULE_RESOURCES = {}


def resources(rule_name, **defaults):
    """A rule's resources: its defaults, replaced by presets.<preset>.resources.<rule_name>."""
    _RULE_RESOURCES[rule_name] = {**defaults, **RESOURCES.get(rule_name, {})}
    return _RULE_RESOURCES[rule_name]


def launch(rule_name):
    """Shell prefix of a rule's dlc command: nothing locally; under the slurm profile, the
    launcher, the job name and the rule's resources for submitit."""
    if LAUNCHER == "local":
        return ""
    given = ",".join(f"{k}={v}" for k, v in _RULE_RESOURCES.get(rule_name, {}).items())
    return f"DLC_LAUNCHER={LAUNCHER} DLC_JOB={rule_name} DLC_RESOURCES={given} "



def toy_runs(name):
    return [
        f"{TOY}/runs/K{modes}/{variant}/{name}"
        for modes in config["toy"]["modes"]
        for variant in config["toy"]["variants"]
    ]


def default_targets():
    return [
        f"{TOY}/kld.json",
        f"{TOY}/kld_vs_modes.png",
        f"{DATA}/images.parquet",
        f"{RESULTS}/probe.json",
        f"{SEDD_DIR}/samples.json",
        *[f"{CODES}/{split}/manifest.json" for split in SEM["extract"]["splits"]],
        f"{VAE_DIR}/vae.json",
        f"{DIT_DIR}/decoded/samples.json",
        *evaluation_targets(),
        f"{RESULTS}/composition.json",
        f"{RESULTS}/text2code.json",
        f"{RESULTS}/report.md",
    ]


def evaluation_targets():
    """The study's numbers: DLC generation, encode-decode, the unconditional DiT, the floors
    (real images, VAE reconstructions), the eta sweep, and the headline file
    results/fid_dlc<L>.json (results/fid_dlc512.json on ImageNet)."""
    return [
        f"{RESULTS}/fid_dlc.json",
        f"{RESULTS}/fid_encode_decode.json",
        f"{RESULTS}/fid_unconditional.json",
        f"{RESULTS}/fid_real.json",
        f"{RESULTS}/fid_vae.json",
        f"{RESULTS}/fid_eta_sweep.json",
        f"results/fid_dlc{SEM['length']}.json",
    ]


def features_dit(wildcards):
    """The baseline's model when compose.continuous_baseline asks for it."""
    return {"features_dit": rules.train_dit_features.output.model} if COMPOSE[
        "continuous_baseline"] else {}


def report_inputs():
    """The report's inputs as this preset's paths (toy/ lives beside the preset's folder)."""
    return [f"results/{path}" if path.startswith("toy/") else f"{RESULTS}/{path}"
            for path in [*INPUTS.values(), *FIGURES.values()]]
