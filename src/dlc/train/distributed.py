"""Data-parallel setup from the environment torchrun or submitit exports (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT); a single process when those are absent."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def autocast(device: torch.device, precision: str = "bf16"):
    """bf16 autocast on a GPU when `precision` asks for it; a no-op context on CPU (which
    always runs fp32). Reusable: `with` it once per step."""
    return torch.autocast("cuda", dtype=torch.bfloat16,
                          enabled=device.type == "cuda" and precision == "bf16")


def setup() -> Processes:
    """Join the process group if launched as several processes; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, world, device)

