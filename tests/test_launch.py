"""Launching stages: submitit jobs (its local executor stands in for SLURM), requeue after a
timeout signal with an exact resume, the output lock, and resources from the environment."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import submitit
import torch
import yaml
from safetensors.torch import load_file

from dlc import cli
from dlc import io as dio
from dlc.config import SlurmConfig
from dlc.launch import jobs
from dlc.stages import train_dit

from .conftest import micro_params
from .test_dit_stages import setup  # noqa: F401  (the fixture: images, VAE, latents, codes)


def test_resources_from_the_environment(monkeypatch):
    monkeypatch.setenv(jobs.RESOURCES_ENV, "gpu=4,nodes=2,mem_mb=64000,runtime=90,tmpdir=7")
    assert jobs.JobResources.from_env() == jobs.JobResources(gpu=4, nodes=2, mem_mb=64000,
                                                             runtime=90)
    monkeypatch.setenv(jobs.RESOURCES_ENV, "gpu=four")
    with pytest.raises(ValueError, match="key=integer"):
        jobs.JobResources.from_env()
    monkeypatch.delenv(jobs.RESOURCES_ENV)
    assert jobs.JobResources.from_env() == jobs.JobResources()


def test_the_launcher_option_is_dropped_from_the_job_command():
    argv = ["data", "--launcher", "slurm", "--out", "x", "--launcher=slurm"]
    assert cli._without_launcher(argv) == ["data", "--out", "x"]


def write_params(tmp_path, params) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path)


def data_job(params: str, tmp_path) -> Path:
    """`dlc data` through submitit's local launcher, checked to succeed; its log file."""
    log = tmp_path / "logs" / "data.log"
    code = cli.main(["data", "--params", params, "--out", str(tmp_path / "images.parquet"),
                     "--report", str(tmp_path / "report.json"), "--launcher", "submitit-local",
                     "--log", str(log)])
    assert code == 0 and (tmp_path / "images.parquet").is_file()
    return log


def test_a_stage_runs_as_a_submitit_job_and_a_failed_job_fails_the_command(micro, tmp_path,
                                                                          caplog):
    params = write_params(tmp_path, micro)
    log = data_job(params, tmp_path)
    assert "submitted submitit-local job" in log.read_text()
    assert list((tmp_path / "logs" / "submitit" / "data").glob("*_log.err"))
    # the job fails (no codes there): the command fails, naming the job's log
    code = cli.main(["probe", "--params", params, "--codes", str(tmp_path / "nowhere"),
                     "--out", str(tmp_path / "probe.json"), "--launcher", "submitit-local",
                     "--log", str(log)])
    assert code == 2
    assert "failed; its log:" in log.read_text() and not (tmp_path / "probe.json").exists()


def test_a_job_of_two_processes_per_node_succeeds(micro, tmp_path, monkeypatch):
    """gpu=2 runs two tasks (one DDP process each); waiting for them needs every task's
    result (submitit refuses `result()` for such a job: the bug the imagenet DAG found)."""
    monkeypatch.setenv(jobs.RESOURCES_ENV, "gpu=2")
    data_job(write_params(tmp_path, micro), tmp_path)
    assert len(list((tmp_path / "logs" / "submitit" / "data").glob("*_log.err"))) == 2


