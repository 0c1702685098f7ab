"""The workflow files: Snakemake and DVC run the same commands on the same files, the SLURM
profile resolves from the repository root, and the micro DAG runs end to end through both."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import BIN, ENV, ROOT
from .micro_dag import micro_params, workspace


def run(args, cwd, timeout=600):
    result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def snakemake_jobs(cwd: Path, *extra: str) -> list[dict]:
    """Every job of a forced dry run: rule, outputs, inputs and the shell command."""
    text = run([str(BIN / "snakemake"), "-n", "-p", "--forceall", "-c1", *extra], cwd)
    jobs, job = [], None
    for line in text.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):$", line):
            job = {"rule": match[1], "output": set(), "input": set(), "cmd": None}
            jobs.append(job)
        elif job and (match := re.match(r"^\s+(output|input): (.*)$", line)):
            job[match[1]] = set(match[2].split(", "))
        elif job and line.startswith("Shell command: "):
            job["cmd"] = line.removeprefix("Shell command: ").strip()
    return [j for j in jobs if j["rule"] != "all"]


def dvc_stages(cwd: Path) -> list[dict]:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(cwd)) as repo:
        return [{"name": stage.addressing, "cmd": " ".join(stage.cmd.split()),
                 "deps": {d.def_path for d in stage.deps if not isinstance(d, ParamsDependency)},
                 "outs": {o.def_path for o in stage.outs}}
                for stage in repo.index.stages]


def _covers(paths: set[str], folders_or_files: set[str]) -> bool:
    """Every path is one of folders_or_files or lies inside one of them, and each of those
    holds at least one path (DVC may name a folder where Snakemake names its files)."""
    def inside(path, other):
        return path == other or path.startswith(other.rstrip("/") + "/")

    return (all(any(inside(p, f) for f in folders_or_files) for p in paths)
            and all(any(inside(p, f) for p in paths) for f in folders_or_files))


def test_snakemake_and_dvc_run_identical_commands_on_identical_files(tmp_path):
    work = workspace(tmp_path, yaml.safe_load((ROOT / "params.yaml").read_text()))
    run([str(BIN / "dvc"), "init", "--no-scm", "-q"], work)
    # `headline` only copies fid_dlc.json to results/fid_dlc<L>.json, a name DVC cannot build
    # (no nested interpolation); DVC users read results/<preset>/fid_dlc.json.
    jobs = {j["cmd"]: j for j in snakemake_jobs(work) if j["rule"] != "headline"}
    stages = dvc_stages(work)
    assert len(stages) == len(jobs)
    for stage in stages:
        job = jobs.get(stage["cmd"])
        assert job is not None, f"no Snakemake job runs {stage['name']}: {stage['cmd']}"
        assert _covers(job["output"], stage["outs"]), stage["name"]
        assert _covers(job["input"], stage["deps"]), stage["name"]


def test_default_target_and_slurm_profile_dry_run_from_the_root():
    text = run([str(BIN / "snakemake"), "-n", "-c2"], ROOT)
    assert "toy_report" in text or "Nothing to be done" in text
    text = run([str(BIN / "snakemake"), "-n", "--profile", "slurm", "results/toy/kld.json"],
               ROOT)
    assert "This was a dry-run" in text or "Nothing to be done" in text


def test_the_imagenet_study_on_slurm_lists_every_job_with_its_resources(tmp_path):
    """`snakemake -n --profile slurm results/fid_dlc512.json` with preset: imagenet: every job
    of the study, each dlc command submitted through submitit with the rule's resources."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["preset"] = "imagenet"
    work = workspace(tmp_path, params)
    (work / "slurm").symlink_to(work / "workflow" / "profiles" / "slurm")
    text = run([str(BIN / "snakemake"), "-n", "-p", "--profile", "slurm",
                "results/fid_dlc512.json"], work)
    rules = set(re.findall(r"^(?:local)?rule (\w+):$", text, flags=re.M))
    assert rules == {"data", "train_sem", "extract_codes", "train_sedd", "sample_codes",
                     "train_vae", "cache_latents", "train_dit", "generate_dlc", "train_judge",
                     "evaluate", "headline"}
    resources = params["presets"]["imagenet"]["resources"]["train_dit"]
    assert f"DLC_JOB=train_dit DLC_RESOURCES=mem_mb={resources['mem_mb']}" in text
    assert f"gpu={resources['gpu']}" in text and "DLC_LAUNCHER=slurm" in text


