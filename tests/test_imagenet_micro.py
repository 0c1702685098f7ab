"""The imagenet preset end to end at micro size: its whole DAG to the headline FID file, the
composition target and text -> code (codes of captioned webdataset shards, the transformers
back end), on tiny assets in the real on-disk formats (tests/imagenet_assets.py),
every `dlc` command submitted through submitit's local launcher the way `--profile slurm`
submits it to SLURM (training jobs as two DDP processes, sampling jobs as two array tasks)."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import yaml

from dlc.data.codes import read_codes

from . import imagenet_assets
from .conftest import BIN, ENV, ROOT
from .micro_dag import workspace


def changed_keys(base, other, prefix=""):
    """The dotted keys whose values differ between two params mappings."""
    if isinstance(base, dict) and isinstance(other, dict):
        return {key for name in base.keys() | other.keys()
                for key in changed_keys(base.get(name), other.get(name), f"{prefix}{name}.")}
    return set() if base == other else {prefix.rstrip(".")}


ALLOWED = re.compile(
    r"^preset$|\.(train_dir|val_dir|weights|pretrained|reference_batch|inception_weights|"
    r"model|trust_remote_code|captions)$"                                         # paths
    r"|\.(resolution|img_size|embed_dim|depth|num_heads|length|vocab|prototypes|hidden|"
    r"bottleneck|global_size|local_size|local_crops|size|samples|reference_images|"
    r"eta_samples|kid_subsets|kid_subset_size|isc_splits|eval_images|caption_length|"
    r"pairs_per_combination|samples_per_pair|modes|scatter_modes|width|fit_samples)$"  # sizes
    r"|\.(steps|warmup_steps|teacher_temp_warmup_steps|checkpoint_every|sample_every|"
    r"epochs|batch_size|shard_size|threads|workers|gpu|array|sampling_steps)$")   # counts


def test_the_micro_params_differ_from_the_preset_only_in_sizes_paths_and_counts(tmp_path):
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    paths = {key: tmp_path / key for key in ("train_dir", "val_dir", "backbone", "vae",
                                             "inception", "reference", "text", "captions")}
    micro = imagenet_assets.imagenet_params(paths, micro=True)
    changed = changed_keys(committed, micro)
    assert changed and all(key.split(".")[0] in ("preset", "presets", "toy") for key in changed)
    assert not [key for key in changed if key.startswith("presets.tiny")]
    assert [key for key in changed if not ALLOWED.search(key)] == []


def test_the_imagenet_dag_runs_end_to_end_through_submitit(tmp_path):
    paths = imagenet_assets.build(tmp_path / "assets")
    params = imagenet_assets.imagenet_params(paths, micro=True)
    work = workspace(tmp_path / "study", params)
    length = params["presets"]["imagenet"]["sem"]["length"]
    result = subprocess.run([str(BIN / "snakemake"), "-c2", "--config",   # every default target
                             "launcher=submitit-local"], cwd=work, env=ENV,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    ran = set(re.findall(r"^(?:local)?rule (\w+):$", result.stdout + result.stderr, re.M))
    assert ran >= {"preflight", "data", "train_sem", "extract_codes", "caption_codes", "probe",
                   "train_sedd", "sample_codes", "train_vae", "cache_latents", "train_dit",
                   "sample_dit", "train_dit_unconditional", "generate_dlc",
                   "sample_unconditional", "train_judge", "real_samples", "vae_samples", "evaluate",
                   "eta_sweep_part", "eta_sweep", "composition_study", "train_text2code",
                   "text2code_study", "report", "headline"}, ran
    fid = json.loads((work / f"results/fid_dlc{length}.json").read_text())
    metrics = fid["metrics"]["inception"]
    for name in ("fid", "sfid", "inception_score", "precision", "recall"):
        assert name in metrics, name
    preflight = json.loads((work / "results/imagenet/preflight.json").read_text())
    assert preflight["images"]["data.folder.train_dir"] == 25
    jobs = {job.name for job in (work / "results/logs/imagenet/submitit").iterdir()}
    assert {"train_sem", "train_sedd", "train_dit", "generate_dlc", "evaluate",
            "caption_codes"} <= jobs
    manifest = json.loads((work / "results/imagenet/codes/captions/manifest.json").read_text())
    assert manifest["rows"] == 10 and manifest["split"] == "captions"   # 2 shards x 5 pairs
    text_run = json.loads((work / "results/imagenet/text2code_model/meta.json").read_text())
    assert text_run["pairs"] == 10 and text_run["text"]["backend"] == "transformers"

    # ImageNet has no held-out combinations, so the composition and text studies skip: the
    # user's commands, composing two validation images and writing from a prompt, run instead.
    run = "results/imagenet"
    sources = read_codes(work / run / "codes/val", length,
                         params["presets"]["imagenet"]["sem"]["vocab"]).image_ids[:2].tolist()
    for command in (["compose", "--sources", *sources, "--codes", f"{run}/codes/val"],
                    ["text2code", "a shark in the water", "--model", f"{run}/text2code_model"]):
        out = work / "made" / command[0]
        subprocess.run([str(BIN / "dlc"), *command, "--dit", f"{run}/dit", "--vae",
                        f"{run}/vae", "--out", str(out), "--launcher", "submitit-local"],
                       cwd=work, env=ENV, check=True, capture_output=True, timeout=300)
        assert np.load(out / "samples.npz")["arr_0"].shape[1:] == (
            imagenet_assets.RESOLUTION, imagenet_assets.RESOLUTION, 3)