def test_a_signalled_training_job_requeues_and_ends_as_an_uninterrupted_run(setup):  # noqa: F811
    preset, folder = setup
    params = micro_params()
    params["presets"]["tiny"]["dit"]["train"].update(steps=300, checkpoint_every=20)
    path = write_params(folder, params)
    argv = ["train-dit", "--params", path, "--latents", str(folder / "latents"),
            "--codes", str(folder / "codes"), "--vae", str(folder / "vae")]
    assert cli.main([*argv, "--out", str(folder / "straight")]) == 0

    # SLURM warns a job before preemption or its time limit with a signal. Send that signal
    # to the running task once its first checkpoint exists: submitit requeues the job and the
    # stage resumes. (LocalJob._interrupt would signal submitit's controller, not the task.)
    from submitit.local.local import LocalJobEnvironment

    ex = submitit.LocalExecutor(folder / "jobs", max_num_timeout=3)
    ex.update_parameters(timeout_min=10)
    job = ex.submit(jobs.StageJob([*argv, "--out", str(folder / "requeued")], cli.main))
    pointer = folder / "requeued" / "checkpoints" / "latest"
    deadline = time.time() + 180
    while not pointer.is_file() and not job.done() and time.time() < deadline:
        time.sleep(0.05)
    assert pointer.is_file() and not job.done(), "no checkpoint to resume from before the end"
    controller = job._process.pid
    task = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()[0]
    os.kill(int(task), LocalJobEnvironment._usr_sig())
    job.result()
    log = job.stdout() + (job.stderr() or "")
    assert "requeueing" in log and "resumed from" in log
    a, b = (load_file(str(folder / run / "model.safetensors")) for run in ("straight",
                                                                             "requeued"))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_two_writers_of_one_output_are_refused(micro, tmp_path):
    params = write_params(tmp_path, micro)
    out = tmp_path / "images.parquet"
    with dio.output_lock(out, "dlc data (the other pipeline)"):
        code = cli.main(["data", "--params", params, "--out", str(out),
                         "--report", str(tmp_path / "report.json"),
                         "--log", str(tmp_path / "data.log")])
        assert code == 2
        text = (tmp_path / "data.log").read_text()
        assert "is being written by pid" in text and "the other pipeline" in text
        assert not out.exists()
    assert cli.main(["data", "--params", params, "--out", str(out),
                     "--report", str(tmp_path / "report.json")]) == 0


def test_sampling_array_tasks_cover_every_index_once(setup, tmp_path):  # noqa: F811
    """Three array tasks of sample-dit as submitit jobs: every code row sampled exactly once,
    assembled in code order."""
    preset, folder = setup
    run = train_dit.train(preset.dit, preset.vae, folder / "latents", folder / "codes",
                          folder / "vae", preset.sem.length, preset.sem.vocab, folder / "dit")
    params = write_params(tmp_path, micro_params())
    out = tmp_path / "sampled"
    argv = ["sample-dit", "--params", params, "--model", str(run), "--codes",
            str(folder / "codes"), "--vae", str(folder / "vae"), "--out", str(out)]
    jobs.submit_and_wait(argv, "submitit-local", "sample_dit", tmp_path / "logs", preset.slurm,
                         jobs.JobResources(array=3), main=cli.main, supports_tasks=True)
    summary = json.loads((out / "samples.json").read_text())
    n = preset.dit.sample.samples
    assert summary["n"] == n
    batches = sorted(out.glob("shards/batch-*.npz"))
    rows = [json.loads(p.with_suffix(".json").read_text())["rows"] for p in batches]
    covered = np.concatenate([np.arange(first, last + 1) for first, last in rows])
    assert sorted(covered.tolist()) == list(range(n))
    assert np.load(out / "samples.npz")["arr_0"].shape[0] == n


def test_the_sbatch_script_carries_the_rule_resources_and_the_cluster_settings(tmp_path,
                                                                                monkeypatch):
    """The SLURM job script the slurm launcher would submit (a fake `srun` on PATH lets
    submitit build it here): GPUs, one task per GPU, nodes, CPUs, memory, time, where to run,
    and the warning signal that makes the job requeue before its time limit."""
    fake = tmp_path / "bin" / "srun"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    resources = jobs.JobResources(gpu=4, nodes=2, cpus_per_task=32, mem_mb=256000,
                                  runtime=1440)
    slurm = SlurmConfig(partition="gpu", account="vision", qos="high",
                             constraint="h100", max_requeues=3, signal_delay_s=300)
    executor = jobs.executor("slurm", tmp_path / "logs", "train_sem", resources, slurm)
    script = executor._executor._make_submission_file_text("python -m job", "uid")
    lines = set(script.splitlines())
    for expected in ("#SBATCH --job-name=train_sem", "#SBATCH --nodes=2",
                     "#SBATCH --gpus-per-node=4", "#SBATCH --ntasks-per-node=4",
                     "#SBATCH --cpus-per-task=8", "#SBATCH --mem=256GB",
                     "#SBATCH --time=1440", "#SBATCH --partition=gpu",
                     "#SBATCH --account=vision", "#SBATCH --qos=high",
                     "#SBATCH --constraint=h100", "#SBATCH --signal=USR2@300"):
        assert expected in lines, f"{expected} not in\n{script}"
    assert any(line.startswith("srun ") for line in lines)
    assert executor._executor.max_num_timeout == 3