def test_config_overrides_other_than_preset_are_refused():
    result = subprocess.run([str(BIN / "snakemake"), "-n", "-c1", "--config",
                             "toy={diffusion: {schedule: linear}}"],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "only `--config preset=...` (and launcher=...) may override params.yaml" in (
        result.stdout + result.stderr)


def test_micro_dag_end_to_end_through_snakemake_then_dvc(tmp_path):
    """The default DAG at micro size (toy study, data, SEM, codes, probe, SEDD), first through
    Snakemake, then through DVC (twice: the second run must find nothing to do)."""
    params = micro_params()  # tests/micro.yaml: what `make micro` runs
    smk = workspace(tmp_path / "snakemake", params)
    run([str(BIN / "snakemake"), "-c2"], smk)
    kld = json.loads((smk / "results/toy/kld.json").read_text())
    assert set(kld["results"]) == {"K4"}
    assert set(kld["results"]["K4"]) == {"unconditional", "oracle", "gmm"}
    for name in ("kld_vs_modes.png", "samples.png", "loss.png"):
        assert (smk / "results/toy" / name).stat().st_size > 1000
    assert (smk / "results/tiny/data/images.parquet").is_file()
    probe = json.loads((smk / "results/tiny/probe.json").read_text())
    assert set(probe["top1"]) == set(params["presets"]["tiny"]["probe"]["targets"])
    for split in params["presets"]["tiny"]["sem"]["extract"]["splits"]:
        assert (smk / f"results/tiny/codes/{split}/manifest.json").is_file()
    samples = json.loads((smk / "results/tiny/sedd/samples.json").read_text())
    assert 0 <= samples["tv_per_position"] <= 1
    assert (smk / "results/logs/toy/report.log").is_file()
    evaluate = params["presets"]["tiny"]["evaluate"]
    for name in ("dlc", "encode_decode", "unconditional"):
        result = json.loads((smk / f"results/tiny/fid_{name}.json").read_text())
        assert result["n"] == evaluate["samples"]
        assert set(result["metrics"]) == set(evaluate["extractors"])
    sweep = json.loads((smk / "results/tiny/fid_eta_sweep.json").read_text())
    assert [c["remask_eta"] for c in sweep["curve"]] == evaluate["eta_sweep"]
    assert {(p["remask_eta"], p["seed"]) for p in sweep["points"]} == {
        (eta, seed) for eta in evaluate["eta_sweep"] for seed in evaluate["eta_seeds"]}
    assert (smk / "results/tiny/fid_eta_sweep.png").stat().st_size > 1000
    headline = f"results/fid_dlc{params['presets']['tiny']['sem']['length']}.json"
    assert json.loads((smk / headline).read_text())["name"] == "dlc"
    leftovers = [p for p in (smk / "results").rglob("*.tmp")]
    assert not leftovers, leftovers
    text = (smk / "results/tiny/report.md").read_text()
    assert "## The claims" in text and "## Time" in text
    headline_numbers = json.loads((smk / "results/tiny/report.json").read_text())
    assert headline_numbers["judge_fd_dlc"] == pytest.approx(
        json.loads((smk / "results/tiny/fid_dlc.json").read_text())["metrics"]["judge"]["fd"])
    run([str(BIN / "snakemake"), "--report", "results/tiny/report.html"], smk)
    assert (smk / "results/tiny/report.html").stat().st_size > 10_000

    work = workspace(tmp_path / "dvc", params)
    run([str(BIN / "dvc"), "init", "--no-scm", "-q"], work)
    run([str(BIN / "dvc"), "repro"], work)
    again = run([str(BIN / "dvc"), "repro"], work)
    assert "Data and pipelines are up to date" in again
    metrics = run([str(BIN / "dvc"), "metrics", "show"], work)
    assert "knn_kl" in metrics and "judge_fd_ratio_dlc_unconditional" in metrics
    dvc_kld = json.loads((work / "results/toy/kld.json").read_text())
    # Same seeds, same code: both engines give the same numbers.
    assert dvc_kld["results"]["K4"]["oracle"]["knn_kl"] == pytest.approx(
        kld["results"]["K4"]["oracle"]["knn_kl"], rel=1e-6)
