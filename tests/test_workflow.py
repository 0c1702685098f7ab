"""The workflow files: Snakemake and DVC run the same commands on the same files, the SLURM
profile resolves from the repository root, and the micro DAG runs end to end through both."""

from __future__ import annotations

import ast
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


SECTIONS = ("data", "sem", "probe", "sedd", "vae", "dit", "judge", "evaluate", "compose", "text",
            "text_pretrained", "text_study", "resources", "slurm")
# How the stages and the generation layer name a preset: `preset.sem`, `cfg.active.sem`, `p.sem`;
# `preset.text_params(section)` reads the text model its command's --section names.
SECTION_USE = re.compile(r"\b(?:preset|active|p)\.(" + "|".join(SECTIONS) + r")\b")
TEXT_PARAMS = re.compile(r"\b(?:preset|active|p)\.text_params\(")


def sections_read(command: str, text_section: str = "text") -> set[str]:
    """The preset sections `dlc <command>` reads: named in its stage module or in a module of
    the generation layer it imports (at any depth; a superset is safe, a DVC stage that lists
    more params only reruns more often)."""
    package = ROOT / "src"
    files, todo = set(), [package / "dlc/stages" / f"{command.replace('-', '_')}.py"]
    while todo:
        path = todo.pop()
        files.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "dlc.generation"):
                for name in (node.module, *(f"{node.module}.{a.name}" for a in node.names)):
                    module = package / f"{name.replace('.', '/')}.py"
                    if module.is_file() and module not in files:
                        todo.append(module)
    read = {match for path in files for match in SECTION_USE.findall(path.read_text())}
    if any(TEXT_PARAMS.search(path.read_text()) for path in files):
        read.add(text_section)
    return read


def test_each_dvc_stage_declares_the_params_sections_its_command_reads():
    """So `dvc exp run -S presets.tiny.sedd.sample.remask_eta=...` reruns SEDD's stages and
    what reads their outputs, not SEM, the VAE or the DiT; and a changed section is never
    missed. The cluster sections (resources, slurm) change where jobs run, not results."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    checked = 0
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        command = stage["cmd"].split()
        if command[0] != "dlc" or command[1] == "report":   # report hashes the whole file
            continue
        declared = {p.split(".")[2] for p in stage.get("params", [])
                    if p.startswith("presets.${preset}.")}
        assert "presets" not in stage.get("params", []), name
        section = command[command.index("--section") + 1] if "--section" in command else "text"
        read = sections_read(command[1], section)
        assert read <= declared, f"{name}: reads {sorted(read - declared)}, not in its params"
        assert declared <= read, f"{name}: lists {sorted(declared - read)}, which it never reads"
        assert not declared & {"resources", "slurm"}, name
        checked += 1
    assert checked >= 20


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
    assert rules == {"preflight", "data", "train_sem", "extract_codes", "train_sedd",
                     "sample_codes", "train_vae", "cache_latents", "train_dit", "generate_dlc",
                     "train_judge", "evaluate", "headline"}
    resources = params["presets"]["imagenet"]["resources"]["train_dit"]
    assert f"DLC_JOB=train_dit DLC_RESOURCES=mem_mb={resources['mem_mb']}" in text
    assert f"gpu={resources['gpu']}" in text and "DLC_LAUNCHER=slurm" in text
    preflight = re.search(r"^(?:local)?rule preflight:.*?Shell command: (.*?)$", text,
                          flags=re.M | re.S)
    assert preflight and "DLC_LAUNCHER" not in preflight[1]     # on the login node, first


def test_config_overrides_other_than_preset_are_refused():
    result = subprocess.run([str(BIN / "snakemake"), "-n", "-c1", "--config",
                             "toy={diffusion: {schedule: linear}}"],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "only `--config preset=...` (and launcher=...) may override params.yaml" in (
        result.stdout + result.stderr)


def test_micro_dag_end_to_end_through_snakemake_then_dvc(micro_run, tmp_path):
    """The default DAG at micro size (toy study, data, SEM, codes, probe, SEDD, ...), first
    through Snakemake (the shared `micro_run`), then through DVC in a git repository (twice:
    the second run must find nothing to do); then DVC versions the artifacts: pushed to a
    remote, a fresh clone at that commit pulls the same bytes and has nothing to reproduce."""
    params = micro_params()  # tests/micro.yaml: what `make micro` runs
    smk = micro_run
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
    git = ["git", "-c", "user.name=dlc tests", "-c", "user.email=tests@dlc.invalid"]
    run([*git, "init", "-q"], work)
    run([str(BIN / "dvc"), "init", "-q"], work)
    run([str(BIN / "dvc"), "repro"], work)
    again = run([str(BIN / "dvc"), "repro"], work)
    assert "Data and pipelines are up to date" in again
    metrics = run([str(BIN / "dvc"), "metrics", "show"], work)
    assert "knn_kl" in metrics and "judge_fd_ratio_dlc_unconditional" in metrics
    dvc_kld = json.loads((work / "results/toy/kld.json").read_text())
    # Same seeds, same code: both engines give the same numbers.
    assert dvc_kld["results"]["K4"]["oracle"]["knn_kl"] == pytest.approx(
        kld["results"]["K4"]["oracle"]["knn_kl"], rel=1e-6)

    remote = tmp_path / "remote"
    run([str(BIN / "dvc"), "remote", "add", "-d", "store", str(remote)], work)
    run([*git, "add", "-A"], work)
    run([*git, "commit", "-q", "-m", "micro study"], work)
    run([str(BIN / "dvc"), "push"], work)
    clone = tmp_path / "clone"
    run([*git, "clone", "-q", str(work), str(clone)], tmp_path)
    assert not (clone / "results/tiny/sedd/model.safetensors").exists()   # in the remote only
    run([str(BIN / "dvc"), "pull"], clone)
    assert "Data and pipelines are up to date" in run([str(BIN / "dvc"), "repro"], clone)
    cached = ["results/tiny/codes", "results/tiny/latents", "results/tiny/sem/encoder.safetensors",
              "results/tiny/sedd/model.safetensors", "results/tiny/dit/model.safetensors"]
    for name in cached:
        files = sorted(p.relative_to(work) for p in (work / name).rglob("*") if p.is_file()) \
            if (work / name).is_dir() else [Path(name)]
        assert files, name
        for file in files:
            assert (clone / file).read_bytes() == (work / file).read_bytes(), file
