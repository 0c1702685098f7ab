"""A `dlc` stage as a submitit job: SLURM on a cluster, a subprocess for tests.

`dlc <stage> ... --launcher slurm` (or DLC_LAUNCHER=slurm in the environment, which the
Snakemake `slurm` profile sets for every rule) does not run the stage: it submits the same
command line as a job, prints the job id and its log path, waits, and exits with the job's
error if the job fails, so the Snakemake rule fails with it.

- Resources come from DLC_RESOURCES (`gpu=1,nodes=1,mem_mb=64000,...`), which the rule
  writes from its `resources` (its defaults replaced by presets.<preset>.resources.<rule>);
  SLURM's partition, account, QoS and constraint from presets.<preset>.slurm. A job with g
  GPUs per node runs g processes per node; the stage sees RANK / WORLD_SIZE / MASTER_ADDR from
  submitit and trains with DDP.
- Preemption and time limits: the job is `Checkpointable`; when SLURM signals it, submitit
  requeues the same command (up to slurm.max_requeues times), and the stage resumes from its
  own last checkpoint, so the requeued run ends where an uninterrupted one would.
- `array: n` (for stages with --task/--tasks: sampling) submits n array tasks; task k runs
  `--task k --tasks n`, and whichever task finishes last assembles the outputs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import submitit

from dlc.config import SlurmConfig

log = logging.getLogger(__name__)
JOB_ENV, RESOURCES_ENV = "DLC_JOB", "DLC_RESOURCES"
CLUSTERS = {"slurm": "slurm", "submitit-local": "local"}


@dataclass(frozen=True)
class JobResources:
    gpu: int = 0
    nodes: int = 1
    cpus_per_task: int = 1
    mem_mb: int = 4000
    runtime: int = 60          # minutes
    array: int = 1

    @classmethod
    def from_env(cls) -> JobResources:
        text = os.environ.get(RESOURCES_ENV, "")
        try:
            given = dict(item.split("=", 1) for item in text.split(",") if item)
            return cls(**{key: int(value) for key, value in given.items()
                          if key in asdict(cls())})
        except ValueError:
            raise ValueError(f"{RESOURCES_ENV}={text!r}: expected key=integer pairs separated "
                             "by commas") from None


class StageJob(submitit.helpers.Checkpointable):
    """`dlc <argv>` inside the job, through `main` (the CLI's entry point, passed in by the
    CLI: launching never imports it); requeued as is on preemption or timeout (the stage
    resumes from its checkpoints)."""

    def __init__(self, argv: list[str], main: Callable[[list[str]], int]):
        self.argv, self.main = list(argv), main

    def __call__(self, task: int | None = None, tasks: int | None = None) -> None:
        if submitit.JobEnvironment().num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(
                set_cuda_visible_devices=False, overwrite=True)
        argv = [*self.argv, "--launcher", "local"]
        if task is not None:
            argv += ["--task", str(task), "--tasks", str(tasks)]
        code = self.main(argv)
        if code != 0:
            raise RuntimeError(f"`dlc {' '.join(argv)}` exited with status {code}")

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        log.warning("preempted or out of time: requeueing `dlc %s`; it resumes from its last "
                    "checkpoint", " ".join(self.argv))
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def executor(launcher: str, folder: Path, job_name: str, resources: JobResources,
             slurm: SlurmConfig) -> submitit.AutoExecutor:
    if launcher not in CLUSTERS:
        raise ValueError(f"unknown launcher {launcher!r} (local, {', '.join(CLUSTERS)})")
    processes = max(1, resources.gpu)
    ex = submitit.AutoExecutor(folder=folder, cluster=CLUSTERS[launcher],
                               slurm_max_num_timeout=slurm.max_requeues,
                               local_max_num_timeout=slurm.max_requeues)
    ex.update_parameters(name=job_name, timeout_min=resources.runtime, nodes=resources.nodes,
                         tasks_per_node=processes, gpus_per_node=resources.gpu,
                         cpus_per_task=max(1, resources.cpus_per_task // processes),
                         mem_gb=max(1, resources.mem_mb // 1000))
    slurm_options = {"slurm_partition": slurm.partition, "slurm_account": slurm.account,
                     "slurm_qos": slurm.qos, "slurm_constraint": slurm.constraint}
    if launcher == "slurm":
        ex.update_parameters(slurm_signal_delay_s=slurm.signal_delay_s,
                             **{key: value for key, value in slurm_options.items()
                                if value is not None})
    return ex


def submit_and_wait(argv: list[str], launcher: str, job_name: str, log_root: str | Path,
                    slurm: SlurmConfig, resources: JobResources | None = None,
                    *, main: Callable[[list[str]], int], supports_tasks: bool = False) -> None:
    """Run `dlc <argv>` (through `main`) as a job (an array of `resources.array` tasks when
    asked) and wait."""
    resources = resources or JobResources.from_env()
    if resources.array > 1 and not supports_tasks:
        raise ValueError(f"{job_name}: array = {resources.array}, but this stage has no "
                         "--task/--tasks to split its work")
    folder = Path(log_root) / "submitit" / job_name
    ex = executor(launcher, folder, job_name, resources, slurm)
    job_function = StageJob(argv, main)
    if resources.array > 1:
        if launcher == "slurm":
            ex.update_parameters(slurm_array_parallelism=resources.array)
        submitted = ex.map_array(job_function, list(range(resources.array)),
                                 [resources.array] * resources.array)
    else:
        submitted = [ex.submit(job_function)]
    for job in submitted:
        log.info("submitted %s job %s (%s); log %s", launcher, job.job_id, job_name,
                 job.paths.stderr)
    for job in submitted:
        try:
            job.results()     # one per task: a DDP job runs a task per GPU
        except Exception as error:  # submitit raises FailedJobError / UncompletedJobError
            raise RuntimeError(f"{job_name}: job {job.job_id} failed; its log: "
                               f"{job.paths.stderr}\n{_tail(error)}") from None
        log.info("job %s (%s) done", job.job_id, job_name)


def _tail(error: Exception, lines: int = 20) -> str:
    return "\n".join(str(error).splitlines()[-lines:])
