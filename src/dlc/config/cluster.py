"""Where jobs run: SLURM submission and per-rule resources (`slurm`, `resources`)."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import param


@dataclass(frozen=True)
class SlurmConfig:
    partition: str | None = param("SLURM partition (null: the cluster's default)")
    account: str | None = param("SLURM account (null: your default)")
    qos: str | None = param("SLURM quality of service (null: default)")
    constraint: str | None = param("SLURM node constraint, e.g. h100 (null: none)")
    max_requeues: int = param("requeues after preemption or the time limit before giving up",
                             minimum=0)
    signal_delay_s: int = param("seconds before the time limit at which SLURM warns the job "
                               "(it requeues then)", minimum=1)


@dataclass(frozen=True)
class RuleResources:
    gpu: int = param("GPUs per node; the job runs one process per GPU (DDP)", minimum=0)
    nodes: int = param("nodes per job", minimum=1)
    cpus_per_task: int = param("CPU cores per job", minimum=1)
    mem_mb: int = param("host memory per job, MB", minimum=1)
    runtime: int = param("wall-clock limit, minutes (a job that reaches it requeues and "
                        "resumes)", minimum=1)
    array: int = param("array tasks splitting a sampling stage (--task k --tasks n)",
                      minimum=1)
